"""The vLLM backend without a GPU: a stand-in ``vllm`` module that runs the tiny model
with plain transformers, exactly the way the engine is asked to (greedy, at most
``max_tokens``, log-probabilities of ``logprob_token_ids``). The backend's rows must
equal the transformers backend's, its engine and sampling arguments must be those of
the pinned vllm, and both orders of every example go to the engine in one call.
The real engine is checked on a GPU by tests/test_vllm_gpu.py."""

from __future__ import annotations

import random
import sys
import types
from pathlib import Path

import pytest

from genrm import config as gconfig
from genrm import judge as J
from genrm.io import read_jsonl

REPO = Path(__file__).resolve().parent.parent

# Fields of vllm 0.31.0's EngineArgs / SamplingParams that the backend uses (checked
# against the real classes when vllm is installed).
ENGINE_ARGS = {"model", "tokenizer", "tensor_parallel_size", "max_model_len", "enable_prefix_caching", "dtype",
               "gpu_memory_utilization", "seed", "trust_remote_code"}
SAMPLING_ARGS = {"temperature", "max_tokens", "skip_special_tokens", "logprob_token_ids", "detokenize"}


def fake_vllm():
    """A module with ``LLM`` and ``SamplingParams`` that behave like vllm's on a CPU."""
    import torch

    from genrm.prefix_cache import load_causal_lm

    module = types.ModuleType("vllm")

    class SamplingParams:
        def __init__(self, **kwargs):
            unknown = set(kwargs) - SAMPLING_ARGS
            assert not unknown, unknown
            self.temperature, self.max_tokens, self.logprob_token_ids = 1.0, 16, None
            self.skip_special_tokens, self.detokenize = True, True
            self.__dict__.update(kwargs)

    class LLM:
        instances: list = []

        def __init__(self, **kwargs):
            unknown = set(kwargs) - ENGINE_ARGS
            assert not unknown, unknown
            self.kwargs, self.calls = kwargs, []
            self.tokenizer, self.model = load_causal_lm(kwargs["model"])
            LLM.instances.append(self)

        def generate(self, prompts, params, use_tqdm=True):
            assert params.temperature == 0.0
            self.calls.append(prompts)
            outs = []
            with torch.inference_mode():
                for prompt in prompts:
                    ids = prompt["prompt_token_ids"]
                    assert len(ids) + params.max_tokens <= self.kwargs["max_model_len"]
                    x = torch.tensor([ids])
                    if params.logprob_token_ids:
                        logp = torch.log_softmax(self.model(x).logits[0, -1].float(), -1)
                        step = {t: types.SimpleNamespace(logprob=logp[t].item()) for t in params.logprob_token_ids}
                        completion = types.SimpleNamespace(text="", logprobs=[step])
                    else:
                        new = self.model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                                  max_new_tokens=params.max_tokens,
                                                  pad_token_id=self.tokenizer.pad_token_id)[0, len(ids):]
                        text = self.tokenizer.decode(new, skip_special_tokens=params.skip_special_tokens)
                        completion = types.SimpleNamespace(text=text, logprobs=None)
                    outs.append(types.SimpleNamespace(outputs=[completion]))
            return outs

    module.LLM, module.SamplingParams = LLM, SamplingParams
    return module


@pytest.fixture
def vllm_stub(monkeypatch):
    module = fake_vllm()
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


@pytest.fixture(scope="module")
def examples(rewardbench_file):
    rows = random.Random(3).sample(read_jsonl(rewardbench_file), 8)
    return [J.Example(r["id"], r["subset"], r["prompt"], r["chosen"], r["rejected"]) for r in rows]


@pytest.mark.parametrize("mode", ["logprob", "generate"])
def test_vllm_backend_rows_equal_the_transformers_backend(vllm_stub, tiny_model_dir, examples, mode):
    from genrm.prefix_cache import TransformersJudge
    from genrm.vllm_backend import VLLMJudge

    settings = {**J.DEFAULTS, "mode": mode, "max_model_len": 448, "max_new_tokens": 5, "tensor_parallel_size": 2,
                "seed": 42}
    vj = VLLMJudge(str(tiny_model_dir), examples, settings, mode)
    llm = vllm_stub.LLM.instances[-1]
    assert llm.kwargs["tensor_parallel_size"] == 2 and llm.kwargs["enable_prefix_caching"] is True
    assert llm.kwargs["max_model_len"] == 448 and llm.kwargs["dtype"] == "bfloat16"
    first, second = [0, 1, 2, 3, 4], [5, 6, 7]
    rows = vj(first) + vj(second)
    # one engine call per shard, both orders of each example adjacent (prefix cache hits)
    assert len(llm.calls) == 2 and [len(c) for c in llm.calls] == [10, 6]
    prepared = vj.prepared
    assert [p["prompt_token_ids"] for p in llm.calls[0]] == [ids for i in first for ids in prepared.ids[i]]
    if mode == "logprob":
        assert all(p["prompt_token_ids"][-2:] == list(prepared.verdict.prefix) for p in llm.calls[0])
    reference = TransformersJudge(str(tiny_model_dir), examples, settings, mode)(list(range(8)))
    assert [r["id"] for r in rows] == [r["id"] for r in reference]
    for got, ref in zip(rows, reference):
        assert got["verdict_chosen_a"] == ref["verdict_chosen_a"] and got["verdict_chosen_b"] == ref["verdict_chosen_b"]
        assert got["correct"] == ref["correct"] and got["shortened"] == ref["shortened"]
        if mode == "logprob":
            assert got["p_a_chosen_a"] == pytest.approx(ref["p_a_chosen_a"], abs=1e-5)
            assert got["p_a_chosen_b"] == pytest.approx(ref["p_a_chosen_b"], abs=1e-5)
        else:
            assert got["output_chosen_a"] == ref["output_chosen_a"]
            assert got["output_chosen_b"] == ref["output_chosen_b"]
    assert any(r["shortened"] for r in rows)


