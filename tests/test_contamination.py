"""The contamination check finds planted overlaps in generated data, and only those;
its switch drops exactly the matched rows before SFT."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from conftest import markdown_cells
from genrm import contamination as c
from genrm.io import read_json, read_jsonl, write_jsonl
from genrm.protocol import SUBSETS

REPO = Path(__file__).resolve().parent.parent
WORDS = [f"w{i}" for i in range(3000)]


def words(rng: random.Random, k: int) -> list[str]:
    return rng.choices(WORDS, k=k)


def pair(prompt_messages: list[dict], answer: str = "fine answer", other: str = "bad answer") -> dict:
    return {"chosen": prompt_messages + [{"role": "assistant", "content": answer}],
            "rejected": prompt_messages + [{"role": "assistant", "content": other}], "source": "test"}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """RewardBench-like prompts and training rows with overlaps planted at known rows."""
    rng = random.Random(7)
    rb = []
    for i in range(2 * len(SUBSETS)):
        n = 40 if i % 2 == 0 else 8  # long prompts, and short ones that only exact match can find
        rb.append({"id": 1000 + i, "subset": SUBSETS[i % len(SUBSETS)], "prompt": " ".join(words(rng, n)),
                   "chosen": "c", "rejected": "r"})
    long_p, short_p = rb[0]["prompt"].split(), rb[1]["prompt"]
    rows = [pair(user(" ".join(words(rng, 60)))) for _ in range(300)]
    expect: dict[int, tuple[int, str]] = {}  # row -> (rewardbench index, kind)

    def plant(i, row, prompt_index, kind):
        rows[i] = row
        expect[i] = (prompt_index, kind)

    # exact copies, changed in case, punctuation and spacing
    plant(10, pair(user("  " + short_p.upper().replace(" ", ",   ") + "?!")), 1, "exact")
    plant(11, pair(user(rb[2]["prompt"].title() + ".")), 2, "exact")
    # the prompt as a later user turn of a multi-turn conversation
    plant(12, pair([*user("hello there"), {"role": "assistant", "content": "hi"}, *user(rb[3]["prompt"])]), 3,
          "exact")
    # 13 consecutive words of a long prompt inside unrelated text
    plant(20, pair(user(" ".join(words(rng, 30) + long_p[5:18] + words(rng, 30)))), 0, "ngram")
    # in an earlier assistant message of the prompt (part of what the judge reads)
    plant(21, pair([*user("start"), {"role": "assistant", "content": " ".join(long_p[20:40])},
                    *user("go on")]), 0, "ngram")
    # only 12 words in common, or only in the final answer: not a prompt overlap
    rows[30] = pair(user(" ".join(words(rng, 20) + long_p[0:12] + words(rng, 20))))
    rows[31] = pair(user("an unrelated question"), answer=rb[4]["prompt"])
    # malformed rows are read as far as possible, never a crash
    rows[40] = {"chosen": "not a list", "rejected": user(short_p) + [{"role": "assistant", "content": "x"}]}
    expect[40] = (1, "exact")
    rows[41] = {"source": "no messages at all"}
    rows[42] = {"chosen": [{"role": "user"}, {"content": rb[2]["prompt"]}]}  # no role: scanned, not a user turn
    expect[42] = (2, "ngram")
    d = tmp_path_factory.mktemp("contamination")
    write_jsonl(d / "rewardbench.jsonl", rb)
    write_jsonl(d / "preferences.jsonl", rows)
    return d, rb, rows, expect


def test_tokens_fast_path_equals_the_unicode_rule():
    for text in ["Hello, World!  x_y 3.14 don't", "A\tB\nC--d", "Ünïcode ﬁne Straße ２０２４", "CamelCase_snake",
                 "", "...", "naïve café", "日本語 text"]:
        slow = re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).casefold())
        assert c.tokens(text) == slow, text
    assert c.normalise("  What IS 2+2?? ") == "what is 2 2"


def test_scan_finds_exactly_the_planted_rows(planted):
    d, rb, rows, expect = planted
    bench = c.Benchmark.build(rb)
    scanned, matches = c.scan(bench, rows)
    assert scanned == len(rows)
    found = {m.row: m for m in matches}
    assert set(found) == set(expect)
    for row, (prompt, kind) in expect.items():
        m = found[row]
        assert m.prompt == prompt
        assert (m.exact if kind == "exact" else m.shared_ngrams > 0), (row, m)
    assert found[20].shared_ngrams == 1  # 13 words: one 13-gram
    assert found[21].shared_ngrams == 20 - 13 + 1
    assert not found[42].exact


def test_results_do_not_depend_on_chunking_or_hash_collisions(planted, monkeypatch):
    _, rb, rows, _ = planted
    reference = c.scan(c.Benchmark.build(rb), rows)[1]
    assert c.scan(c.Benchmark.build(rb), rows, chunk_rows=7)[1] == reference
    # A degenerate hash (the sum of the word ids) collides all the time: every hit is
    # verified word by word, so the matches are the same.
    monkeypatch.setattr(c, "HASH_BASE", np.uint64(1))
    assert c.scan(c.Benchmark.build(rb), rows)[1] == reference


def test_thresholds(planted):
    _, rb, rows, expect = planted
    strict = {m.row for m in c.scan(c.Benchmark.build(rb), rows, min_shared=2)[1]}
    assert 20 not in strict and 21 in strict  # row 20 shares a single 13-gram
    shorter = {m.row for m in c.scan(c.Benchmark.build(rb, n=12), rows)[1]}
    assert 30 in shorter  # 12 shared words count with 12-grams


def test_check_writes_the_report_and_decontaminate_drops_exactly_the_matches(planted, tmp_path):
    d, rb, rows, expect = planted
    out = tmp_path / "report"
    summary = c.check(str(d / "preferences.jsonl"), str(d / "rewardbench.jsonl"), str(out))
    assert summary["training_rows"] == len(rows)
    assert summary["contaminated_training_rows"] == len(expect)
    per_subset = {r["subset"]: r for r in summary["per_subset"]}
    assert list(per_subset)[:-1] == list(SUBSETS) and "total" in per_subset
    assert per_subset[rb[0]["subset"]]["ngram"] == 1  # the long prompt planted twice
    assert per_subset[rb[1]["subset"]]["exact"] == 1  # the short prompt
    assert per_subset[rb[1]["subset"]]["short_prompts"] == 1
    assert per_subset["total"]["contaminated"] == 4  # prompts 0, 1, 2, 3
    assert per_subset["total"]["training_rows"] == len(expect)
    assert sum(r["contaminated"] for r in summary["per_subset"][:-1]) == 4
    for name in ("report.md", "report.html", "report.csv", "summary.json", "matches.jsonl"):
        assert (out / name).stat().st_size > 0
    md = (out / "report.md").read_text()
    cells = [markdown_cells(line) for line in md.splitlines() if line.startswith("|")]
    assert cells[0][:3] == ["Subset", "Section", "Prompts"] and ["**total**"] in [c[:1] for c in cells]
    matched = read_jsonl(out / "matches.jsonl")
    assert {m["row"] for m in matched} == set(expect)
    assert {m["rewardbench_id"] for m in matched} == {1000, 1001, 1002, 1003}

    stats = c.decontaminate(str(d / "preferences.jsonl"), str(out / "matches.jsonl"), str(out / "summary.json"),
                            str(tmp_path / "clean.jsonl"), str(tmp_path / "dropped.json"))
    assert stats["dropped"] == len(expect) and stats["rows_out"] == len(rows) - len(expect)
    assert read_json(tmp_path / "dropped.json")["dropped"] == len(expect)
    clean = read_jsonl(tmp_path / "clean.jsonl")
    assert clean == [r for i, r in enumerate(rows) if i not in expect]  # order kept
    again = c.check(str(tmp_path / "clean.jsonl"), str(d / "rewardbench.jsonl"), str(tmp_path / "again"))
    assert again["contaminated_training_rows"] == 0


def test_decontaminate_refuses_a_changed_training_file(planted, tmp_path):
    d, _, rows, _ = planted
    out = tmp_path / "report"
    c.check(str(d / "preferences.jsonl"), str(d / "rewardbench.jsonl"), str(out))
    write_jsonl(tmp_path / "other.jsonl", rows[:10])
    with pytest.raises(ValueError, match="scanned"):
        c.decontaminate(str(tmp_path / "other.jsonl"), str(out / "matches.jsonl"), str(out / "summary.json"),
                        str(tmp_path / "clean.jsonl"), str(tmp_path / "dropped.json"))
    assert not (tmp_path / "clean.jsonl").exists() and not (tmp_path / "dropped.json").exists()


def test_command_line(planted, tmp_path):
    d, _, _, expect = planted
    proc = subprocess.run([sys.executable, "-m", "genrm", "contamination", "check", "--preferences",
                           str(d / "preferences.jsonl"), "--rewardbench", str(d / "rewardbench.jsonl"),
                           "--ngram", "13", "--min-shared-ngrams", "1", "--out-dir", str(tmp_path), "--drop"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert read_json(tmp_path / "summary.json")["contaminated_training_rows"] == len(expect)
    assert "dropped before SFT" in (tmp_path / "report.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "genrm", "contamination", "check", "--preferences", "missing.jsonl",
                          "--rewardbench", str(d / "rewardbench.jsonl"), "--ngram", "13", "--min-shared-ngrams", "1",
                          "--out-dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "missing.jsonl" in bad.stderr


def test_benchmark_script_finds_its_planted_rows():
    """The 80K benchmark at a small size: it checks itself and ends with its figure."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "contamination.py"), "--rows", "3000"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r"seconds_80k=\d+\.\d\d", lines[-1])
    assert "found: 100/100" in proc.stdout


