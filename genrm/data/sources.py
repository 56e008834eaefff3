"""Loading the two data sources and checking their rows.

A source is a Hugging Face dataset id (loaded with ``datasets``), a local
``.jsonl``/``.json``/``.parquet`` file (air-gapped clusters pre-download), or
``demo:<kind>`` for the embedded demo's generated data.

Rows are checked one by one: a line that is not JSON, a row that is not an
object or lacks a required column, a RewardBench row that cannot be judged, is
dropped and counted by reason, wherever it stands in the file. A source fails
as a whole only when no row is usable, with a message naming what is missing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from genrm.data import demo
from genrm.io import atomic_path, write_json
from genrm.protocol import SUBSET_SECTION

REQUIRED_COLUMNS = {"preferences": ("chosen", "rejected"),
                    "rewardbench": ("id", "subset", "prompt", "chosen", "rejected")}
# What a RewardBench row keeps: the required columns and, where present, who wrote the answers.
REWARDBENCH_KEEP = (*REQUIRED_COLUMNS["rewardbench"], "chosen_model", "rejected_model")


class DataError(ValueError):
    """A data source that cannot be used at all (as opposed to single bad rows)."""


def _iter_local_jsonl(path: Path, bad: Counter) -> Iterator:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                bad["invalid_json"] += 1


def load_source(source: str, split: str, kind: str, seed: int, bad: Counter) -> Iterator:
    """The rows of a source, as they come; unreadable lines are counted into ``bad``."""
    if source.startswith("demo:"):
        return iter(demo.generate(source.removeprefix("demo:"), seed=seed))
    path = Path(source)
    if source.endswith((".jsonl", ".json", ".parquet")) and not path.is_file():
        raise DataError(f"{kind} source file not found: {source}")
    if source.endswith((".jsonl", ".json")):
        # Plain JSON lines, not Arrow: one row of the wrong type must not sink the file.
        return _iter_local_jsonl(path, bad)
    import datasets

    if source.endswith(".parquet"):
        ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    else:
        ds = datasets.load_dataset(source, split=split)
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in ds.column_names]
    if missing:
        raise DataError(missing_columns_message(kind, source, missing, ds.column_names))
    return iter(ds)


def missing_columns_message(kind: str, source: str, missing, seen) -> str:
    return (f"{kind} source {source!r} lacks required column(s) {', '.join(missing)}; "
            f"its rows have: {', '.join(sorted(seen)) or 'none'}; required: {', '.join(REQUIRED_COLUMNS[kind])}")


def rewardbench_problem(row: dict) -> str | None:
    """Why a RewardBench row cannot be judged, or None."""
    for key in ("prompt", "chosen", "rejected", "subset"):
        if not isinstance(row.get(key), str):
            return f"bad_{key}"
    if row["subset"] not in SUBSET_SECTION:
        return "unknown_subset"
    if not isinstance(row.get("id"), int) or isinstance(row.get("id"), bool):
        return "bad_id"
    return None


def row_problem(row, kind: str) -> str | None:
    """Why a row is dropped at download, or None. Preference pairs are only read here:
    the format step applies the pair filter (missing keys included) and reports its counts."""
    if not isinstance(row, dict):
        return "not_an_object"
    return rewardbench_problem(row) if kind == "rewardbench" else None


def keep(row: dict, kind: str) -> dict:
    return {k: row[k] for k in REWARDBENCH_KEEP if k in row} if kind == "rewardbench" else row


def download(source: str, split: str, kind: str, out: str, stats_out: str, seed: int,
             limit: int | None = None) -> dict:
    """Fetch a source, drop malformed rows (counted), write JSON lines and their stats.

    Nothing is written when no row is usable: the error names the missing columns
    (or the reasons rows were dropped)."""
    bad: Counter = Counter()
    seen_columns: set[str] = set()
    read = written = complete = 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in load_source(source, split, kind, seed, bad):
            if limit is not None and written >= limit:
                break
            read += 1
            if isinstance(row, dict):
                seen_columns.update(row)
                complete += all(c in row for c in REQUIRED_COLUMNS[kind])
            problem = row_problem(row, kind)
            if problem:
                bad[problem] += 1
                continue
            f.write(json.dumps(keep(row, kind), ensure_ascii=False) + "\n")
            written += 1
        # inside the block: no data file is left behind
        if complete == 0:
            missing = [c for c in REQUIRED_COLUMNS[kind] if c not in seen_columns] or REQUIRED_COLUMNS[kind]
            raise DataError(missing_columns_message(kind, source, missing, seen_columns))
        if written == 0:
            raise DataError(f"{kind} source {source!r} gave no usable rows; dropped: {dict(bad)}")
    stats = {
        "source": source,
        "split": split,
        "kind": kind,
        "rows_read": read + bad["invalid_json"],
        "rows_written": written,
        "dropped": dict(sorted(bad.items())),
    }
    write_json(stats_out, stats)
    return stats
