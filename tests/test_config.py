"""One configuration: the schema's defaults applied once, typed settings without fallbacks,
and one validate() that Snakemake and `python -m genrm check-config` share."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import snakemake
from genrm import config as gconfig
from genrm import workflow
from genrm.config.schema import load_schema

REPO = Path(__file__).resolve().parent.parent


def raw(name: str = "workflow_config.yaml") -> dict:
    return yaml.safe_load((REPO / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def production():
    return gconfig.load(REPO / "workflow_config.yaml")


def test_modes_per_judge_kind_and_parallelism_per_size(production):
    judges = {j.name: j for j in gconfig.judges(production)}
    settings = {name: gconfig.judge_settings(production, j) for name, j in judges.items()}
    assert settings["qwen2.5-72b"].mode == "generate"  # base model: LLM-as-a-Judge writes first
    assert settings["qwen2.5-72b__verify"].mode == "logprob"  # our GenRM
    assert settings["skywork-critic-llama3.1-8b"].mode == "generate"
    assert settings["skywork-reward-llama3.1-8b"].mode == "classifier"
    assert settings["qwen2.5-72b"].tensor_parallel_size == 4
    assert settings["qwen2.5-32b__verify"].tensor_parallel_size == 2
    assert settings["llama3.1-8b"].tensor_parallel_size == 1
    assert all(s.backend == "vllm" and s.max_model_len == 32768 for s in settings.values())  # as published
    resources = {name: workflow.judge_resources(production, j) for name, j in judges.items()}
    assert resources["qwen2.5-72b__verify"]["gpu"] == 4 and resources["skywork-reward-llama3.1-8b"]["gpu"] == 1


def test_greedy_sample_for_judges_in_logprob_mode_only(production):
    judges = {j.name: j for j in gconfig.judges(production)}
    samples = {name: gconfig.agreement_sample(production, j) for name, j in judges.items()}
    assert {name for name, n in samples.items() if n} == {f"{m}__{meth}" for m, meth in gconfig.genrms(production)
                                                          if meth != "bt"}  # the GenRMs; a classifier has no verdict
    assert set(samples.values()) == {0, 200}
    genrm = judges["qwen2.5-7b__verify"]
    inputs = workflow.score_inputs(production, genrm)
    assert inputs["greedy"] == "results/eval/qwen2.5-7b__verify/greedy_sample.jsonl"
    assert "--greedy results/eval/qwen2.5-7b__verify/greedy_sample.jsonl" in workflow.score_command(inputs, "s.json")
    command = workflow.greedy_sample_command(production, genrm, "m", "d", "o", "j")
    assert '"mode": "generate"' in command and "--sample 200" in command
    assert set(workflow.score_inputs(production, judges["qwen2.5-7b"])) == {"predictions", "judging"}
    off = copy.deepcopy(production)
    off["judge"]["agreement_sample"] = 0
    assert "greedy" not in workflow.score_inputs(off, genrm)


def test_the_bradley_terry_model_is_a_judge_of_its_own(production):
    """Method bt trains a Bradley-Terry model: a classifier judge, scored in mode bt, labelled with its
    base model and the bt method's label (apart from the external classifier), trained here."""
    judges = {j.name: j for j in gconfig.judges(production)}
    bt = judges["llama3.1-8b__bt"]
    assert (bt.kind, bt.type, bt.model, bt.genrm_method, bt.ours) == ("bt", "classifier", "llama3.1-8b", "bt", True)
    assert (bt.label, bt.method) == ("LLaMA3.1-8B-Instruct", "Bradley-Terry (ours)")
    external = judges["skywork-reward-llama3.1-8b"]
    assert (external.type, external.method, external.ours) == ("classifier", "Bradley-Terry", False)
    assert gconfig.judge_settings(production, bt).mode == "bt"
    assert gconfig.judge_settings(production, external).mode == "classifier"
    assert workflow.judge_model_dir(bt) == "results/models/llama3.1-8b/bt"
    assert workflow.judge_resources(production, bt)["gpu"] == 1
    # by default only LLaMA has one; the Qwen sizes opt in
    assert [j.name for j in judges.values() if j.kind == "bt"] == ["llama3.1-8b__bt"]
    assert [name for name in judges if name.startswith("llama3.1-8b")] == [
        "llama3.1-8b", "llama3.1-8b__verify", "llama3.1-8b__verify_correct", "llama3.1-8b__bt"]


