"""Downloads and bad input: malformed rows are dropped and counted, a source
missing required columns fails with a message that names them."""

import json
import subprocess
import sys

import pytest

from genrm import demo
from genrm.data import DataError, download
from genrm.io import read_json, read_jsonl, write_jsonl
from genrm.sft import format_sft


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "genrm", *args], capture_output=True, text=True)


def test_rewardbench_missing_columns_fails_naming_them(tmp_path):
    src = tmp_path / "rb.jsonl"
    write_jsonl(src, [{"id": 1, "prompt": "p", "chosen": "a", "rejected": "b"}])
    proc = run_cli("download", "--kind", "rewardbench", "--source", str(src), "--split", "filtered",
                   "--out", str(tmp_path / "out.jsonl"), "--stats", str(tmp_path / "stats.json"))
    assert proc.returncode == 2
    assert "subset" in proc.stderr and "required" in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_rewardbench_parquet_missing_columns(tmp_path):
    import pandas as pd

    src = tmp_path / "rb.parquet"
    pd.DataFrame({"id": [1], "subset": ["hep-go"], "prompt": ["p"], "chosen": ["a"]}).to_parquet(src)
    with pytest.raises(DataError, match="rejected"):
        download(str(src), "filtered", "rewardbench", str(tmp_path / "o.jsonl"), str(tmp_path / "s.json"))


def test_rewardbench_bad_rows_are_dropped_and_counted(tmp_path):
    src = tmp_path / "rb.jsonl"
    good = {"id": 1, "subset": "hep-go", "prompt": "p", "chosen": "a", "rejected": "b"}
    src.write_text("\n".join([
        json.dumps(good),
        json.dumps({**good, "id": 2, "subset": "not-a-subset"}),
        json.dumps({**good, "id": 3, "chosen": None}),
        "{broken json",
    ]) + "\n")
    stats = download(str(src), "filtered", "rewardbench", str(tmp_path / "o.jsonl"), str(tmp_path / "s.json"))
    assert stats["rows_written"] == 1
    assert stats["dropped"] == {"bad_chosen": 1, "invalid_json": 1, "unknown_subset": 1}
    assert read_jsonl(tmp_path / "o.jsonl") == [good]


def test_real_rewardbench_file_loads_completely(rewardbench_file, tmp_path):
    stats = download(str(rewardbench_file), "filtered", "rewardbench", str(tmp_path / "rb.jsonl"),
                     str(tmp_path / "s.json"))
    assert stats["rows_written"] == 2985 and stats["dropped"] == {}


def test_malformed_preferences_are_dropped_by_reason(tmp_path):
    rows = demo.preferences(n=50)
    src = tmp_path / "prefs.jsonl"
    write_jsonl(src, rows)
    with open(src, "a") as f:
        f.write("not json at all\n")
    stats = download(str(src), "train", "preferences", str(tmp_path / "p.jsonl"), str(tmp_path / "ps.json"))
    assert stats["dropped"] == {"invalid_json": 1}
    out = format_sft(str(tmp_path / "p.jsonl"), str(tmp_path / "rows.jsonl"), str(tmp_path / "stats.json"),
                     "verify", 0.0, seed=1)
    assert out["dropped"] == {"context_mismatch": 1, "empty_messages": 1, "identical_answers": 1,
                              "length_mismatch": 1, "malformed_message": 1, "messages_not_a_list": 1,
                              "missing_key": 1}
    assert out["rows_in"] == 57 and out["judge_rows"] == 50 and out["rows_out"] == 50
    assert out["chosen_at_a"] + out["chosen_at_b"] == 50
    assert read_json(tmp_path / "stats.json") == out


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
