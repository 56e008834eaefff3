"""The transformers judging backend: computes no token twice.

Every judge prompt of a run starts with the same tokens (chat header and the
head of the judge template, up to the question), and both orders of an example
share the template *plus the question*. ``PrefixCachedEngine`` computes the
key/value cache of the run's shared prefix once, extends it with each
example's question once, and runs the two orders (the only tokens that
differ) on top of it, the way vLLM's prefix caching does on GPU:

    [ run prefix (once per run) | question (once per example) | order A suffix ]
                                                              | order B suffix ]

Examples are sorted by length and batched under a token budget. Inside a batch
the questions are right-padded (stage 1), the cache is repeated for the two
orders and the suffixes are right-padded (stage 2); padded positions are
masked out of the attention and get explicit position ids, so every real token
sees exactly the keys and positions it would see in its own unpadded prompt.
In ``logprob`` mode the logits of one position per row are computed; in
``generate`` mode greedy decoding continues from the same cache.

The engine works on token ids only; ``TransformersJudge`` wraps it with the
shared preparation of ``genrm.judge.examples`` (shortening, verdict tokens, rows).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from genrm.config import JudgeSettings
from genrm.judge.device import torch_device, torch_dtype
from genrm.judge.examples import (
    Example,
    Prepared,
    VerdictTokens,
    common_prefix_len,
    fit_context,
    generative_rows,
    prepare,
)

log = logging.getLogger(__name__)


@dataclass
class EngineStats:
    """What a run computed: real and padded token positions, attention work, time."""

    examples: int = 0
    tokens: int = 0  # real token positions run through the model
    padded: int = 0  # padding positions run through the model (waste)
    attended: int = 0  # sum over real tokens of the keys each attends to (attention work)
    logit_rows: int = 0  # positions whose logits over the vocabulary were computed
    forwards: int = 0
    batches: int = 0
    seconds: float = 0.0

    @property
    def padding_waste(self) -> float:
        total = self.tokens + self.padded
        return self.padded / total if total else 0.0

    def summary(self) -> str:
        return (f"{self.examples} examples in {self.batches} batches, {self.forwards} forward passes, "
                f"{self.tokens} tokens computed, padding waste {100 * self.padding_waste:.1f}%, "
                f"{self.seconds:.1f}s")


def _pad(seqs: list[list[int]], pad_id: int):
    """Right-padded ids and their mask as tensors."""
    import torch

    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        if s:
            ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, :len(s)] = 1
    return ids, mask


class PrefixCachedEngine:
    """Runs pairs of token sequences (the two orders of an example) with prefix reuse."""

    def __init__(self, model, shared_prefix: Sequence[int], *, mode: str, verdict: VerdictTokens | None = None,
                 max_new_tokens: int = 8, eos_ids: Sequence[int] = (), pad_id: int = 0, token_budget: int = 8192,
                 max_batch: int = 64, max_padding: float = 0.1):
        import torch

        if mode not in ("generate", "logprob"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "logprob" and verdict is None:
            raise ValueError("logprob mode needs the verdict tokens")
        self.model, self.mode, self.verdict = model, mode, verdict
        self.max_new_tokens, self.eos_ids, self.pad_id = max_new_tokens, set(eos_ids), pad_id
        self.token_budget, self.max_batch, self.max_padding = token_budget, max_batch, max_padding
        self.device = next(model.parameters()).device
        self.prefix = list(shared_prefix)
        self.stats = EngineStats()
        self.prefix_kv = None
        if not self.prefix:
            self.max_batch = 1  # no shared first key: keep stage 1 free of fully padded rows
            return
        start = time.perf_counter()
        with torch.inference_mode():
            ids = torch.tensor([self.prefix], device=self.device)
            out = model.base_model(input_ids=ids, use_cache=True)
            self.prefix_kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        n = len(self.prefix)
        self.stats.tokens += n
        self.stats.attended += n * (n + 1) // 2
        self.stats.forwards += 1
        self.stats.seconds += time.perf_counter() - start
        log.info("shared prefix of %d tokens computed once", n)

    # -- splitting prompts ----------------------------------------------------------

    def split(self, pair: tuple[Sequence[int], Sequence[int]]) -> tuple[list[int], list[int], list[int]]:
        """(question tokens, order-A suffix, order-B suffix) after the run prefix."""
        a, b = pair
        g = len(self.prefix)
        if list(a[:g]) != self.prefix or list(b[:g]) != self.prefix or g >= min(len(a), len(b)):
            raise ValueError("a prompt does not start with (and go beyond) the engine's shared prefix")
        c = max(g, min(common_prefix_len(a, b), len(a) - 1, len(b) - 1))  # each order keeps a token
        return list(a[g:c]), list(a[c:]), list(b[c:])

    # -- running ----------------------------------------------------------------------

    def run(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
            progress: Callable[[int], None] | None = None) -> list[tuple]:
        """Outputs per pair, in input order: generate mode ``(ids_a, ids_b)`` (generated token ids),
        logprob mode ``((logp_A, logp_B) with chosen at A, (logp_A, logp_B) with chosen at B)``."""
        import torch

        parts = [self.split(p) for p in pairs]
        results: list = [None] * len(parts)
        start = time.perf_counter()
        with torch.inference_mode():
            for idx in self.batches(parts):
                outs = self._run_batch([parts[i] for i in idx])
                for i, o in zip(idx, outs):
                    results[i] = o
                self.stats.batches += 1
                self.stats.examples += len(idx)
                if progress is not None:
                    progress(len(idx))
        self.stats.seconds += time.perf_counter() - start
        return results

    def batches(self, parts: list[tuple[list[int], list[int], list[int]]]) -> list[list[int]]:
        """Indices of ``parts`` in batches: sorted by suffix then question length; a batch grows while
        its padded size stays within ``token_budget`` positions, its padding within ``max_padding``
        of them, and its size within ``max_batch`` (one example always makes a batch)."""
        shape = [(len(q), max(len(a), len(b)), len(q) + len(a) + len(b)) for q, a, b in parts]
        order = sorted(range(len(parts)), key=lambda i: (shape[i][1], shape[i][0]))
        out, batch, mq, ms, real = [], [], 0, 0, 0
        for i in order:
            q, s, r = shape[i]
            nq, ns, nr = max(mq, q), max(ms, s), real + r
            padded = (len(batch) + 1) * (nq + 2 * ns)
            if batch and (len(batch) >= self.max_batch or padded > self.token_budget
                          or padded - nr > self.max_padding * padded):
                out.append(batch)
                batch, nq, ns, nr = [], q, s, r
            batch.append(i)
            mq, ms, real = nq, ns, nr
        if batch:
            out.append(batch)
        return out

    def _cache(self, batch_size: int):
        from transformers import DynamicCache

        if self.prefix_kv is None:
            return DynamicCache(config=self.model.config)
        return DynamicCache(ddp_cache_data=[(k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1))
                                            for k, v in self.prefix_kv], config=self.model.config)

    def _run_batch(self, parts: list[tuple[list[int], list[int], list[int]]]) -> list[tuple]:
        import torch

        dev, g, st = self.device, len(self.prefix), self.stats
        n = len(parts)
        cache = self._cache(n)
        # Stage 1: each question once, on top of the run prefix.
        q_ids, q_mask = _pad([p[0] for p in parts], self.pad_id)
        q_len = q_mask.sum(1)
        mq = q_ids.shape[1]
        attn = torch.cat([torch.ones((n, g), dtype=torch.long), q_mask], 1)
        if mq:
            pos = (g + torch.arange(mq)).expand(n, -1)
            self.model.base_model(input_ids=q_ids.to(dev), attention_mask=attn.to(dev), position_ids=pos.to(dev),
                                  past_key_values=cache, use_cache=True)
            st.forwards += 1
            st.tokens += int(q_len.sum())
            st.padded += n * mq - int(q_len.sum())
            st.attended += int((q_len * g + q_len * (q_len + 1) // 2).sum())
        # Stage 2: both orders on the example's cache.
        cache.batch_repeat_interleave(2)
        attn = attn.repeat_interleave(2, 0)
        q_len = q_len.repeat_interleave(2)
        s_ids, s_mask = _pad([s for p in parts for s in p[1:]], self.pad_id)
        s_len = s_mask.sum(1)
        rows, ms = s_ids.shape
        attn = torch.cat([attn, s_mask], 1)
        pos = g + q_len[:, None] + torch.arange(ms)[None, :]
        last = s_len - 1
        keep, where = torch.unique(last, return_inverse=True)
        out = self.model(input_ids=s_ids.to(dev), attention_mask=attn.to(dev), position_ids=pos.to(dev),
                         past_key_values=cache, use_cache=self.mode == "generate", logits_to_keep=keep.to(dev))
        logits = out.logits[torch.arange(rows, device=dev), where.to(dev)].float()
        st.forwards += 1
        st.tokens += int(s_len.sum())
        st.padded += rows * ms - int(s_len.sum())
        st.attended += int((s_len * (g + q_len) + s_len * (s_len + 1) // 2).sum())
        st.logit_rows += rows * len(keep)
        if self.mode == "logprob":
            logp = torch.log_softmax(logits, -1)[:, [self.verdict.a, self.verdict.b]].tolist()
            return [(tuple(logp[2 * k]), tuple(logp[2 * k + 1])) for k in range(n)]
        generated = self._decode(logits, cache, attn, g + q_len + s_len)
        return [(generated[2 * k], generated[2 * k + 1]) for k in range(n)]

    def _decode(self, logits, cache, attn, length) -> list[list[int]]:
        """Greedy decoding from the prefilled cache; stops a row at an end-of-sequence token."""
        import torch

        dev, st = self.device, self.stats
        rows = logits.shape[0]
        eos = torch.tensor(sorted(self.eos_ids) or [-1], device=dev)
        token = logits.argmax(-1)
        done = torch.zeros(rows, dtype=torch.bool, device=dev)
        steps = []
        pos = length.to(dev)
        attn = attn.to(dev)
        for step in range(self.max_new_tokens):
            steps.append(torch.where(done, -1, token))
            done = done | torch.isin(token, eos)
            if step == self.max_new_tokens - 1 or bool(done.all()):
                break
            attn = torch.cat([attn, torch.ones((rows, 1), dtype=attn.dtype, device=dev)], 1)
            live = int((~done).sum())
            st.tokens += live
            st.padded += rows - live
            st.attended += int(((pos + 1) * (~done)).sum())
            st.logit_rows += rows
            st.forwards += 1
            out = self.model(input_ids=token[:, None], attention_mask=attn, position_ids=pos[:, None],
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
            pos = pos + 1
            token = out.logits[:, -1].argmax(-1)
        table = torch.stack(steps, 1).tolist()
        return [[t for t in row if t >= 0] for row in table]


def load_causal_lm(model_dir: str, threads: int, dtype: str):
    """Tokenizer and model in eval mode, in ``dtype`` on the job's device."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype(dtype)).to(torch_device()).eval()
    return tokenizer, model