def test_each_qwen_size_opts_in_with_one_line(tmp_path, production):
    """The production config says how on each Qwen line: taking the list of its comment trains the
    Bradley-Terry model of that size, and nothing else changes."""
    lines = (REPO / "workflow_config.yaml").read_text(encoding="utf-8").splitlines()
    opt_in = [i for i, line in enumerate(lines) if line.startswith("  qwen2.5-") and line.endswith("# [verify, bt]")]
    assert len(opt_in) == 4
    for i in opt_in:
        model = lines[i].split(":")[0].strip()
        path = tmp_path / f"{model}.yaml"
        path.write_text("\n".join(lines[:i] + [f"  {model}: [verify, bt]"] + lines[i + 1:]), encoding="utf-8")
        cfg = gconfig.load(path)
        assert set(gconfig.genrms(cfg)) - set(gconfig.genrms(production)) == {(model, "bt")}
        assert set(gconfig.genrms(production)) <= set(gconfig.genrms(cfg))
        assert [j.name for j in gconfig.judges(cfg) if j.kind == "bt"] == ["llama3.1-8b__bt", f"{model}__bt"]


def test_bt_settings_change_the_recipe_and_keep_the_machines(production):
    demo = gconfig.load(REPO / "configs" / "demo.yaml")
    sft, bt = gconfig.trl_settings(demo, "verify"), gconfig.trl_settings(demo, "bt")
    assert sft == gconfig.trl_settings(demo)
    changed = {f for f in sft.__dataclass_fields__ if getattr(sft, f) != getattr(bt, f)}
    assert changed == set(demo["train"]["bt"]["trl"]) - {k for k, v in demo["train"]["bt"]["trl"].items()
                                                         if getattr(sft, k) == v}
    assert bt.epochs == demo["train"]["bt"]["trl"]["epochs"] and bt.threads == sft.threads
    s8, b8 = gconfig.openrlhf_settings(production, "llama3.1-8b"), \
        gconfig.openrlhf_settings(production, "llama3.1-8b", "bt")
    assert (b8.nodes, b8.gpus_per_node, b8.mem_mb, b8.runtime, b8.zero_stage) == \
        (s8.nodes, s8.gpus_per_node, s8.mem_mb, s8.runtime, s8.zero_stage)
    assert (b8.epochs, b8.global_batch_size, b8.micro_batch_size, b8.learning_rate) == (1, 256, 1, 9e-6)
    assert gconfig.openrlhf_settings(production, "llama3.1-8b", "verify") == s8


@pytest.mark.parametrize("change, message", [
    (lambda c: c["methods"]["bt"].update(correct_ratio=0.5), "methods.bt.correct_ratio: a Bradley-Terry model"),
    (lambda c: c["methods"].update(bt_large={"label": "x"}),
     "methods: 'bt_large' is not allowed; allowed values: verify, verify_correct, bt"),
    (lambda c: c.setdefault("train", {}).update(bt={"openrlhf": {"models": {"gpt-9": {"nodes": 1}}}}),
     "train.bt.openrlhf.models.gpt-9: unknown model"),
    (lambda c: c.setdefault("train", {}).update(bt={"trl": {"epoch": 1}}), "train.bt.trl: unknown key(s) epoch"),
    (lambda c: c.setdefault("train", {}).update(bt={"backend": "deepspeed"}),
     "train.bt.backend: 'deepspeed' is not allowed; allowed values: openrlhf, trl"),
    (lambda c: c.setdefault("train", {}).update(bt={"openrlhf": {"common": {"device": "gpu"}}}),
     "train.bt.openrlhf.common.device: 'gpu' is not allowed; allowed values: cuda, cpu"),
])
def test_bad_bt_settings_are_refused(change, message):
    config = raw()
    change(config)
    with pytest.raises(gconfig.ConfigError, match=re.escape(message)):
        gconfig.validate(config)


