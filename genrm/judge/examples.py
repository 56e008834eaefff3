"""What a judge sees: examples, the shortening policy, verdict tokens, prompts as token ids.

A generative judge sees every example twice (chosen as A, then chosen as B).
Two modes, on both backends (``genrm.judge.backends.transformers``,
``genrm.judge.backends.vllm``):

- ``generate``: greedy decoding up to ``max_new_tokens``; the verdict is the
  last ``[[A]]``/``[[B]]`` in the text (``genrm.protocol.parse_verdict``).
- ``logprob``: the common token prefix of ``[[A]]`` and ``[[B]]`` (for most
  tokenizers ``[[``, found from the tokenizer by ``verdict_tokens``) is
  appended after the generation prompt; one forward pass gives the next-token
  log-probabilities of the two verdict tokens. The verdict is the larger; the
  score P(A)/(P(A)+P(B)) is kept per order.

Classifiers (Bradley-Terry reward models) score both answers; the higher wins.

Everything that decides *what* a judge sees lives here and is shared by the
backends (``genrm.judge.backends``): prompt rendering and tokenization, the
shortening policy for prompts that do not fit the context, and the verdict
tokens. The prediction rows are declared in ``genrm.protocol``; the job with
its shards is ``genrm.judge.job``. See docs/judging.md.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from genrm.config import JudgeSettings
from genrm.io import read_jsonl
from genrm.protocol import VERDICT_A, VERDICT_B, generate_row, judge_messages, logprob_row

log = logging.getLogger(__name__)

MODES = ("generate", "logprob")
OMITTED = "\n[... {n} tokens omitted ...]\n"
FIELDS = ("question", "chosen", "rejected")


# --- examples and the shortening policy -----------------------------------------


@dataclass
class Example:
    """One RewardBench example after shortening: the texts both orders share."""

    id: int
    subset: str
    question: str
    chosen: str
    rejected: str
    shortened: bool = False

    def messages(self, chosen_at_a: bool) -> list[dict]:
        a, b = (self.chosen, self.rejected) if chosen_at_a else (self.rejected, self.chosen)
        return judge_messages(self.question, a, b)


def load_examples(data: str | os.PathLike) -> list[Example]:
    return [Example(r["id"], r["subset"], r["prompt"], r["chosen"], r["rejected"]) for r in read_jsonl(data)]


def cut_middle_ids(tokenizer, ids: Sequence[int], keep: int) -> str:
    """The text of ``ids`` with all but the first ``keep - keep // 2`` and the last
    ``keep // 2`` tokens replaced by a visible marker that says how many were omitted."""
    if len(ids) <= keep:
        return tokenizer.decode(ids)
    head, tail = keep - keep // 2, keep // 2
    return (tokenizer.decode(ids[:head]) + OMITTED.format(n=len(ids) - keep)
            + (tokenizer.decode(ids[len(ids) - tail:]) if tail else ""))


