"""Diagnostics of a judge's predictions: how far to trust its Score.

``diagnostics(rows)`` is added to ``scores.json`` by ``genrm.scoring``:

- ``unparsed_rate``: share of judge calls (two per example) without a verdict;
- ``accuracy_chosen_a`` / ``accuracy_chosen_b``: mean order score (1/0/0.5)
  when the chosen answer is shown as A / as B; ``score_chosen_a`` /
  ``score_chosen_b``: the RewardBench Score from that order alone;
- ``position_consistency``: among examples with both verdicts parsed, the
  share whose winner is the same answer in both orders;
- ``prefer_a``: share of parsed verdicts that say A (0.5 = no position bias);
- ``shortened``: examples whose prompt was cut to fit the context;
- ``mean_p_chosen`` (logprob mode): mean P(chosen)/(P(A)+P(B)) over orders;
- ``ties`` (classifiers): examples with equal rewards;
- ``score_ci95``: a seeded bootstrap 95% interval of Score, resampling the
  examples of each subset with replacement (stratified, so every subset keeps
  its size and the official weighting stays defined).

``python -m genrm.diagnostics`` writes the diagnostics table of all judges
(``results/tables/diagnostics.md``, rule ``diagnostics_table``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict

from genrm.protocol import order_score
from genrm.scoring import SUBSET_SECTION, overall_score, section_scores

BOOTSTRAP_SEED = 0
BOOTSTRAP_SAMPLES = 1000
LEVEL = 0.95


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _score_from(rows: list[dict], key) -> float | None:
    totals, counts = defaultdict(float), defaultdict(int)
    for r in rows:
        totals[r["subset"]] += key(r)
        counts[r["subset"]] += 1
    return overall_score(section_scores({s: totals[s] / counts[s] for s in counts}))


def row_mode(row: dict) -> str:
    if "mode" in row:
        return row["mode"]
    if "reward_chosen" in row:
        return "classifier"
    return "logprob" if "p_a_chosen_a" in row else "generate"


def _quantile(sorted_values: list[float], q: float) -> float:
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def bootstrap_score_ci(rows: list[dict], seed: int = BOOTSTRAP_SEED, samples: int = BOOTSTRAP_SAMPLES,
                       level: float = LEVEL) -> list[float] | None:
    """Percentile interval of Score over ``samples`` stratified resamples (None if Score is undefined)."""
    by_subset: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_subset[r["subset"]].append(float(r["correct"]))
    subsets = sorted(by_subset)
    if overall_score(section_scores({s: 0.0 for s in subsets if s in SUBSET_SECTION})) is None:
        return None
    rng = random.Random(seed)
    scores = []
    for _ in range(samples):
        acc = {}
        for s in subsets:
            values = by_subset[s]
            acc[s] = sum(rng.choices(values, k=len(values))) / len(values)
        scores.append(overall_score(section_scores(acc)))
    scores.sort()
    tail = (1 - level) / 2
    return [_quantile(scores, tail), _quantile(scores, 1 - tail)]


def diagnostics(rows: list[dict], seed: int = BOOTSTRAP_SEED, samples: int = BOOTSTRAP_SAMPLES) -> dict:
    """Position-bias and reliability diagnostics of one judge's prediction rows (fractions in [0, 1])."""
    modes = sorted({row_mode(r) for r in rows})
    out: dict = {
        "mode": modes[0] if len(modes) == 1 else ("mixed" if modes else None),
        "examples": len(rows),
        "shortened": sum(bool(r.get("shortened")) for r in rows),
        "score_ci95": bootstrap_score_ci(rows, seed, samples) if rows else None,
        "bootstrap": {"samples": samples, "seed": seed, "level": LEVEL, "resampling": "examples within each subset"},
    }
    generative = [r for r in rows if "verdict_chosen_a" in r]
    if generative:
        verdicts = [v for r in generative for v in (r["verdict_chosen_a"], r["verdict_chosen_b"])]
        parsed = [v for v in verdicts if v is not None]
        both = [r for r in generative if r["verdict_chosen_a"] is not None and r["verdict_chosen_b"] is not None]
        # same winner in both orders: (A, B) = chosen twice, (B, A) = rejected twice
        consistent = sum(r["verdict_chosen_a"] != r["verdict_chosen_b"] for r in both)
        out.update({
            "unparsed_verdicts": len(verdicts) - len(parsed),
            "unparsed_rate": (len(verdicts) - len(parsed)) / len(verdicts),
            "accuracy_chosen_a": _mean(order_score(r["verdict_chosen_a"], "A") for r in generative),
            "accuracy_chosen_b": _mean(order_score(r["verdict_chosen_b"], "B") for r in generative),
            "score_chosen_a": _score_from(generative, lambda r: order_score(r["verdict_chosen_a"], "A")),
            "score_chosen_b": _score_from(generative, lambda r: order_score(r["verdict_chosen_b"], "B")),
            "position_consistency": consistent / len(both) if both else None,
            "both_parsed_examples": len(both),
            "prefer_a": sum(v == "A" for v in parsed) / len(parsed) if parsed else None,
        })
        soft = [r for r in generative if r.get("p_a_chosen_a") is not None]
        if soft:
            out["mean_p_chosen"] = _mean((r["p_a_chosen_a"] + 1 - r["p_a_chosen_b"]) / 2 for r in soft)
    classifier = [r for r in rows if "reward_chosen" in r]
    if classifier:
        out["ties"] = sum(r["reward_chosen"] == r["reward_rejected"] for r in classifier)
    return out


# --- the diagnostics table -----------------------------------------------------------------

COLUMNS = ["Judge", "Mode", "Score", "95% CI", "Unparsed", "Acc. chosen=A", "Acc. chosen=B", "Consistency",
           "Prefers A", "Shortened"]


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def table_row(name: str, scores: dict) -> list[str]:
    d = scores.get("diagnostics", {})
    ci = d.get("score_ci95")
    return [name, d.get("mode") or "–", _pct(scores.get("score")),
            "–" if not ci else f"{100 * ci[0]:.2f} – {100 * ci[1]:.2f}",
            _pct(d.get("unparsed_rate")), _pct(d.get("accuracy_chosen_a")), _pct(d.get("accuracy_chosen_b")),
            _pct(d.get("position_consistency")), _pct(d.get("prefer_a")), str(d.get("shortened", "–"))]


def diagnostics_table(entries: list[tuple[str, dict]]) -> str:
    """A Markdown table, one row per (judge name, scores.json payload); percentages."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join([":---"] + [":---:"] * (len(COLUMNS) - 1)) + "|"]
    lines += ["| " + " | ".join(table_row(name, scores)) + " |" for name, scores in entries]
    note = ("\nPercentages. Score and its bootstrap 95% interval (examples resampled within subsets, "
            f"{BOOTSTRAP_SAMPLES} samples, seed {BOOTSTRAP_SEED}); Unparsed: judge calls without a verdict; "
            "Acc. chosen=A/B: accuracy when the chosen answer is shown first/second; Consistency: same winner "
            "in both orders; Prefers A: share of verdicts for position A (50 = no position bias); "
            "Shortened: examples cut to fit the context (count).\n")
    return "\n".join(lines) + "\n" + note


def write_diagnostics_table(judges: list[dict], score_files: list[str], out: str) -> str:
    from genrm.io import atomic_path, read_json

    if len(judges) != len(score_files):
        raise ValueError(f"{len(judges)} judges but {len(score_files)} score files")
    text = "## Judge diagnostics\n\n" + diagnostics_table(
        [(f"{j.get('model', j['judge'])} ({j.get('method', '')})" if j.get("model") else j["judge"], read_json(p))
         for j, p in zip(judges, score_files)])
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genrm.diagnostics", description="the judge diagnostics table")
    p.add_argument("--judges", required=True, help="JSON: the judges' table rows (judge, model, method)")
    p.add_argument("--scores", nargs="+", required=True, help="scores.json of each judge, same order")
    p.add_argument("--out", required=True, help="Markdown file")
    a = p.parse_args(argv)
    print(write_diagnostics_table(json.loads(a.judges), a.scores, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
