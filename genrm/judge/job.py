"""One judging job: every example of RewardBench through one judge, in resumable shards.

A generative judge sees every example twice (chosen as A, then chosen as B), in
one of two modes: ``generate`` (greedy decoding; the verdict is the last
``[[A]]``/``[[B]]`` of the text) or ``logprob`` (one forward pass; the verdict is
the likelier of the two verdict tokens, P(A)/(P(A)+P(B)) is kept). Classifiers
(Bradley-Terry reward models) score both answers; the higher wins.

Work is done in shards (``genrm.judge.shards``) kept beside the output; a
restarted job reuses every finished shard whose fingerprint matches: the model's
files, the data, the prompt template, the backend and its compute dtype, and
every setting that changes a prediction.

Beside its predictions a job writes how they were produced (``judging.json``):
the mode, backend and dtype, the context actually used (``max_model_len`` after
``fit_context`` lowered it to the model's own limit), the generation cap, and how
many examples were shortened to fit. A job may judge a seeded sample of the data
instead of all of it (the greedy verdicts that a logprob judge is compared with).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import sys
import time
from pathlib import Path

from genrm import paths
from genrm.config import JudgeSettings
from genrm.io import write_json, write_jsonl
from genrm.judge.backends import make_runner
from genrm.judge.device import compute_dtype
from genrm.judge.examples import fit_context, load_examples
from genrm.judge.shards import ShardStore
from genrm.protocol import PROMPT_TEMPLATE

log = logging.getLogger(__name__)

ROW_FORMAT = 3  # bump when the prediction rows change shape


def judge(model: str, data: str, out: str, settings: JudgeSettings, judging: str | None = None,
          sample: int = 0) -> None:
    """Judge every example of ``data`` with ``model`` (or, with ``sample`` > 0, a sample of that many
    drawn with ``settings.seed``); write ``out`` (predictions.jsonl) when complete, and ``judging``
    (how the predictions were produced) beside it."""
    examples = load_examples(data)
    available = len(examples)
    if sample:
        examples = [examples[i] for i in sample_indices(available, sample, settings.seed)]
        log.info("a sample of %d of the %d examples (seed %d)", len(examples), available, settings.seed)
    configured = settings
    settings = fit_context(settings, model)  # the context the backends will use
    dtype = compute_dtype(settings.dtype)
    store = ShardStore(paths.shards_dir(out), fingerprint(model, data, settings, dtype, sample), len(examples),
                       settings.shard_size)
    pending = store.pending()
    log.info("%d examples in %d shards: %d done, %d to judge", len(examples), store.n_shards,
             store.n_shards - len(pending), len(pending))
    if pending:
        runner = make_runner(model, examples, settings, dtype)
        with Progress(sum(len(store.shard_range(k)) for k in pending), f"judging ({settings.mode})") as bar:
            for k in pending:
                store.write(k, runner(list(store.shard_range(k)), bar.update))
                log.info("shard %d/%d written", k + 1, store.n_shards)
    rows = list(store.rows())
    if judging is not None:
        record = judging_record(settings, configured, dtype, rows,
                                {"size": len(rows), "of": available, "seed": settings.seed} if sample else None)
        write_json(judging, record)
        log.info("judging: %s", record)
    write_jsonl(out, rows)
    store.remove()
    log.info("wrote %s", out)


def sample_indices(n: int, k: int, seed: int) -> list[int]:
    """``k`` of the indices ``0..n-1`` (all of them if ``k >= n``), drawn with ``seed``, in data order."""
    return sorted(random.Random(seed).sample(range(n), min(k, n)))


def judging_record(settings: JudgeSettings, configured: JudgeSettings, dtype: str, rows: list[dict],
                   sample: dict | None) -> dict:
    """How a job's predictions were produced (``judging.json``): what the tables and the
    diagnostics report for each judge beside its scores."""
    return {
        "mode": settings.mode,
        "backend": settings.backend,
        "dtype": dtype,
        "max_model_len": settings.max_model_len,  # used: lowered to the model's own limit if smaller
        "configured_max_model_len": configured.max_model_len,
        "max_new_tokens": settings.max_new_tokens if settings.mode == "generate" else None,
        "tensor_parallel_size": settings.tensor_parallel_size if settings.backend == "vllm" else None,
        "examples": len(rows),
        "shortened": sum(bool(r["shortened"]) for r in rows),
        "sample": sample,
    }


def fingerprint(model: str, data: str, settings: JudgeSettings, dtype: str, sample: int = 0) -> dict:
    """Everything that changes a prediction: shards made under another fingerprint are not reused."""
    found = {
        "format": ROW_FORMAT,
        "model": model_fingerprint(model),
        "data": file_digest(data),
        "prompt_template": hashlib.sha256(PROMPT_TEMPLATE.encode()).hexdigest(),
        "dtype": dtype,
        "settings": settings.fingerprint(),
    }
    if sample:
        found["sample"] = {"size": sample, "seed": settings.seed}
    return found


def model_fingerprint(model_dir: str | os.PathLike) -> str:
    """Names, sizes and modification times of a model directory's files (cheap, changes on retraining)."""
    root = Path(model_dir).resolve()
    h = hashlib.sha256(str(root).encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Progress:
    """A tqdm bar on a terminal; on a log file, one line per ~30 seconds."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.done = total, desc, 0
        self.start = self.last = time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="ex")

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= 30 or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("inf")
            log.info("%s: %d/%d examples, %.2f ex/s, eta %.0fs", self.desc, self.done, self.total, rate, eta)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
