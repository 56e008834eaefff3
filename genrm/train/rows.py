"""Training rows for OpenRLHF (and the CPU TRL backend) from preference pairs.

SFT (GenRM) rows. Judge row: the chosen answer is put at A or B by a seeded
generator and the response is the matching verdict. Verify+Correct adds
"correct" rows (the user conversation answered by the chosen answer) at a ratio
lambda per pair.

Bradley-Terry rows (method bt): the same valid pairs, as the two conversations
``{"chosen": [...], "rejected": [...]}`` that OpenRLHF's RewardDataset reads
with ``--data.chosen_key chosen --data.rejected_key rejected
--data.apply_chat_template`` (no prompt key: each side is the whole conversation
through the chat template). Every pair is kept as it is: no placement, no mixing.

Rows are streamed: memory stays flat whatever the size of the data.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterator

from genrm.io import atomic_path, iter_jsonl, write_json
from genrm.protocol import VERDICT_A, VERDICT_B, judge_messages, pair_problem, render_question


def judge_row(chosen: list[dict], rejected: list[dict], chosen_at_a: bool) -> dict:
    question = render_question(chosen[:-1])
    good, bad = chosen[-1]["content"], rejected[-1]["content"]
    a, b = (good, bad) if chosen_at_a else (bad, good)
    verdict = VERDICT_A if chosen_at_a else VERDICT_B
    return {
        "prompt": judge_messages(question, a, b),
        "response": [{"role": "assistant", "content": verdict}],
    }


def correct_row(chosen: list[dict]) -> dict:
    return {
        "prompt": [{"role": m["role"], "content": m["content"]} for m in chosen[:-1]],
        "response": [{"role": "assistant", "content": chosen[-1]["content"]}],
    }


def correct_copies(rng: random.Random, ratio: float) -> int:
    """How many correct rows one pair contributes: floor(ratio) plus one more with
    probability frac(ratio), so the expected count per pair is exactly ``ratio``."""
    whole = math.floor(ratio)
    return whole + (1 if rng.random() < ratio - whole else 0)


def valid_pairs(pairs, stats: Counter) -> Iterator[dict]:
    """The pairs that pass the validity filter (the same for every method); count inputs and
    drops by reason into ``stats``."""
    for row in pairs:
        stats["rows_in"] += 1
        problem = pair_problem(row)
        if problem:
            stats[f"dropped:{problem}"] += 1
            continue
        yield row


def sft_rows(pairs, correct_ratio: float, seed: int, stats: Counter) -> Iterator[dict]:
    """Yield SFT rows; count inputs, drops by reason and outputs into ``stats``."""
    placement = random.Random(seed)
    mixing = random.Random(seed + 1)
    for row in valid_pairs(pairs, stats):
        chosen_at_a = placement.random() < 0.5
        stats["chosen_at_a" if chosen_at_a else "chosen_at_b"] += 1
        yield judge_row(row["chosen"], row["rejected"], chosen_at_a)
        for _ in range(correct_copies(mixing, correct_ratio) if correct_ratio > 0 else 0):
            stats["correct_rows"] += 1
            yield correct_row(row["chosen"])


def format_sft(preferences: str, out: str, stats_out: str, method: str, correct_ratio: float, seed: int) -> dict:
    stats: Counter = Counter()
    n = 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in sft_rows(iter_jsonl(preferences), correct_ratio, seed, stats):
            f.write(json.dumps(row, ensure_ascii=False))
            f.write("\n")
            n += 1
        judge_rows = stats["chosen_at_a"] + stats["chosen_at_b"]
        if judge_rows == 0:  # inside the block: no rows file is left behind
            raise ValueError(f"no valid preference pair in {preferences}: {dict(stats)}")
    summary = {
        "method": method,
        "correct_ratio": correct_ratio,
        "seed": seed,
        "rows_in": stats["rows_in"],
        "dropped": {k.split(":", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("dropped:")},
        "judge_rows": judge_rows,
        "correct_rows": stats["correct_rows"],
        "rows_out": n,
        "chosen_at_a": stats["chosen_at_a"],
        "chosen_at_b": stats["chosen_at_b"],
        "fraction_chosen_at_a": stats["chosen_at_a"] / judge_rows,
    }
    write_json(stats_out, summary)
    return summary


# --- Bradley-Terry rows ---------------------------------------------------------------

def bt_row(chosen: list[dict], rejected: list[dict]) -> dict:
    """A pair as OpenRLHF's RewardDataset reads it: both whole conversations, roles and contents only."""
    return {"chosen": [{"role": m["role"], "content": m["content"]} for m in chosen],
            "rejected": [{"role": m["role"], "content": m["content"]} for m in rejected]}


def bt_rows(pairs, stats: Counter) -> Iterator[dict]:
    """Yield a Bradley-Terry row per valid pair; count inputs and drops by reason into ``stats``."""
    for row in valid_pairs(pairs, stats):
        stats["pairs"] += 1
        yield bt_row(row["chosen"], row["rejected"])


def format_bt(preferences: str, out: str, stats_out: str, method: str) -> dict:
    """Write the Bradley-Terry rows of ``preferences`` to ``out`` and their counts to ``stats_out``."""
    stats: Counter = Counter()
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in bt_rows(iter_jsonl(preferences), stats):
            f.write(json.dumps(row, ensure_ascii=False))
            f.write("\n")
        if stats["pairs"] == 0:  # inside the block: no rows file is left behind
            raise ValueError(f"no valid preference pair in {preferences}: {dict(stats)}")
    summary = {
        "method": method,
        "rows_in": stats["rows_in"],
        "dropped": {k.split(":", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("dropped:")},
        "pairs": stats["pairs"],
        "rows_out": stats["pairs"],
    }
    write_json(stats_out, summary)
    return summary
