"""Downloads and bad input: malformed rows are dropped and counted, a source
missing required columns fails with a message that names them."""

import json
import subprocess
import sys

import pytest

from genrm.data import demo
from genrm.data.sources import DataError, download
from genrm.io import read_json, read_jsonl, write_jsonl
from genrm.protocol import pair_problem
from genrm.train.rows import format_bt, format_sft


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "genrm", *args], capture_output=True, text=True)


def test_rewardbench_missing_columns_fails_naming_them(tmp_path):
    src = tmp_path / "rb.jsonl"
    write_jsonl(src, [{"id": 1, "prompt": "p", "chosen": "a", "rejected": "b"}])
    proc = run_cli("download", "--kind", "rewardbench", "--source", str(src), "--split", "filtered",
                   "--seed", "0", "--out", str(tmp_path / "out.jsonl"), "--stats", str(tmp_path / "stats.json"))
    assert proc.returncode == 2
    assert "subset" in proc.stderr and "required" in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_rewardbench_parquet_missing_columns(tmp_path):
    import pandas as pd

    src = tmp_path / "rb.parquet"
    pd.DataFrame({"id": [1], "subset": ["hep-go"], "prompt": ["p"], "chosen": ["a"]}).to_parquet(src)
    with pytest.raises(DataError, match="rejected"):
        download(str(src), "filtered", "rewardbench", str(tmp_path / "o.jsonl"), str(tmp_path / "s.json"), seed=0)


def test_rewardbench_bad_rows_are_dropped_and_counted(tmp_path):
    src = tmp_path / "rb.jsonl"
    good = {"id": 1, "subset": "hep-go", "prompt": "p", "chosen": "a", "rejected": "b"}
    src.write_text("\n".join([
        json.dumps(good),
        json.dumps({**good, "id": 2, "subset": "not-a-subset"}),
        json.dumps({**good, "id": 3, "chosen": None}),
        "{broken json",
    ]) + "\n")
    stats = download(str(src), "filtered", "rewardbench", str(tmp_path / "o.jsonl"), str(tmp_path / "s.json"), seed=0)
    assert stats["rows_written"] == 1
    assert stats["dropped"] == {"bad_chosen": 1, "invalid_json": 1, "unknown_subset": 1}
    assert read_jsonl(tmp_path / "o.jsonl") == [good]


def test_real_rewardbench_file_loads_completely(rewardbench_file, tmp_path):
    stats = download(str(rewardbench_file), "filtered", "rewardbench", str(tmp_path / "rb.jsonl"),
                     str(tmp_path / "s.json"), seed=0)
    assert stats["rows_written"] == 2985 and stats["dropped"] == {}


def test_malformed_preferences_are_dropped_by_reason(tmp_path):
    rows = demo.preferences(n=50)
    src = tmp_path / "prefs.jsonl"
    write_jsonl(src, rows)
    with open(src, "a") as f:
        f.write("not json at all\n")
    stats = download(str(src), "train", "preferences", str(tmp_path / "p.jsonl"), str(tmp_path / "ps.json"), seed=0)
    assert stats["dropped"] == {"invalid_json": 1}
    out = format_sft(str(tmp_path / "p.jsonl"), str(tmp_path / "rows.jsonl"), str(tmp_path / "stats.json"),
                     "verify", 0.0, seed=1)
    assert out["dropped"] == {"context_mismatch": 1, "empty_messages": 1, "identical_answers": 1,
                              "length_mismatch": 1, "malformed_message": 1, "messages_not_a_list": 1,
                              "missing_key": 1}
    assert out["rows_in"] == 57 and out["judge_rows"] == 50 and out["rows_out"] == 50
    assert out["chosen_at_a"] + out["chosen_at_b"] == 50
    assert read_json(tmp_path / "stats.json") == out


