"""Loading the two data sources and checking their rows.

A source is a Hugging Face dataset id (loaded with ``datasets``), a local
``.jsonl``/``.json``/``.parquet`` file (air-gapped clusters pre-download), or
``demo:<kind>`` for the embedded demo's generated data.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

PREFERENCE_COLUMNS = ("chosen", "rejected")
REWARDBENCH_COLUMNS = ("id", "subset", "prompt", "chosen", "rejected")
REQUIRED_COLUMNS = {"preferences": PREFERENCE_COLUMNS, "rewardbench": REWARDBENCH_COLUMNS}


class DataError(ValueError):
    """A data source that cannot be used at all (as opposed to single bad rows)."""


def _iter_local_jsonl(path: Path, bad: Counter) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad["invalid_json"] += 1
                continue
            if isinstance(row, dict):
                yield row
            else:
                bad["not_an_object"] += 1


def load_source(source: str, split: str, kind: str, seed: int = 0) -> tuple[list[str], Iterator[dict], Counter]:
    """Open a source. Returns (column names, row iterator, counter of unreadable rows)."""
    bad: Counter = Counter()
    if source.startswith("demo:"):
        from genrm import demo

        rows = demo.generate(source.removeprefix("demo:"), seed=seed)
        columns = sorted({k for r in rows for k in r})
        return columns, iter(rows), bad
    path = Path(source)
    if source.endswith((".jsonl", ".json")):
        if not path.is_file():
            raise DataError(f"{kind} source file not found: {source}")
        # Plain JSON lines, not Arrow: one row of the wrong type must not sink the file.
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "{}")
        try:
            columns = list(json.loads(first))
        except (json.JSONDecodeError, TypeError):
            columns = []
        return columns, _iter_local_jsonl(path, bad), bad
    import datasets

    if source.endswith(".parquet"):
        if not path.is_file():
            raise DataError(f"{kind} source file not found: {source}")
        ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    else:
        ds = datasets.load_dataset(source, split=split)
    return list(ds.column_names), iter(ds), bad


def check_columns(columns: list[str], kind: str, source: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in columns]
    if missing:
        raise DataError(
            f"{kind} source {source!r} lacks required column(s) {', '.join(missing)}; "
            f"it has: {', '.join(columns) or 'none'}; required: {', '.join(REQUIRED_COLUMNS[kind])}"
        )


# --- preference pairs -------------------------------------------------------

def _messages_problem(messages) -> str | None:
    if not isinstance(messages, list):
        return "messages_not_a_list"
    if not messages:
        return "empty_messages"
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return "malformed_message"
    return None


def pair_problem(row: dict) -> str | None:
    """Why a preference row is not a valid pair, or None if it is.

    Valid: both sides are non-empty message lists of equal length, both end
    with an assistant message, the final answers differ, and every earlier
    message is identical in role and content.
    """
    if "chosen" not in row or "rejected" not in row:
        return "missing_key"
    chosen, rejected = row["chosen"], row["rejected"]
    problem = _messages_problem(chosen) or _messages_problem(rejected)
    if problem:
        return problem
    if len(chosen) != len(rejected):
        return "length_mismatch"
    if len(chosen) < 2:
        return "no_user_turn"
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        return "not_ending_with_assistant"
    if chosen[-1]["content"] == rejected[-1]["content"]:
        return "identical_answers"
    for a, b in zip(chosen[:-1], rejected[:-1]):
        if a["role"] != b["role"] or a["content"] != b["content"]:
            return "context_mismatch"
    return None


def rewardbench_problem(row: dict) -> str | None:
    """Why a RewardBench row cannot be judged, or None."""
    from genrm.scoring import SUBSET_SECTION

    for key in ("prompt", "chosen", "rejected", "subset"):
        if not isinstance(row.get(key), str):
            return f"bad_{key}"
    if row["subset"] not in SUBSET_SECTION:
        return "unknown_subset"
    if not isinstance(row.get("id"), int):
        return "bad_id"
    return None


# Preference rows are only read here; the format step applies the pair filter
# and reports its counts. RewardBench rows that cannot be judged are dropped here.
ROW_PROBLEM = {"preferences": lambda row: None, "rewardbench": rewardbench_problem}


def download(source: str, split: str, kind: str, out: str, stats_out: str, seed: int = 0,
             limit: int | None = None) -> dict:
    """Fetch a source, check its columns, drop malformed rows (counted), write JSON lines."""
    from genrm.io import write_json, write_jsonl

    columns, rows, bad = load_source(source, split, kind, seed=seed)
    check_columns(columns, kind, source)
    problem_of = ROW_PROBLEM[kind]
    read = 0

    def good_rows():
        nonlocal read
        written = 0
        for row in rows:
            if limit is not None and written >= limit:
                break
            read += 1
            problem = problem_of(row)
            if problem:
                bad[problem] += 1
                continue
            written += 1
            yield {k: row[k] for k in columns if k in row} if kind == "rewardbench" else row

    n = write_jsonl(out, good_rows())
    unreadable = sum(v for k, v in bad.items() if k in ("invalid_json", "not_an_object"))
    stats = {
        "source": source,
        "split": split,
        "kind": kind,
        "rows_read": read + unreadable,
        "rows_written": n,
        "dropped": dict(sorted(bad.items())),
    }
    if n == 0:
        raise DataError(f"{kind} source {source!r} gave no usable rows; dropped: {dict(bad)}")
    write_json(stats_out, stats)
    return stats