def _dry_run(tmp_path, extra: str, target: str = "results/sft/verify/stats.json") -> str:
    from conftest import DEMO_ARGS, snakemake

    (tmp_path / "extra.yaml").write_text(extra)
    args = [*DEMO_ARGS[:2], str(tmp_path / "extra.yaml"), DEMO_ARGS[2], "-n", "-p", target]
    proc = snakemake(args, tmp_path)
    return proc.stdout + proc.stderr


def test_switch_feeds_sft_from_the_decontaminated_rows(tmp_path):
    on = _dry_run(tmp_path, "contamination: {drop: true}\n")
    assert "rule decontaminate" in on and "rule check_contamination" in on
    assert re.search(r"format-sft --preferences results/contamination/preferences\.jsonl", on)
    off = _dry_run(tmp_path, "contamination: {drop: false}\n")
    assert "rule decontaminate" not in off
    assert re.search(r"format-sft --preferences resources/data/preferences\.jsonl", off)


def test_switch_feeds_the_bradley_terry_rows_from_the_decontaminated_rows_too(tmp_path):
    """The Bradley-Terry model learns from the same pairs as the GenRMs: decontaminated when dropping."""
    on = _dry_run(tmp_path, "contamination: {drop: true}\n", "results/bt/stats.json")
    assert re.search(r"format-bt --preferences results/contamination/preferences\.jsonl", on)
    off = _dry_run(tmp_path, "contamination: {drop: false}\n", "results/bt/stats.json")
    assert re.search(r"format-bt --preferences resources/data/preferences\.jsonl", off)