def test_bradley_terry_rows_are_the_same_valid_pairs(tmp_path):
    """Method bt keeps exactly the pairs the SFT rows are made from (same filter, same drops), each
    as its two whole conversations, in order, with roles and contents only."""
    rows = demo.preferences(n=60)
    valid = [r for r in rows if not pair_problem(r)]
    valid[0]["chosen"][-1]["extra"] = "not a message field"
    src = tmp_path / "prefs.jsonl"
    write_jsonl(src, rows)
    bt = format_bt(str(src), str(tmp_path / "bt.jsonl"), str(tmp_path / "bt.json"), "bt")
    sft = format_sft(str(src), str(tmp_path / "rows.jsonl"), str(tmp_path / "stats.json"), "verify", 0.0, seed=1)
    assert bt["dropped"] == sft["dropped"] and sum(bt["dropped"].values()) == 7
    assert bt["rows_in"] == sft["rows_in"] == 67 and bt["pairs"] == bt["rows_out"] == sft["judge_rows"] == 60
    assert read_json(tmp_path / "bt.json") == bt
    out = read_jsonl(tmp_path / "bt.jsonl")
    assert [set(r) for r in out] == [{"chosen", "rejected"}] * 60
    assert [(r["chosen"][-1]["content"], r["rejected"][-1]["content"]) for r in out] == [
        (v["chosen"][-1]["content"], v["rejected"][-1]["content"]) for v in valid]
    assert out[0]["chosen"][-1] == {"role": "assistant", "content": valid[0]["chosen"][-1]["content"]}
    assert any(len(r["chosen"]) == 4 for r in out) and all(r["chosen"][:-1] == r["rejected"][:-1] for r in out)


def test_bradley_terry_rows_command_line(tmp_path):
    write_jsonl(tmp_path / "prefs.jsonl", [{"chosen": [], "rejected": []}])
    proc = run_cli("format-bt", "--preferences", str(tmp_path / "prefs.jsonl"), "--method", "bt",
                   "--out", str(tmp_path / "bt.jsonl"), "--stats", str(tmp_path / "bt.json"))
    assert proc.returncode == 2 and "no valid preference pair" in proc.stderr
    assert not (tmp_path / "bt.jsonl").exists() and not (tmp_path / "bt.json").exists()


def test_verify_correct_mixes_correct_rows(tmp_path):
    src = tmp_path / "prefs.jsonl"
    write_jsonl(src, demo.preferences(n=400))
    out = format_sft(str(src), str(tmp_path / "rows.jsonl"), str(tmp_path / "stats.json"), "verify_correct", 0.5, 3)
    assert out["judge_rows"] == 400
    assert 160 <= out["correct_rows"] <= 240
    rows = read_jsonl(tmp_path / "rows.jsonl")
    correct = [r for r in rows if not r["response"][0]["content"].startswith("[[")]
    assert len(correct) == out["correct_rows"]
    assert all(r["prompt"][-1]["role"] == "user" for r in correct)


def test_no_valid_pair_is_an_error(tmp_path):
    src = tmp_path / "prefs.jsonl"
    write_jsonl(src, [{"chosen": [], "rejected": []}])
    with pytest.raises(ValueError, match="no valid preference pair"):
        format_sft(str(src), str(tmp_path / "rows.jsonl"), str(tmp_path / "stats.json"), "verify", 0.0, 0)
    assert not (tmp_path / "rows.jsonl").exists()


def test_a_malformed_first_line_does_not_sink_the_file(tmp_path):
    """Columns come from the rows, not the first line: a bad first line is one dropped row."""
    rows = demo.preferences(n=20)
    src = tmp_path / "prefs.jsonl"
    src.write_text("{this is not json\n" + "\n".join(json.dumps(r) for r in rows) + "\n[1, 2]\n")
    proc = run_cli("download", "--kind", "preferences", "--source", str(src), "--split", "train", "--seed", "0",
                   "--out", str(tmp_path / "p.jsonl"), "--stats", str(tmp_path / "s.json"))
    assert proc.returncode == 0, proc.stderr
    stats = read_json(tmp_path / "s.json")
    assert stats["dropped"] == {"invalid_json": 1, "not_an_object": 1}
    assert stats["rows_written"] == len(rows) and stats["rows_read"] == len(rows) + 2
    assert read_jsonl(tmp_path / "p.jsonl") == rows


