"""Diagnostics in scores.json and the diagnostics table: each figure on rows whose answer is known."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from genrm.evaluate import agreement_with_greedy, bootstrap_score_ci, diagnostics, score_predictions
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


# --- agreement of logprob verdicts with greedy decoding -------------------------------------------

def logprob_rows():
    return [gen_row(i, "hep-go", va, vb, mode="logprob", p_a_chosen_a=0.5, p_a_chosen_b=0.5)
            for i, (va, vb) in enumerate([("A", "B"), ("A", "A"), ("B", "B"), ("A", "B"), (None, "B")])]


def test_agreement_with_greedy_counts_parsed_verdicts_of_both_orders():
    greedy = [gen_row(0, "hep-go", "A", "B"),  # both agree
              gen_row(1, "hep-go", "A", "B"),  # second order differs
              gen_row(2, "hep-go", None, "B"),  # first unparsed, second agrees
              gen_row(4, "hep-go", "A", None)]  # logprob tie (None) vs A: differs; second unparsed
    a = agreement_with_greedy(logprob_rows(), greedy, {"mode": "generate"})
    assert (a["agree"], a["compared"], a["unparsed_greedy"], a["verdicts"], a["examples"]) == (4, 6, 2, 8, 4)
    assert a["share"] == pytest.approx(4 / 6)
    assert a["mean_correct_greedy"] == pytest.approx((1 + 1 + 0.75 + 0.75) / 4)
    assert a["mean_correct_logprob"] == pytest.approx((1 + 0.5 + 0.5 + 0.75) / 4)  # ids 0, 1, 2, 4
    assert a["greedy"] == {"mode": "generate"}
    assert agreement_with_greedy(logprob_rows(), [gen_row(2, "hep-go", None, None)])["share"] is None


def test_agreement_with_greedy_refuses_rows_that_do_not_match():
    with pytest.raises(ValueError, match="not among the predictions"):
        agreement_with_greedy(logprob_rows(), [gen_row(99, "hep-go", "A", "B")])
    with pytest.raises(ValueError, match="generate mode expected"):
        agreement_with_greedy(logprob_rows(), [gen_row(0, "hep-go", "A", "B", mode="logprob")])


def test_score_command_keeps_the_protocol_and_the_agreement(tmp_path):
    from genrm.io import read_json, write_json, write_jsonl

    rows = [dict(r, mode="logprob", p_a_chosen_a=0.5, p_a_chosen_b=0.5) for r in full_rows()]
    greedy = [dict(r, verdict_chosen_b=None) if k % 2 else r for k, r in enumerate(full_rows()[:10])]
    for name, data in (("p.jsonl", rows), ("g.jsonl", greedy)):
        write_jsonl(tmp_path / name, data)
    judging = {"mode": "logprob", "max_model_len": 4096, "shortened": 0}
    write_json(tmp_path / "j.json", judging)
    write_json(tmp_path / "gj.json", {"mode": "generate", "sample": {"size": 10}})
    proc = subprocess.run([sys.executable, "-m", "genrm", "score", "--predictions", str(tmp_path / "p.jsonl"),
                           "--judging", str(tmp_path / "j.json"), "--greedy", str(tmp_path / "g.jsonl"),
                           str(tmp_path / "gj.json"), "--out", str(tmp_path / "s.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    scores = read_json(tmp_path / "s.json")
    assert scores["protocol"] == judging
    a = scores["diagnostics"]["agreement_with_greedy"]
    assert (a["agree"], a["compared"], a["unparsed_greedy"]) == (15, 15, 5) and a["share"] == 1.0
    assert a["greedy"] == {"mode": "generate", "sample": {"size": 10}}
    assert "agreement_with_greedy" not in score_predictions(rows)["diagnostics"]