def eos_token_ids(tokenizer, model) -> list[int]:
    """Where greedy decoding stops: the generation config's end tokens and the tokenizer's."""
    ids = set()
    gen = getattr(model, "generation_config", None)
    for source in (getattr(gen, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(source)
    return sorted(ids)


def pad_token_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


class TransformersJudge:
    """Generative judging with transformers: model loaded and prompts prepared once per job."""

    def __init__(self, model_dir: str, examples: list[Example], settings: JudgeSettings, dtype: str):
        self.tokenizer, self.model = load_causal_lm(model_dir, settings.threads, dtype)
        settings = fit_context(settings, self.model.config)
        self.prepared: Prepared = prepare(self.tokenizer, examples, settings, settings.mode)
        self.engine = PrefixCachedEngine(
            self.model, self.prepared.ids[0][0][:self.prepared.shared_prefix_len()] if examples else [],
            mode=settings.mode, verdict=self.prepared.verdict, max_new_tokens=settings.max_new_tokens,
            eos_ids=eos_token_ids(self.tokenizer, self.model), pad_id=pad_token_id(self.tokenizer),
            token_budget=settings.token_budget, max_batch=settings.batch_size, max_padding=settings.max_padding)

    def __call__(self, indices: Sequence[int], progress: Callable[[int], None] | None = None) -> list[dict]:
        outputs = self.engine.run([self.prepared.ids[i] for i in indices], progress)
        if self.prepared.mode == "generate":
            texts = self.tokenizer.batch_decode([ids for pair in outputs for ids in pair], skip_special_tokens=True)
            outputs = [(texts[2 * k], texts[2 * k + 1]) for k in range(len(outputs))]
        log.info("engine so far: %s", self.engine.stats.summary())
        return generative_rows(self.prepared, indices, outputs)