def test_judge_job_runs_on_the_vllm_backend(vllm_stub, tiny_model_dir, rewardbench_file, tmp_path):
    from genrm.io import write_jsonl

    data = tmp_path / "rb.jsonl"
    write_jsonl(data, read_jsonl(rewardbench_file)[:6])
    out = tmp_path / "predictions.jsonl"
    J.judge("generative", str(tiny_model_dir), str(data), str(out),
            {"backend": "vllm", "mode": "logprob", "max_model_len": 512, "shard_size": 4})
    assert len(read_jsonl(out)) == 6
    assert [len(c) for c in vllm_stub.LLM.instances[-1].calls] == [8, 4]


def test_sampling_arguments():
    from genrm.vllm_backend import engine_kwargs, sampling_kwargs

    settings = {**J.DEFAULTS, "max_new_tokens": 1024}
    assert sampling_kwargs(settings, "generate", None) == {"temperature": 0.0, "max_tokens": 1024,
                                                           "skip_special_tokens": True}
    verdict = J.VerdictTokens((10, 10), 30, 31)
    lp = sampling_kwargs(settings, "logprob", verdict)
    assert lp["temperature"] == 0.0 and lp["max_tokens"] == 1 and lp["logprob_token_ids"] == [30, 31]
    assert set(engine_kwargs("m", settings, "logprob")) <= ENGINE_ARGS


def test_arguments_exist_in_the_installed_vllm():
    vllm = pytest.importorskip("vllm")
    import dataclasses
    import inspect

    from vllm.engine.arg_utils import EngineArgs

    assert ENGINE_ARGS <= {f.name for f in dataclasses.fields(EngineArgs)}
    assert SAMPLING_ARGS <= set(inspect.signature(vllm.SamplingParams.from_optional).parameters)


# --- configuration ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def production():
    return gconfig.load(REPO / "workflow_config.yaml")


def test_modes_per_judge_kind_and_parallelism_per_size(production):
    judges = {j.name: j for j in gconfig.judges(production)}
    settings = {name: gconfig.judge_settings(production, j) for name, j in judges.items()}
    assert settings["qwen2.5-72b"]["mode"] == "generate"  # base model: LLM-as-a-Judge writes first
    assert settings["qwen2.5-72b__verify"]["mode"] == "logprob"  # our GenRM
    assert settings["skywork-critic-llama3.1-8b"]["mode"] == "generate"
    assert settings["skywork-reward-llama3.1-8b"]["mode"] == "classifier"
    assert settings["qwen2.5-72b"]["tensor_parallel_size"] == 4
    assert settings["qwen2.5-32b__verify"]["tensor_parallel_size"] == 2
    assert settings["llama3.1-8b"]["tensor_parallel_size"] == 1
    assert all(s["backend"] == "vllm" and s["max_model_len"] == 8192 for s in settings.values())
    resources = {name: gconfig.judge_resources(production, j) for name, j in judges.items()}
    assert resources["qwen2.5-72b__verify"]["gpu"] == 4 and resources["skywork-reward-llama3.1-8b"]["gpu"] == 1


def test_tensor_parallel_keys_override_the_built_in_ones(production):
    import copy

    config = copy.deepcopy(production)
    config["judge"]["tensor_parallel"] = {"72b": 8}
    judge = next(j for j in gconfig.judges(config) if j.name == "qwen2.5-72b")
    assert gconfig.judge_settings(config, judge)["tensor_parallel_size"] == 8
    judge = next(j for j in gconfig.judges(config) if j.name == "qwen2.5-32b")
    assert gconfig.judge_settings(config, judge)["tensor_parallel_size"] == 2


def test_demo_judges_on_cpu():
    demo = gconfig.load(REPO / "configs" / "demo.yaml")
    for j in gconfig.judges(demo):
        assert gconfig.judge_resources(demo, j)["gpu"] is None
        assert gconfig.judge_settings(demo, j)["backend"] == "transformers"