def test_a_key_given_in_a_config_overrides_only_that_key():
    config = raw()
    config.setdefault("judge", {})["tensor_parallel"] = {"72b": 8}
    config.setdefault("train", {}).setdefault("openrlhf", {})["presets"] = {"7b": {"micro_batch_size": 2}}
    gconfig.validate(config)
    judges = {j.name: j for j in gconfig.judges(config)}
    assert gconfig.judge_settings(config, judges["qwen2.5-72b"]).tensor_parallel_size == 8
    assert gconfig.judge_settings(config, judges["qwen2.5-32b"]).tensor_parallel_size == 2  # built-in kept
    seven = gconfig.openrlhf_settings(config, "qwen2.5-7b")
    assert seven.micro_batch_size == 2
    assert seven.mem_mb == 256000 and seven.runtime == 720  # the rest of the built-in preset kept


def test_demo_judges_on_cpu():
    demo = gconfig.load(REPO / "configs" / "demo.yaml")
    for j in gconfig.judges(demo):
        assert workflow.judge_resources(demo, j)["gpu"] is None
        assert gconfig.judge_settings(demo, j).backend == "transformers"


def test_no_tiny_block_unless_the_source_is_tiny(production):
    assert all("tiny" not in m for m in production["models"].values())
    assert all("tiny" not in e for e in production["external_judges"].values())
    config = raw()
    config["models"]["qwen2.5-7b"]["tiny"] = {"hidden_size": 32}
    with pytest.raises(gconfig.ConfigError, match="models.qwen2.5-7b: a 'tiny' block belongs only to source 'tiny'"):
        gconfig.validate(config)
    demo = raw("configs/demo.yaml")
    del demo["models"]["tiny-instruct"]["tiny"]
    with pytest.raises(gconfig.ConfigError, match="source 'tiny' needs a 'tiny' block"):
        gconfig.validate(demo)


def test_settings_fields_are_the_schema_keys_and_have_no_defaults():
    """Defaults are written once, in the schema: the typed settings declare none."""
    schema = load_schema()["properties"]
    judge_keys = set(schema["judge"]["properties"]) - set(gconfig.JOB_LEVEL_JUDGE_KEYS)
    trl_keys = set(schema["train"]["$defs"]["trl_settings"]["properties"])
    assert set(schema["train"]["properties"]["trl"]["default"]) == trl_keys  # every TRL key has its default
    openrlhf_keys = set(schema["train"]["$defs"]["openrlhf_settings"]["properties"]) | {
        "checkpoint_dir", "keep_checkpoints", "rdzv_port", "size"}
    for cls, keys in ((gconfig.JudgeSettings, judge_keys | {"mode", "tensor_parallel_size", "seed"}),
                      (gconfig.TrlSettings, trl_keys), (gconfig.OpenRLHFSettings, openrlhf_keys)):
        fields = dataclasses.fields(cls)
        assert {f.name for f in fields} == keys, cls.__name__
        assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in fields)


def test_settings_from_a_dict_name_missing_and_unknown_keys(production):
    judge = gconfig.judges(production)[0]
    values = dataclasses.asdict(gconfig.judge_settings(production, judge))
    del values["max_model_len"]
    values["colour"] = "blue"
    with pytest.raises(gconfig.ConfigError, match="missing max_model_len; unknown colour"):
        gconfig.from_dict(gconfig.JudgeSettings, values, "--settings")


def test_the_schema_ships_inside_the_package():
    import importlib.resources

    assert importlib.resources.files("genrm.config").joinpath("schema.yaml").is_file()
    assert not (REPO / "schemas").exists()


# --- one validate(): check-config refuses exactly what Snakemake refuses -----------------------

def unknown_published_judge(config):
    config["report"] = {"published": {"no-such-judge": None}}


def unknown_published_row(config):
    config["report"] = {"published": {"qwen2.5-7b": {"model": "Nobody", "method": "Verify Only"}}}


