"""Resumable jobs: results written in shards as they complete.

A job over ``n`` items is cut into shards of ``shard_size`` consecutive items.
Each finished shard is written atomically (``genrm.io.write_jsonl``: a
temporary file renamed when complete), so a shard file on disk is always
whole. A ``manifest.json`` records what the shards were computed from (model,
data, settings): a restarted job reuses the shards only if it matches, and
starts over otherwise. The caller assembles the final file from the shards
(again atomically) and removes the shard folder.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

from genrm.io import iter_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)


class ShardStore:
    def __init__(self, directory: str | Path, fingerprint: dict, n_items: int, shard_size: int):
        if shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        self.dir = Path(directory)
        self.fingerprint = {**fingerprint, "n_items": n_items, "shard_size": shard_size}
        self.n_items, self.shard_size = n_items, shard_size
        self.n_shards = max(1, -(-n_items // shard_size)) if n_items else 0
        self._open()

    def _open(self) -> None:
        manifest = self.dir / "manifest.json"
        if manifest.is_file():
            try:
                same = json.loads(manifest.read_text(encoding="utf-8")) == self.fingerprint
            except json.JSONDecodeError:
                same = False
            if not same:
                log.warning("%s holds shards of another model, data or settings: starting over", self.dir)
                shutil.rmtree(self.dir)
        elif self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".*.partial"):  # left by a job killed while writing
            stale.unlink()
        if not manifest.is_file():
            write_json(manifest, self.fingerprint)

    def path(self, k: int) -> Path:
        return self.dir / f"shard-{k:05d}.jsonl"

    def shard_range(self, k: int) -> range:
        return range(k * self.shard_size, min((k + 1) * self.shard_size, self.n_items))

    def done(self) -> list[int]:
        return [k for k in range(self.n_shards) if self.path(k).is_file()]

    def pending(self) -> list[int]:
        return [k for k in range(self.n_shards) if not self.path(k).is_file()]

    def write(self, k: int, rows: list[dict]) -> None:
        expected = len(self.shard_range(k))
        if len(rows) != expected:
            raise ValueError(f"shard {k} has {len(rows)} rows, expected {expected}")
        write_jsonl(self.path(k), rows)

    def rows(self) -> Iterator[dict]:
        """Every row in item order; fails if a shard is missing."""
        missing = self.pending()
        if missing:
            raise RuntimeError(f"shards not finished: {missing}")
        for k in range(self.n_shards):
            yield from iter_jsonl(self.path(k))

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
