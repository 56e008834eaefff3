"""Benchmark: the format step on a training set the size of Skywork-Reward-Preference-80K.

Generates 80,000 preference rows of realistic size (a few kB each, 20% multi-turn,
a few malformed rows), then times in separate processes:
  - baseline: reading and parsing the file, nothing else (the least any format step must do);
  - format_sft for Verify+Correct (lambda = 1), the heavier method.
Prints each one's seconds and peak memory, the time ratio to the baseline, and peak
memory over the data size. Last line: ``format_seconds_80k=<seconds>``.

    .venv/bin/python benchmarks/format_sft.py
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
N_ROWS = 80_000

WORDS = ("the model answer should explain each step clearly and check the result before it "
         "returns a value that the user can trust with code examples tests and notes").split()


def text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def make_rows(path: Path, n: int) -> None:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            context = [{"role": "user", "content": text(rng, rng.randint(20, 200))}]
            if rng.random() < 0.2:
                context = [{"role": "user", "content": text(rng, 60)},
                           {"role": "assistant", "content": text(rng, 150)}] + context
            good = text(rng, rng.randint(50, 500))
            bad = text(rng, rng.randint(50, 500)) if i % 1000 else good  # some identical answers
            f.write(json.dumps({"chosen": context + [{"role": "assistant", "content": good}],
                                "rejected": context + [{"role": "assistant", "content": bad}],
                                "source": "bench"}) + "\n")


CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
t = time.perf_counter()
if {task!r} == "parse":
    with open({src!r}, encoding="utf-8") as f:
        n = sum(1 for line in f if json.loads(line))
else:
    from genrm.train.rows import format_sft
    n = format_sft({src!r}, {out!r}, {out!r} + ".stats.json", "verify_correct", 1.0, 42)["rows_out"]
print(json.dumps({{"seconds": time.perf_counter() - t, "rows": n,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(task: str, src: Path, out: Path) -> dict:
    code = CHILD.format(repo=str(REPO), task=task, src=str(src), out=str(out))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "preferences.jsonl", Path(tmp) / "rows.jsonl"
        t = time.perf_counter()
        make_rows(src, N_ROWS)
        size_mb = src.stat().st_size / 2**20
        print(f"data: {N_ROWS} rows, {size_mb:.0f} MB (generated in {time.perf_counter() - t:.1f}s)")
        base = measure("parse", src, out)
        fmt = measure("format", src, out)
        print(f"baseline (parse only): {base['seconds']:.1f}s, peak {base['peak_mb']:.0f} MB")
        print(f"format_sft verify_correct: {fmt['seconds']:.1f}s, peak {fmt['peak_mb']:.0f} MB, "
              f"{fmt['rows']} rows out ({out.stat().st_size / 2**20:.0f} MB)")
        print(f"time vs baseline: {fmt['seconds'] / base['seconds']:.2f}x; "
              f"peak memory / data size: {fmt['peak_mb'] / size_mb:.2f}")
        print(f"format_seconds_80k={fmt['seconds']:.1f}")


if __name__ == "__main__":
    main()