def prompt_length(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> int:
    """Tokens of a conversation rendered by the chat template (tokenized as the backends do)."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def judge_prompt_length(tokenizer, ex: Example) -> int:
    """The longer of an example's two judge prompts (the orders can differ by a token or two)."""
    return max(prompt_length(tokenizer, ex.messages(order)) for order in (True, False))


def shorten_example(tokenizer, ex: Example, budget: int,
                    length: Callable[[object, Example], int] = judge_prompt_length) -> Example:
    """Fit an example into ``budget`` tokens, deterministically; return it unchanged if it fits.

    Policy (water-filling): every text of the example (question, chosen,
    rejected) longer than a cap ``c`` tokens keeps its first ``c - c // 2`` and
    last ``c // 2`` tokens, with a visible marker ``[... n tokens omitted ...]``
    between them; ``c`` is the largest cap under which the prompt fits. Short
    texts are never touched, the longest lose the most, both orders use the
    same texts, so the comparison stays fair. The result is flagged
    ``shortened``; the judge counts it.
    """
    if length(tokenizer, ex) <= budget:
        return ex
    ids = {f: tokenizer.encode(getattr(ex, f), add_special_tokens=False) for f in FIELDS}

    def capped(cap: int) -> Example:
        texts = {f: (cut_middle_ids(tokenizer, ids[f], cap) if len(ids[f]) > cap else getattr(ex, f)) for f in FIELDS}
        return replace(ex, **texts, shortened=True)

    lo, hi = 0, max(len(v) for v in ids.values()) - 1  # the largest fitting cap lies in [lo, hi]
    if length(tokenizer, capped(0)) > budget:
        raise ValueError(f"example {ex.id} cannot be shortened into {budget} tokens: the template alone is too long")
    while lo < hi:  # length is non-decreasing in the cap (up to re-merges at the cut, checked below)
        mid = (lo + hi + 1) // 2
        if length(tokenizer, capped(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    while lo > 0 and length(tokenizer, capped(lo)) > budget:  # pragma: no cover - BPE re-merge at a cut
        lo -= 1
    return capped(lo)


# --- verdict tokens -------------------------------------------------------------------


@dataclass(frozen=True)
class VerdictTokens:
    """What logprob mode appends after the generation prompt, and the two tokens it compares."""

    prefix: tuple[int, ...]  # the common token prefix of "[[A]]" and "[[B]]" in context
    a: int  # the next token of "[[A]]" after the prefix
    b: int  # the next token of "[[B]]" after the prefix


def common_prefix_len(x: Sequence[int], y: Sequence[int]) -> int:
    n = min(len(x), len(y))
    i = 0
    while i < n and x[i] == y[i]:
        i += 1
    return i


def verdict_tokens(tokenizer) -> VerdictTokens:
    """The verdict tokens of a tokenizer, found in context (after the generation prompt).

    ``[[A]]`` and ``[[B]]`` are tokenized after a rendered generation prompt;
    their common prefix is what logprob mode appends, the first tokens where
    they differ are the ones it compares. Fails loudly if the tokenizer merges
    the generation prompt with the verdict (logprob mode could not be exact).
    """
    probe = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True,
                                          tokenize=False)
    base = tokenizer.encode(probe, add_special_tokens=False)
    tails = []
    for verdict in (VERDICT_A, VERDICT_B):
        ids = tokenizer.encode(probe + verdict, add_special_tokens=False)
        if ids[:len(base)] != base:
            raise ValueError(f"the tokenizer merges the end of the generation prompt with {verdict!r}; "
                             "logprob mode cannot read the verdict from one position: use mode generate")
        tails.append(ids[len(base):])
    n = common_prefix_len(*tails)
    if n >= min(len(t) for t in tails):  # pragma: no cover - "[[A]]" and "[[B]]" always differ
        raise ValueError("the tokenizer does not tell [[A]] from [[B]]")
    return VerdictTokens(tuple(tails[0][:n]), tails[0][n], tails[1][n])


# --- prompts as token ids ---------------------------------------------------------------


@dataclass
class Prepared:
    """Every example of a run as token ids, both orders, ready for a backend."""

    examples: list[Example]
    ids: list[tuple[list[int], list[int]]]  # (chosen at A, chosen at B); logprob mode: verdict prefix appended
    mode: str
    verdict: VerdictTokens | None
    budget: int

    @property
    def shortened(self) -> int:
        return sum(ex.shortened for ex in self.examples)

    def shared_prefix_len(self) -> int:
        """Tokens that every prompt of the run starts with (the chat header and the template head),
        leaving at least one token of every prompt after it."""
        if not self.ids:
            return 0
        first = self.ids[0][0]
        n = len(first)
        for pair in self.ids:
            for seq in pair:
                n = min(n, common_prefix_len(first[:n], seq), len(seq) - 1)
        return max(n, 0)


def prompt_budget(settings: JudgeSettings, mode: str, verdict: VerdictTokens | None) -> int:
    """How many tokens a judge prompt may have so that the answer still fits the context."""
    context = settings.max_model_len
    reserve = settings.max_new_tokens if mode == "generate" else len(verdict.prefix) + 1
    if reserve >= context:
        raise ValueError(f"max_new_tokens ({settings.max_new_tokens}) leaves no room in max_model_len ({context})")
    return context - reserve


def fit_context(settings: JudgeSettings, model_config) -> JudgeSettings:
    """``settings`` with ``max_model_len`` lowered to the model's position limit if that is smaller.

    ``model_config`` is a transformers config or a model directory."""
    if isinstance(model_config, (str, os.PathLike)):
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(model_config)
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit and limit < settings.max_model_len:
        log.warning("max_model_len %d exceeds the model's %d positions: using %d", settings.max_model_len, limit,
                    limit)
        return dataclasses.replace(settings, max_model_len=limit)
    return settings


def encode_judge_prompts(tokenizer, examples: Sequence[Example]) -> list[tuple[list[int], list[int]]]:
    """Both orders of every example through the chat template, tokenized in one batch."""
    if not examples:
        return []
    conversations = [ex.messages(order) for ex in examples for order in (True, False)]
    texts = tokenizer.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [(ids[2 * k], ids[2 * k + 1]) for k in range(len(examples))]


def prepare(tokenizer, examples: Sequence[Example], settings: JudgeSettings, mode: str) -> Prepared:
    """Shorten what does not fit, tokenize both orders, append the verdict prefix in logprob mode."""
    if mode not in MODES:
        raise ValueError(f"unknown judge mode {mode!r}; allowed: {', '.join(MODES)}")
    verdict = verdict_tokens(tokenizer) if mode == "logprob" else None
    budget = prompt_budget(settings, mode, verdict)
    examples = list(examples)
    ids = encode_judge_prompts(tokenizer, examples)
    for k, (a, b) in enumerate(ids):
        if max(len(a), len(b)) > budget:
            examples[k] = shorten_example(tokenizer, examples[k], budget)
            ids[k] = encode_judge_prompts(tokenizer, [examples[k]])[0]
            if max(len(x) for x in ids[k]) > budget:  # pragma: no cover - shorten_example guarantees it
                raise RuntimeError(f"example {examples[k].id} still does not fit {budget} tokens")
    if verdict is not None:
        suffix = list(verdict.prefix)
        ids = [(a + suffix, b + suffix) for a, b in ids]
    prepared = Prepared(examples, ids, mode, verdict, budget)
    log.info("prepared %d examples (%s mode, prompt budget %d tokens): %d shortened", len(examples), mode, budget,
             prepared.shortened)
    return prepared


def generative_rows(prepared: Prepared, indices: Sequence[int], outputs: Sequence[tuple]) -> list[dict]:
    """Prediction rows (``genrm.protocol``) from a backend's per-example outputs: the two
    texts in generate mode, the two (log P(A), log P(B)) pairs in logprob mode."""
    make = generate_row if prepared.mode == "generate" else logprob_row
    return [make(prepared.examples[i].id, prepared.examples[i].subset, out, prepared.examples[i].shortened)
            for i, out in zip(indices, outputs)]


def classifier_messages(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def token_batches(costs: Sequence[int], token_budget: int, max_items: int) -> list[list[int]]:
    """Consecutive batches of item indices whose padded cost (items x largest cost) stays
    within ``token_budget`` (a single item over budget makes its own batch)."""
    batches, current, largest = [], [], 0
    for i, cost in enumerate(costs):
        new_largest = max(largest, cost)
        if current and (len(current) >= max_items or new_largest * (len(current) + 1) > token_budget):
            batches.append(current)
            current, new_largest = [], cost
        current.append(i)
        largest = new_largest
    if current:
        batches.append(current)
    return batches
