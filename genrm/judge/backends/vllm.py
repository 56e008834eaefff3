"""The vLLM judging backend (GPU): the offline engine, kept thin.

Everything that decides what the judge sees is the shared, CPU-tested code of
``genrm.judge.examples``: prompts are rendered, shortened and tokenized there and handed
to the engine as token ids; generated text goes back to the shared verdict
parser, log-probabilities to the shared logprob rows. This module only builds
the engine and the sampling parameters and unpacks the engine's outputs.

- one ``vllm.LLM`` per job: tensor parallel size from the judge's size class,
  automatic prefix caching (the judge template and each example's question
  are computed once), the context length from config, bf16 weights;
- both orders of every example of a shard go to the engine in one
  ``generate`` call, adjacent, so the second order hits the first one's cached
  template-plus-question blocks;
- ``generate`` mode: greedy (temperature 0), at most ``max_new_tokens``;
- ``logprob`` mode: the prompt ends with the verdict prefix (``[[``); one
  token is decoded and ``logprob_token_ids`` (vLLM 0.31) asks for the
  log-probabilities of exactly the two verdict tokens over the full vocabulary
  (the engine's default ``raw_logprobs``), the same numbers the transformers
  backend reads.

vllm is imported only when a job runs (it ships CUDA builds only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from genrm.config import JudgeSettings
from genrm.judge.examples import Example, Prepared, VerdictTokens, fit_context, generative_rows, prepare

log = logging.getLogger(__name__)


def engine_kwargs(model_dir: str, settings: JudgeSettings, dtype: str) -> dict:
    """Arguments of ``vllm.LLM`` for one judging job."""
    return {
        "model": model_dir,
        "tokenizer": model_dir,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "max_model_len": settings.max_model_len,
        "enable_prefix_caching": True,
        "dtype": dtype,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "seed": settings.seed,
        "trust_remote_code": False,
    }


def sampling_kwargs(settings: JudgeSettings, mode: str, verdict: VerdictTokens | None) -> dict:
    """Arguments of ``vllm.SamplingParams``: greedy in both modes."""
    if mode == "generate":
        return {"temperature": 0.0, "max_tokens": settings.max_new_tokens, "skip_special_tokens": True}
    return {"temperature": 0.0, "max_tokens": 1, "logprob_token_ids": [verdict.a, verdict.b], "detokenize": False}


def engine_prompts(prepared: Prepared, indices: Sequence[int]) -> list[dict]:
    """Token-id prompts, both orders of each example adjacent (chosen at A first)."""
    return [{"prompt_token_ids": list(ids)} for i in indices for ids in prepared.ids[i]]


def unpack(outputs, mode: str, verdict: VerdictTokens | None) -> list[tuple]:
    """Engine outputs (two per example) -> per-example (order A, order B) outputs for ``generative_rows``."""
    per_prompt = []
    for out in outputs:
        completion = out.outputs[0]
        if mode == "generate":
            per_prompt.append(completion.text)
            continue
        step = completion.logprobs[0]  # {token id: Logprob}
        missing = [t for t in (verdict.a, verdict.b) if t not in step]
        if missing:
            raise RuntimeError(f"vLLM returned no log-probability for verdict token(s) {missing}: {step}")
        per_prompt.append((float(step[verdict.a].logprob), float(step[verdict.b].logprob)))
    return [(per_prompt[2 * k], per_prompt[2 * k + 1]) for k in range(len(per_prompt) // 2)]


class VLLMJudge:
    """Generative judging with vLLM: engine built and prompts prepared once per job."""

    def __init__(self, model_dir: str, examples: list[Example], settings: JudgeSettings, dtype: str):
        import vllm
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        settings = fit_context(settings, model_dir)
        self.prepared = prepare(tokenizer, examples, settings, settings.mode)
        self.mode = settings.mode
        self.llm = vllm.LLM(**engine_kwargs(model_dir, settings, dtype))
        self.params = vllm.SamplingParams(**sampling_kwargs(settings, self.mode, self.prepared.verdict))

    def __call__(self, indices: Sequence[int], progress: Callable[[int], None] | None = None) -> list[dict]:
        outputs = self.llm.generate(engine_prompts(self.prepared, indices), self.params, use_tqdm=True)
        results = unpack(outputs, self.mode, self.prepared.verdict)
        if progress is not None:
            progress(len(indices))
        return generative_rows(self.prepared, indices, results)
