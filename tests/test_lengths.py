"""The max_len guard (genrm.train.lengths; ``python -m genrm check-lengths``): it counts the rows that
OpenRLHF's SFTDataset would drop or cut, and the Bradley-Terry rows its RewardDataset would cut, with
the model's own tokenizer, and stops the run above a set fraction. Its counts are checked against
OpenRLHF's SFTDataset and RewardDataset themselves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from genrm import config as gconfig
from genrm.io import write_jsonl
from genrm.train.lengths import LengthError, check_lengths, measure, render

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def rows(demo_preferences):
    from collections import Counter

    from genrm.io import iter_jsonl
    from genrm.train.rows import sft_rows

    pairs = list(iter_jsonl(demo_preferences))[:40]
    return list(sft_rows(pairs, correct_ratio=1.0, seed=3, stats=Counter()))


def openrlhf_dataset(tokenizer, rows, max_len):
    pytest.importorskip("openrlhf")
    import datasets
    from openrlhf.datasets import SFTDataset

    data = SimpleNamespace(input_key="prompt", output_key="response", apply_chat_template=True,
                           tokenizer_chat_template=None)
    strategy = SimpleNamespace(args=SimpleNamespace(data=data))
    return SFTDataset(datasets.Dataset.from_list(rows), tokenizer, max_len, strategy, num_processors=1)


def test_render_is_the_text_openrlhf_trains_on(tokenizer, rows):
    ds = openrlhf_dataset(tokenizer, rows[:4], 4096)
    for i, row in enumerate(rows[:4]):
        prompt, text = render(tokenizer, row)
        assert prompt == ds.prompts[i]
        assert text == (ds.prompts[i] + ds.responses[i]).rstrip("\n")


def test_counts_match_what_sftdataset_drops_and_cuts(tokenizer, rows):
    full = measure(rows, tokenizer, 100_000)
    assert full["exceeding"] == 0 and full["template_mismatch"] == 0
    # a max_len between the shortest prompts and the longest rows: some rows are
    # dropped (prompt too long), some cut, some whole
    lengths = sorted(len(tokenizer(render(tokenizer, r)[1], add_special_tokens=False)["input_ids"]) for r in rows)
    max_len = lengths[len(lengths) // 2]
    report = measure(rows, tokenizer, max_len)
    ds = openrlhf_dataset(tokenizer, rows, max_len)
    assert report["dropped"] == len(rows) - len(ds) > 0
    cut = sum(1 for i in range(len(ds))
              if len(tokenizer((ds.prompts[i] + ds.responses[i]).rstrip("\n"), add_special_tokens=False)["input_ids"])
              > max_len)
    assert report["truncated"] == cut > 0
    assert report["exceeding"] == report["dropped"] + report["truncated"]
    assert report["fraction_exceeding"] == pytest.approx(report["exceeding"] / len(rows))


@pytest.fixture(scope="module")
def bt_rows(demo_preferences):
    from collections import Counter

    from genrm.io import iter_jsonl
    from genrm.train.rows import bt_rows

    return list(bt_rows(list(iter_jsonl(demo_preferences))[:60], Counter()))


def openrlhf_reward_dataset(tokenizer, rows, max_len):
    pytest.importorskip("openrlhf")
    import datasets
    from openrlhf.datasets import RewardDataset

    data = SimpleNamespace(prompt_key=None, chosen_key="chosen", rejected_key="rejected", apply_chat_template=True,
                           tokenizer_chat_template=None)
    strategy = SimpleNamespace(args=SimpleNamespace(data=data))
    return RewardDataset(datasets.Dataset.from_list(rows), tokenizer, max_len, strategy, num_processors=1)


def test_bt_counts_match_what_rewarddataset_cuts(tokenizer, bt_rows):
    """A Bradley-Terry row counts as cut when RewardDataset cuts either of its sides to max_len (where
    the answers differ, at the end); nothing is dropped."""
    full = measure(bt_rows, tokenizer, 100_000)
    assert full["row_kind"] == "bt" and full["exceeding"] == 0 and full["rows"] == len(bt_rows)
    longest = sorted(max(len(ids) for ids in full_ids(tokenizer, r)) for r in bt_rows)
    max_len = longest[len(longest) // 2]
    report = measure(bt_rows, tokenizer, max_len)
    ds = openrlhf_reward_dataset(tokenizer, bt_rows, max_len)
    assert len(ds) == len(bt_rows)  # RewardDataset drops none ...
    cut = 0
    for i, row in enumerate(bt_rows):  # ... it cuts: a side as long as max_len that was longer
        chosen_ids, _, rejected_ids, _, _ = ds[i]
        whole = full_ids(tokenizer, row)
        kept = (chosen_ids.shape[1], rejected_ids.shape[1])
        assert all(k == min(len(w), max_len) for k, w in zip(kept, whole))
        cut += any(len(w) > max_len for w in whole)
    assert report["truncated"] == report["exceeding"] == cut > 0 and report["dropped"] == 0
    assert report["tokens"]["max"] == longest[-1]


def full_ids(tokenizer, row):
    from genrm.protocol import reward_text

    return [tokenizer(reward_text(tokenizer, row[side]), add_special_tokens=False)["input_ids"]
            for side in ("chosen", "rejected")]


def test_bt_guard_stops_with_the_message(tmp_path, tiny_model_dir, bt_rows):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, bt_rows)
    with pytest.raises(LengthError, match="OpenRLHF's RewardDataset would silently cut the end off"):
        check_lengths(str(path), str(tiny_model_dir), 30, 0.01, str(tmp_path / "r.json"), name="tiny")
    # the same rows, the same stop rule, for the trainer of a TRL job
    with pytest.raises(LengthError, match=r"^tiny: (\d+) of \d+ rows .*TRL's RewardTrainer would drop \1\."):
        check_lengths(str(path), str(tiny_model_dir), 30, 0.01, str(tmp_path / "r.json"), name="tiny", trainer="trl")
    assert not (tmp_path / "r.json").exists()


def test_guard_stops_above_the_fraction_with_a_clear_message(tmp_path, tiny_model_dir, rows, tokenizer):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, rows)
    out = tmp_path / "report.json"
    with pytest.raises(LengthError) as error:
        check_lengths(str(path), str(tiny_model_dir), 40, 0.01, str(out), name="tiny")
    message = str(error.value)
    assert "tiny:" in message and "max_len=40" in message and "drop" in message
    assert "train.length_guard.max_fraction" in message and "max_len" in message
    assert not out.exists()  # a failed check leaves no report: the training rule cannot start
    report = check_lengths(str(path), str(tiny_model_dir), 40, 1.0, str(out), name="tiny")
    assert report["ok"] and json.loads(out.read_text())["exceeding"] == report["exceeding"] > 0


def test_guard_passes_and_reports_per_model(tmp_path, tiny_model_dir, rows):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, rows)
    out = tmp_path / "lengths" / "tiny" / "verify.json"
    from genrm.cli import main

    assert main(["check-lengths", "--rows", str(path), "--model", str(tiny_model_dir), "--name", "tiny",
                 "--max-len", "512", "--max-fraction", "0.01", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["model"] == "tiny" and report["rows"] == len(rows) and report["exceeding"] == 0
    assert report["tokens"]["max"] <= 512


def test_guard_command_line_fails_with_the_message(tmp_path, tiny_model_dir, rows):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, rows)
    proc = subprocess.run([sys.executable, "-m", "genrm", "check-lengths", "--rows", str(path),
                           "--model", str(tiny_model_dir), "--max-len", "40", "--max-fraction", "0",
                           "--out", str(tmp_path / "r.json")],
                          capture_output=True, text=True, cwd=REPO)
    # bad input (rows that do not fit): exit 2 and one line that says what to change
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "OpenRLHF's SFTDataset would silently drop" in errors[0] and "max_len=40" in errors[0]
    assert f"{tiny_model_dir.name}:" in errors[0]  # without --name, the model directory's name
    assert not (tmp_path / "r.json").exists()


def test_a_template_that_renders_the_prompt_differently_counts(tokenizer, rows):
    class Odd:
        eos_token = tokenizer.eos_token

        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
            return text if add_generation_prompt else "SYSTEM\n" + text

        def __call__(self, texts, add_special_tokens=False):
            return tokenizer(texts, add_special_tokens=add_special_tokens)

    report = measure(rows[:5], Odd(), 4096)
    assert report["template_mismatch"] == 5 and report["exceeding"] == 5


def test_max_len_comes_from_the_backend_settings():
    demo = gconfig.load(REPO / "configs" / "demo.yaml")
    assert gconfig.train_max_len(demo, "tiny-instruct") == demo["train"]["trl"]["max_length"] \
        == gconfig.trl_settings(demo).max_length
    # the Bradley-Terry job's own, from its backend (OpenRLHF in the demo)
    bt = gconfig.openrlhf_settings(demo, "tiny-instruct", "bt")
    assert gconfig.train_max_len(demo, "tiny-instruct", "bt") == bt.max_len
    demo["train"]["bt"]["openrlhf"]["models"]["tiny-instruct"]["max_len"] = 300
    assert gconfig.train_max_len(demo, "tiny-instruct", "bt") == 300
    assert gconfig.train_max_len(demo, "tiny-instruct", "verify") == demo["train"]["trl"]["max_length"]
    production = gconfig.load(REPO / "workflow_config.yaml")
    for model in production["models"]:
        assert gconfig.train_max_len(production, model) == gconfig.openrlhf_settings(production, model).max_len
    assert production["train"]["length_guard"]["max_fraction"] == 0.01