def test_rewardbench_keys_missing_from_the_first_row_are_kept_in_the_others(tmp_path):
    first = {"id": 1, "subset": "hep-go", "prompt": "p", "chosen": "a", "rejected": "b"}
    second = {**first, "id": 2, "chosen_model": "m1", "rejected_model": "m2", "extra": "dropped"}
    src = tmp_path / "rb.jsonl"
    write_jsonl(src, [first, second])
    download(str(src), "filtered", "rewardbench", str(tmp_path / "o.jsonl"), str(tmp_path / "s.json"), seed=0)
    assert read_jsonl(tmp_path / "o.jsonl") == [first, {k: v for k, v in second.items() if k != "extra"}]


def test_fetch_model_from_a_local_directory_works_on_every_rerun(tmp_model, tmp_path):
    out = tmp_path / "resources" / "models" / "m"
    spec = json.dumps({"source": str(tmp_model)})
    for _ in range(2):
        proc = run_cli("fetch-model", "--spec", spec, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert (out / "config.json").read_text() == "{}"
    out.unlink()
    out.mkdir()  # a real directory left by an older run is replaced, not an error
    (out / "stale").write_text("x")
    assert run_cli("fetch-model", "--spec", spec, "--out", str(out)).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert tmp_model.is_dir() and (tmp_model / "config.json").is_file()  # the source is untouched


@pytest.fixture
def tmp_model(tmp_path):
    src = tmp_path / "local-model"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"\0")
    return src


LLAMA_31_FILES = [".gitattributes", "LICENSE", "README.md", "USE_POLICY.md", "config.json", "generation_config.json",
                  "model-00001-of-00004.safetensors", "model-00004-of-00004.safetensors",
                  "model.safetensors.index.json", "original/consolidated.00.pth", "original/params.json",
                  "original/tokenizer.model", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]


def test_hub_snapshots_fetch_only_what_loading_needs():
    """The patterns given to snapshot_download, applied by huggingface_hub's own filter to
    the files of a Llama 3.1 repository: no 16 GB original/ checkpoint, no docs."""
    from huggingface_hub.utils import filter_repo_objects

    from genrm.data.models import HUB_FILES, HUB_SKIP

    kept = sorted(filter_repo_objects(LLAMA_31_FILES, allow_patterns=HUB_FILES, ignore_patterns=HUB_SKIP))
    assert kept == ["config.json", "generation_config.json", "model-00001-of-00004.safetensors",
                    "model-00004-of-00004.safetensors", "model.safetensors.index.json", "special_tokens_map.json",
                    "tokenizer.json", "tokenizer_config.json"]


@pytest.mark.parametrize("error, message", [
    ("gated", "is gated and this account has no access"),
    ("missing", "was not found on the Hub, or it is private"),
])
def test_a_gated_or_missing_model_says_what_to_do_and_never_shows_the_token(monkeypatch, tmp_path, error,
                                                                             message):
    import httpx
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    from genrm.data import models

    secret = "hf_SECRETTOKEN1234567890"
    monkeypatch.setenv("HF_TOKEN", secret)
    response = httpx.Response(401 if error == "missing" else 403,
                              request=httpx.Request("GET", "https://hub.example/api/models/org/m",
                                                    headers={"authorization": f"Bearer {secret}"}))

    def refuse(**kwargs):  # what the Hub answers, without a network
        cls = GatedRepoError if error == "gated" else RepositoryNotFoundError
        raise cls(f"{response.status_code} Client Error", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(models.ModelSourceError) as caught:
        models.fetch_model({"source": "org/m"}, str(tmp_path / "m"))
    text = str(caught.value)
    assert message in text and "HF_TOKEN" in text and "local directory" in text
    assert secret not in text
    assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []
