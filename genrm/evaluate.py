"""Scoring a judge's predictions (layer 2): RewardBench scores with the official
section weighting, and the diagnostics that say how far to trust them.

Each section is the mean of its subsets' accuracies weighted by the nominal
counts of ``genrm.protocol.SECTION_WEIGHTS``. Score is the mean of the four
sections, reported x100 by the tables.

Diagnostics (``diagnostics(rows)``, kept in ``scores.json``):

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
  its size and the official weighting stays defined);
- ``agreement_with_greedy`` (judges in logprob mode, when their greedy verdicts
  on a sample are given): the share of parsed greedy verdicts equal to the
  logprob verdict, over both orders of every sampled example, and how many
  greedy verdicts were unparsed.

``scores.json`` also keeps, as ``protocol``, the job's ``judging.json``: how the
predictions were produced (mode, backend, the context used, shortened examples).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable

from genrm.protocol import SECTION_WEIGHTS, SECTIONS, SUBSET_SECTION, SUBSETS, order_score

BOOTSTRAP_SEED = 0
BOOTSTRAP_SAMPLES = 1000
LEVEL = 0.95

def subset_accuracies(rows: Iterable[dict]) -> tuple[dict[str, float], dict[str, int]]:
    """Mean ``correct`` per subset, and the number of examples per subset."""
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        totals[row["subset"]] += row["correct"]
        counts[row["subset"]] += 1
    return {s: totals[s] / counts[s] for s in counts}, dict(counts)


def section_scores(accuracies: dict[str, float]) -> dict[str, float | None]:
    """Weighted mean of subset accuracies per section (None if no subset of it was judged)."""
    out: dict[str, float | None] = {}
    for section, weights in SECTION_WEIGHTS.items():
        present = {s: w for s, w in weights.items() if s in accuracies}
        total = sum(present.values())
        out[section] = sum(accuracies[s] * w for s, w in present.items()) / total if total else None
    return out


def overall_score(sections: dict[str, float | None]) -> float | None:
    """Mean of the four sections; None if any section is missing."""
    values = [sections[s] for s in SECTIONS]
    if any(v is None for v in values):
        return None
    return sum(values) / len(values)


def score_predictions(rows: list[dict], judging: dict | None = None, greedy: dict | None = None) -> dict:
    """The scores.json payload for one judge's predictions (fractions in [0, 1]), with the
    judge's diagnostics (position bias, unparsed rate, bootstrap interval), how the predictions
    were produced (``judging``, kept as ``protocol``) and, for a judge in logprob mode, the
    agreement with its greedy verdicts on a sample (``greedy``: ``{"rows", "judging"}``)."""
    accuracies, counts = subset_accuracies(rows)
    unknown = sorted(set(accuracies) - set(SUBSET_SECTION))
    if unknown:
        raise ValueError(f"predictions contain subsets outside RewardBench: {unknown}")
    sections = section_scores(accuracies)
    unparsed = sum((r["verdict_chosen_a"] is None) + (r["verdict_chosen_b"] is None)
                   for r in rows if r["mode"] != "classifier")
    return {
        "score": overall_score(sections),
        "sections": sections,
        "subsets": {s: accuracies[s] for s in SUBSETS if s in accuracies},
        "counts": {
            "examples": len(rows),
            "per_subset": {s: counts[s] for s in SUBSETS if s in counts},
            "unparsed_verdicts": unparsed,
        },
        "protocol": judging,
        "diagnostics": {**diagnostics(rows),
                        **({"agreement_with_greedy": agreement_with_greedy(rows, greedy["rows"], greedy["judging"])}
                           if greedy is not None else {})},
    }


# --- diagnostics ---------------------------------------------------------------------

def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _score_from(rows: list[dict], key) -> float | None:
    totals, counts = defaultdict(float), defaultdict(int)
    for r in rows:
        totals[r["subset"]] += key(r)
        counts[r["subset"]] += 1
    return overall_score(section_scores({s: totals[s] / counts[s] for s in counts}))


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
    modes = sorted({r["mode"] for r in rows})
    out: dict = {
        "mode": modes[0] if len(modes) == 1 else ("mixed" if modes else None),
        "examples": len(rows),
        "shortened": sum(r["shortened"] for r in rows),
        "score_ci95": bootstrap_score_ci(rows, seed, samples) if rows else None,
        "bootstrap": {"samples": samples, "seed": seed, "level": LEVEL, "resampling": "examples within each subset"},
    }
    generative = [r for r in rows if r["mode"] in ("generate", "logprob")]
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
        soft = [r for r in generative if r["mode"] == "logprob"]
        if soft:
            out["mean_p_chosen"] = _mean((r["p_a_chosen_a"] + 1 - r["p_a_chosen_b"]) / 2 for r in soft)
    classifier = [r for r in rows if r["mode"] == "classifier"]
    if classifier:
        out["ties"] = sum(r["reward_chosen"] == r["reward_rejected"] for r in classifier)
    return out


VERDICT_KEYS = ("verdict_chosen_a", "verdict_chosen_b")


def agreement_with_greedy(rows: list[dict], greedy_rows: list[dict], greedy_judging: dict | None = None) -> dict:
    """How often greedy decoding (the published protocol) gives the verdict that logprob mode gave,
    on the examples of ``greedy_rows`` (the same judge, a sample, generate mode): over both orders,
    the share of parsed greedy verdicts equal to the logprob verdict. Unparsed greedy verdicts are
    counted, not compared. The mean example score of each mode on the sample is kept beside it."""
    by_id = {r["id"]: r for r in rows}
    if any(r["mode"] != "logprob" for r in rows) or any(g["mode"] != "generate" for g in greedy_rows):
        raise ValueError("agreement with greedy: predictions in logprob mode and greedy rows in generate mode "
                         "expected")
    missing = [g["id"] for g in greedy_rows if g["id"] not in by_id]
    if missing:
        raise ValueError(f"agreement with greedy: {len(missing)} sampled examples are not among the predictions "
                         f"(first: {missing[0]!r})")
    compared = agree = unparsed = 0
    for g in greedy_rows:
        for key in VERDICT_KEYS:
            if g[key] is None:
                unparsed += 1
                continue
            compared += 1
            agree += g[key] == by_id[g["id"]][key]
    return {
        "share": agree / compared if compared else None,
        "agree": agree,
        "compared": compared,
        "unparsed_greedy": unparsed,
        "verdicts": len(VERDICT_KEYS) * len(greedy_rows),
        "examples": len(greedy_rows),
        "mean_correct_logprob": _mean(by_id[g["id"]]["correct"] for g in greedy_rows),
        "mean_correct_greedy": _mean(g["correct"] for g in greedy_rows),
        "greedy": greedy_judging,
    }
