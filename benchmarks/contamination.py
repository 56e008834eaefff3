"""Benchmark of the contamination check on a training set of the real size (80K rows).

    python benchmarks/contamination.py [--rows 80000] [--rewardbench PATH] [--keep DIR]

The RewardBench side is the real `filtered` split when it can be found (the shared
folder's data/rewardbench/filtered.jsonl, or --rewardbench), otherwise 2985
generated prompts. The training side is generated, shaped like
Skywork-Reward-Preference-80K: prompts of log-normal length (median about 90 words,
long tail to 3000), 15% multi-turn, chosen and rejected answers of about 200 words.
Its words are drawn from the RewardBench vocabulary itself, the slow case (every
window must be hashed and looked up). Planted: exact copies of RewardBench prompts
(case, punctuation and spacing changed) and 20-word passages of long RewardBench
prompts inside unrelated text; the script checks that all are found.

It times the rule's whole work (`genrm.contamination.check`: read both files,
index, scan, write the report) and prints as its last line `seconds_80k=<seconds>`
(for another --rows, the time scaled linearly to 80K rows).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genrm import contamination  # noqa: E402
from genrm.io import read_jsonl, write_jsonl  # noqa: E402
from genrm.protocol import SUBSETS  # noqa: E402

PLANT_EXACT = 100
PLANT_PASSAGE = 100


def find_rewardbench(explicit: str | None) -> Path | None:
    candidates = [explicit] if explicit else []
    candidates.append(os.path.join(os.environ.get("GENRM_SHARED", str(REPO.parent / "shared")),
                                   "data", "rewardbench", "filtered.jsonl"))
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


def generated_rewardbench(rng: random.Random, words: list[str]) -> list[dict]:
    rows = []
    for i in range(2985):
        n = max(3, int(rng.lognormvariate(3.8, 0.9)))
        rows.append({"id": i, "subset": SUBSETS[i % len(SUBSETS)], "prompt": " ".join(rng.choices(words, k=n)),
                     "chosen": "a", "rejected": "b"})
    return rows


def _vary(text: str, rng: random.Random) -> str:
    """The same words after normalisation: case, punctuation and spacing changed."""
    out = []
    for w in text.split():
        w = w.upper() if rng.random() < 0.3 else w
        out.append(w + ("," if rng.random() < 0.1 else ""))
    return "  " + "   ".join(out) + " ?!"


def training_rows(n_rows: int, rb: list[dict], seed: int = 0) -> tuple[list[dict], set[int], set[int]]:
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    vocab = sorted({t for r in rb for t in contamination.tokens(r["prompt"])})
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.05  # Zipf-like word frequencies
    weights /= weights.sum()
    words = np.array(vocab, dtype=object)
    pool = words[nprng.choice(len(vocab), size=4_000_000, p=weights)]  # a stream of words to slice from
    cursor = 0

    def text(k: int) -> str:
        nonlocal cursor
        if cursor + k > len(pool):
            cursor = 0
        cursor += k
        return " ".join(pool[cursor - k:cursor])

    long_prompts = [t for t in (contamination.tokens(r["prompt"]) for r in rb) if len(t) >= 40]
    exact_rows = set(rng.sample(range(n_rows), PLANT_EXACT))
    passage_rows = set(rng.sample(sorted(set(range(n_rows)) - exact_rows), PLANT_PASSAGE))
    rows = []
    for i in range(n_rows):
        k = min(3000, max(3, int(nprng.lognormal(4.5, 1.0))))
        prompt = text(k)
        if i in exact_rows:
            prompt = _vary(rng.choice(rb)["prompt"], rng)
        elif i in passage_rows:
            source = rng.choice(long_prompts)
            at = rng.randrange(len(source) - 20)
            prompt = text(30) + " " + " ".join(source[at:at + 20]) + " " + text(30)
        context = [{"role": "user", "content": prompt}]
        if rng.random() < 0.15:
            context = [{"role": "user", "content": text(60)}, {"role": "assistant", "content": text(150)}] + context
        rows.append({"chosen": context + [{"role": "assistant", "content": text(200)}],
                     "rejected": context + [{"role": "assistant", "content": text(200)}],
                     "source": "benchmark"})
    return rows, exact_rows, passage_rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=80_000)
    p.add_argument("--rewardbench", default=None)
    p.add_argument("--ngram", type=int, default=contamination.DEFAULT_N)
    p.add_argument("--keep", default=None, help="write the data and the report here instead of a temp dir")
    a = p.parse_args()

    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="contamination-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rb_path = find_rewardbench(a.rewardbench)
    if rb_path is None:
        rng = random.Random(1)
        base = [f"w{i}" for i in range(20000)]
        rb = generated_rewardbench(rng, base)
        rb_path = work / "rewardbench.jsonl"
        write_jsonl(rb_path, rb)
        print(f"rewardbench: generated, {len(rb)} prompts")
    else:
        rb = read_jsonl(rb_path)
        print(f"rewardbench: {rb_path}, {len(rb)} prompts")

    t = time.perf_counter()
    rows, exact_rows, passage_rows = training_rows(a.rows, rb)
    prefs = work / "preferences.jsonl"
    write_jsonl(prefs, rows)
    size_mb = prefs.stat().st_size / 1e6
    print(f"training: {len(rows)} generated rows, {size_mb:.0f} MB, made in {time.perf_counter() - t:.1f} s")
    del rows

    t = time.perf_counter()
    summary = contamination.check(str(prefs), str(rb_path), str(work / "report"), n=a.ngram)
    seconds = time.perf_counter() - t
    found = {m["row"] for m in read_jsonl(work / "report" / "matches.jsonl")}
    exact_found = len(exact_rows & found)
    passage_found = len(passage_rows & found)
    others = len(found - exact_rows - passage_rows)
    print(f"scan only: {summary['seconds']:.2f} s; whole check incl. writing: {seconds:.2f} s")
    print(f"planted exact copies found: {exact_found}/{len(exact_rows)}; "
          f"planted {a.ngram}+-word passages found: {passage_found}/{len(passage_rows)}; "
          f"other rows flagged: {others}")
    print(json.dumps({k: summary[k] for k in ("training_rows", "contaminated_training_rows",
                                               "exact_training_rows", "ngram_training_rows",
                                               "contaminated_prompts")}))
    if not a.keep:
        for f in sorted(work.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        work.rmdir()
    ok = exact_found == len(exact_rows) and passage_found == len(passage_rows)
    if not ok:
        print("error: planted overlaps were missed", file=sys.stderr)
    print(f"seconds_80k={seconds * 80_000 / a.rows:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