def micro_batch_not_dividing(config):
    config.setdefault("train", {}).setdefault("openrlhf", {})["models"] = {"qwen2.5-14b": {"micro_batch_size": 3}}


def unknown_method(config):
    config["genrms"]["qwen2.5-7b"] = ["verify", "no-such-method"]


def bad_enum(config):
    config["judge"] = {"backend": "tgi"}


@pytest.mark.dryrun
@pytest.mark.parametrize("break_it, message", [
    (unknown_published_judge, "report.published.no-such-judge: unknown judge"),
    (unknown_published_row, "report.published.qwen2.5-7b: no published row Nobody / Verify Only"),
    (micro_batch_not_dividing, "global_batch_size 128 is not a multiple of micro_batch_size 3 x 8"),
    (unknown_method, "genrms.qwen2.5-7b: unknown method 'no-such-method'"),
    (bad_enum, "judge.backend: 'tgi' is not allowed; allowed values: vllm, transformers"),
])
def test_check_config_and_snakemake_refuse_the_same_configs(tmp_path, break_it, message):
    config = raw()
    break_it(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    check = subprocess.run([sys.executable, "-m", "genrm", "check-config", str(path)], capture_output=True,
                           text=True)
    assert check.returncode == 2 and message in check.stderr
    assert len(check.stderr.strip().splitlines()) == 1  # one line
    dry = snakemake(["-n", "--configfile", str(path), "--replace-workflow-config"], tmp_path, check=False)
    assert dry.returncode != 0 and message in dry.stdout + dry.stderr


@pytest.mark.dryrun
def test_check_config_accepts_what_snakemake_accepts(tmp_path):
    for names in (["workflow_config.yaml"], ["configs/demo.yaml"], ["configs/demo.yaml", "configs/slim.yaml"],
                  ["configs/demo.yaml", "configs/demo-vllm.yaml"]):
        proc = subprocess.run([sys.executable, "-m", "genrm", "check-config", *(str(REPO / n) for n in names)],
                              capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(REPO)})  # this checkout's package
        assert proc.returncode == 0 and "valid" in proc.stdout, proc.stderr


def test_config_files_merge_as_snakemake_merges_them():
    """Mappings key by key, anything else (lists included) replaced; the slim demo keeps the
    demo's models and changes only what it names."""
    assert gconfig.merge({"a": {"x": 1, "y": [1, 2]}, "b": 1}, {"a": {"y": [3]}, "c": 2}) == {
        "a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    demo = gconfig.load(REPO / "configs" / "demo.yaml")
    slim = gconfig.load(REPO / "configs" / "demo.yaml", REPO / "configs" / "slim.yaml")
    assert slim["models"] == demo["models"] and slim["genrms"] == {"tiny-instruct": ["verify", "bt"]}
    assert slim["data"]["preferences"]["limit"] == 400 and slim["train"]["trl"]["learning_rate"] == 1.0e-3


def test_validation_does_not_change_a_valid_config_twice(production):
    again = gconfig.validate(copy.deepcopy(production))
    assert again == production


# --- resources that fit the machines a config is meant for ---------------------------------------

def test_the_demo_fits_a_small_node():
    """The demo runs on a 2-core, 8 GB machine or node: no job of it asks for more."""
    demo = gconfig.load(REPO / "configs" / "demo.yaml")
    requests = workflow.job_requests(demo, gconfig.judges(demo))
    assert {"check_sft_lengths (train.length_guard)", "train_genrm tiny-instruct",
            "judge_rewardbench tiny-reward"} <= set(requests)
    assert workflow.requests_beyond(requests, cpus=2, mem_mb=8000) == []


def test_requests_beyond_the_largest_node_are_named(production):
    requests = workflow.job_requests(production, gconfig.judges(production))
    beyond = workflow.requests_beyond(requests, cpus=64, mem_mb=512000)
    assert any(b.startswith("train_genrm qwen2.5-32b asks for 96 CPUs and 800000 MB") for b in beyond)
    assert not any("llama3.1-8b" in b for b in beyond)  # 64 CPUs, 256000 MB: fits
    assert all("the largest node has 64 CPUs and 512000 MB" in b for b in beyond)
