"""Diagnostics in scores.json and the diagnostics table: each figure on rows whose answer is known."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from genrm.evaluate import bootstrap_score_ci, diagnostics, score_predictions
from genrm.protocol import SUBSETS, classifier_row, example_score
from genrm.report.tables import write_diagnostics_table


def gen_row(i, subset, va, vb, shortened=False, mode="generate", **extra):
    return {"id": i, "subset": subset, "mode": mode, "verdict_chosen_a": va, "verdict_chosen_b": vb,
            "correct": example_score(va, vb), "shortened": shortened, **extra}


def test_generative_diagnostics_on_known_rows():
    rows = [
        gen_row(0, "hep-go", "A", "B"),  # right twice: consistent
        gen_row(1, "hep-go", "B", "A"),  # wrong twice: consistent
        gen_row(2, "hep-go", "A", "A", shortened=True),  # always A: inconsistent
        gen_row(3, "hep-go", None, "B"),  # one unparsed
    ]
    d = diagnostics(rows)
    assert d["mode"] == "generate" and d["examples"] == 4
    assert d["unparsed_verdicts"] == 1 and d["unparsed_rate"] == pytest.approx(1 / 8)
    assert d["accuracy_chosen_a"] == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    assert d["accuracy_chosen_b"] == pytest.approx((1 + 0 + 0 + 1) / 4)
    assert d["position_consistency"] == pytest.approx(2 / 3) and d["both_parsed_examples"] == 3
    assert d["prefer_a"] == pytest.approx(4 / 7)
    assert d["shortened"] == 1
    assert d["score_ci95"] is None  # one subset only: Score is undefined
    assert d["score_chosen_a"] is None


def test_logprob_rows_report_the_mean_probability_of_the_chosen_answer():
    rows = [gen_row(0, "hep-go", "A", "B", mode="logprob", p_a_chosen_a=0.9, p_a_chosen_b=0.3),
            gen_row(1, "hep-go", "B", "B", mode="logprob", p_a_chosen_a=0.4, p_a_chosen_b=0.2)]
    d = diagnostics(rows)
    assert d["mode"] == "logprob"
    assert d["mean_p_chosen"] == pytest.approx(((0.9 + 0.7) / 2 + (0.4 + 0.8) / 2) / 2)
    assert d["unparsed_rate"] == 0.0


def test_classifier_diagnostics_count_ties():
    rows = [classifier_row(0, "hep-go", 1.0, 1.0, shortened=False),
            classifier_row(1, "hep-go", 2.0, 1.0, shortened=False)]
    d = diagnostics(rows)
    assert d["mode"] == "classifier" and d["ties"] == 1 and "unparsed_rate" not in d


def full_rows(seed=0, p_right=0.7):
    import random

    rng = random.Random(seed)
    rows = []
    for subset in SUBSETS:
        for _ in range(20):
            va = "A" if rng.random() < p_right else "B"
            vb = "B" if rng.random() < p_right else "A"
            rows.append(gen_row(len(rows), subset, va, vb))
    return rows


def test_bootstrap_interval_is_seeded_and_contains_the_score():
    rows = full_rows()
    scores = score_predictions(rows)
    lo, hi = scores["diagnostics"]["score_ci95"]
    assert lo < scores["score"] < hi and hi - lo < 0.2
    assert bootstrap_score_ci(rows, seed=0) == [lo, hi]
    assert bootstrap_score_ci(rows, seed=1) != [lo, hi]
    perfect = [dict(r, correct=1.0) for r in rows]
    assert bootstrap_score_ci(perfect, samples=50) == [pytest.approx(1.0), pytest.approx(1.0)]
    d = scores["diagnostics"]
    assert d["score_chosen_a"] is not None and d["score_chosen_b"] is not None
    assert (d["score_chosen_a"] + d["score_chosen_b"]) / 2 == pytest.approx(scores["score"])


def test_score_predictions_keeps_its_keys_and_adds_diagnostics():
    rows = full_rows()
    scores = score_predictions(rows)
    assert {"score", "sections", "subsets", "counts", "diagnostics"} <= set(scores)
    assert set(scores["counts"]) >= {"examples", "per_subset", "unparsed_verdicts"}
    assert scores["counts"]["unparsed_verdicts"] == scores["diagnostics"]["unparsed_verdicts"] == 0
    json.dumps(scores)  # serialisable


def test_diagnostics_table_and_its_command(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(score_predictions(full_rows(0, 0.9))))
    b.write_text(json.dumps(score_predictions(full_rows(1, 0.5))))
    judges = [{"judge": "j1", "model": "Tiny-GenRM", "method": "Verify Only", "ours": True},
              {"judge": "j2", "model": "Tiny-Instruct", "method": "LLM-as-a-Judge", "ours": False}]
    out = tmp_path / "tables"
    proc = subprocess.run([sys.executable, "-m", "genrm", "diagnostics", "--judges", json.dumps(judges),
                           "--scores", str(a), str(b), "--out-dir", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = (out / "diagnostics.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("|"))
    assert [c.strip() for c in header.strip("|").split("|")][:5] == ["Judge", "Mode", "Score", "95% CI", "Unparsed"]
    assert "Tiny-GenRM (Verify Only)" in text and "Tiny-Instruct (LLM-as-a-Judge)" in text
    html = (out / "diagnostics.html").read_text()
    assert "Tiny-GenRM (Verify Only)" in html and "Tiny-Instruct (LLM-as-a-Judge)" in html
    assert write_diagnostics_table(judges, [str(a), str(b)], str(tmp_path / "d.md"), str(tmp_path / "d.html")) == text
    mismatch = subprocess.run([sys.executable, "-m", "genrm", "diagnostics", "--judges", json.dumps(judges[:1]),
                               "--scores", str(a), str(b), "--out-dir", str(out)], capture_output=True, text=True)
    assert mismatch.returncode == 2 and "1 judges but 2 score files" in mismatch.stderr
