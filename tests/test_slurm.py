"""Cluster submission, checked without a cluster.

A dry run of the production config with ``--profile profiles/slurm`` (no sbatch
on the PATH) prints every job; the training jobs' resources must be their size
presets and their commands must parse with OpenRLHF's own parser. The resources
are then handed to the SLURM executor plugin's own code that writes the sbatch
and srun flags.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genrm import config as gconfig

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "profiles"
dryrun = pytest.mark.dryrun  # runs `snakemake -n`
unit = pytest.mark.unit


SLURM_COMMANDS = ("sbatch", "srun", "salloc", "squeue", "sacct", "sinfo", "scontrol", "scancel")


def path_without(programs, shadow_root: Path) -> str:
    """The PATH with none of ``programs``. A folder that holds one (``/usr/bin`` where
    Slurm is installed, beside everything else) is replaced by a folder of links to
    its other entries."""
    dirs = []
    for i, d in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if not d or not any((Path(d) / p).exists() for p in programs):
            dirs.append(d)
            continue
        shadow = shadow_root / f"{i}"
        shadow.mkdir(parents=True, exist_ok=True)
        for entry in Path(d).iterdir():
            if entry.name not in programs and not os.path.lexists(shadow / entry.name):
                (shadow / entry.name).symlink_to(entry)
        dirs.append(str(shadow))
    return os.pathsep.join(d for d in dirs if d)


def dry_run(workdir: Path, *args: str) -> str:
    """``snakemake -n -p`` of this repository in ``workdir``, with no Slurm command on the PATH."""
    env = {**os.environ, "PATH": path_without(SLURM_COMMANDS, workdir.with_name(workdir.name + ".path"))}
    assert all(shutil.which(p, path=env["PATH"]) is None for p in SLURM_COMMANDS)
    assert shutil.which("which", path=env["PATH"]) and shutil.which("bash", path=env["PATH"])
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--workflow-profile", "none", "-n", "-p", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def jobs(output: str) -> list[dict]:
    """The jobs of a dry run: rule, wildcards, resources and shell command."""
    found = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", output):
        head = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if not head:
            continue
        job = {"rule": head.group(1), "wildcards": {}, "resources": {}, "shell": None}
        if m := re.search(r"^\s+wildcards: (.*)$", block, re.M):
            job["wildcards"] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
        if m := re.search(r"^\s+resources: (.*)$", block, re.M):
            job["resources"] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
        if m := re.search(r"^Shell command: (.*)$", block, re.M):
            job["shell"] = m.group(1)
        found.append(job)
    return found


@pytest.fixture(scope="module")
def production():
    return gconfig.load(REPO / "workflow_config.yaml")


@pytest.fixture(scope="module")
def slurm_dry_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm")
    return jobs(dry_run(workdir, "--profile", str(PROFILES / "slurm"),
                        "--configfile", str(REPO / "workflow_config.yaml")))


def train_jobs(all_jobs):
    return {(j["wildcards"]["model"], j["wildcards"]["method"]): j for j in all_jobs if j["rule"] == "train_genrm"}


@dryrun
def test_dry_run_has_every_training_job(slurm_dry_run, production):
    assert set(train_jobs(slurm_dry_run)) == set(gconfig.genrms(production))
    checks = {(j["wildcards"]["model"], j["wildcards"]["method"]) for j in slurm_dry_run
              if j["rule"] == "check_sft_lengths"}
    assert checks == set(gconfig.genrms(production))  # the length guard before every training job


@dryrun
def test_training_resources_are_the_presets(slurm_dry_run, production):
    for (model, method), job in train_jobs(slurm_dry_run).items():
        s = gconfig.openrlhf_settings(production, model, method)
        r = job["resources"]
        assert int(r["gpu"]) == s.nodes * s.gpus_per_node, model
        assert int(r["nodes"]) == s.nodes and int(r["tasks"]) == s.nodes
        assert int(r["runtime"]) == s.runtime and int(r["mem_mb"]) == s.mem_mb
        assert int(r["cpus_per_task"]) == s.cpus_per_task and r["tasks_per_gpu"] == "0"
        assert ("mpi" in r) == (s.nodes > 1)
        assert r["slurm_partition"] == "YOUR_GPU_PARTITION" and r["slurm_account"] == "YOUR_ACCOUNT"
    big = train_jobs(slurm_dry_run)[("qwen2.5-72b", "verify")]["resources"]
    assert int(big["nodes"]) > 1 and int(big["gpu"]) == 32


@dryrun
def test_printed_commands_parse_with_openrlhf_and_match_the_presets(slurm_dry_run, production):
    """Each printed command parses with the parser of its own OpenRLHF module, recovered from the
    installed source: train_sft for the GenRMs, train_rm for the Bradley-Terry model."""
    import json

    pytest.importorskip("openrlhf")
    from genrm.train.openrlhf import check_command, launch_module

    modules = set()
    for (model, method), job in train_jobs(slurm_dry_run).items():
        s = gconfig.openrlhf_settings(production, model, method)
        command = job["shell"]
        assert command.endswith(f"> logs/train_genrm/{model}/{method}.log 2>&1")
        words = shlex.split(command.rsplit(" > ", 1)[0])
        module = launch_module(words)[0]
        modules.add(module)
        args = vars(check_command(words))
        assert args["data.apply_chat_template"]
        if method == "bt":
            assert module == "openrlhf.cli.train_rm" and args["data.dataset"] == "results/bt/rows.jsonl"
            assert (args["data.chosen_key"], args["data.rejected_key"]) == ("chosen", "rejected")
        else:
            assert module == "openrlhf.cli.train_sft"
            assert args["data.input_key"] == "prompt" and args["data.output_key"] == "response"
        assert args["ckpt.output_dir"] == f"results/models/{model}/{method}.partial"
        assert args["train.micro_batch_size"] == s.micro_batch_size and args["ds.zero_stage"] == 3
        assert f"--nproc-per-node={s.gpus_per_node}" in words
        assert f"--nnodes={s.nodes}" in words
        assert words[:5] == ["python", "-m", "genrm", "openrlhf", "run"]
        # what the model's genrm_training.json will record: its settings and the seed
        record = json.loads(words[words.index("--record") + 1])
        assert record["settings"] == gconfig.as_dict(s) and record["seed"] == production["seed"]
        assert args["train.seed"] == production["seed"]
        if s.nodes > 1:
            assert words[words.index("--") + 1] == "srun" and "--rdzv-backend=c10d" in words
    assert modules == {"openrlhf.cli.train_sft", "openrlhf.cli.train_rm"}


@dryrun
def test_cpu_jobs_use_the_cpu_partition(slurm_dry_run):
    for job in slurm_dry_run:
        if job["rule"] in ("check_sft_lengths", "format_sft", "format_bt"):
            assert job["resources"]["slurm_partition"] == "YOUR_CPU_PARTITION"
            assert "gpu" not in job["resources"]


@dryrun
def test_every_job_asking_for_gpus_goes_to_the_gpu_partition(slurm_dry_run):
    gpu_jobs = [j for j in slurm_dry_run if int(j["resources"].get("gpu", "0") or 0) > 0]
    assert {j["rule"] for j in gpu_jobs} == {"train_genrm", "judge_rewardbench", "judge_greedy_sample"}
    for job in gpu_jobs:
        assert job["resources"]["slurm_partition"] == "YOUR_GPU_PARTITION", job


# --- what the SLURM executor plugin makes of these resources ------------------------


class FakeResources(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error


class FakeJob:
    def __init__(self, resources: dict, threads: int = 1):
        self.resources = FakeResources(resources)
        self.threads = threads
        self.name = "train_genrm"


def as_resources(printed: dict) -> dict:
    return {k: int(v) if re.fullmatch(r"\d+", v) else v for k, v in printed.items()
            if k not in ("tmpdir", "disk_mb", "disk", "disk_mib", "mem", "mem_mib")}


def sbatch_flags(resources: dict) -> list[str]:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    job = FakeJob(resources, threads=resources.get("cpus_per_task", 1))
    validate_slurm_extra(job)
    params = {"run_uuid": "u", "slurm_logfile": "log", "comment_str": "c", "account": "-A acc",
              "partition": "-p part", "workdir": "/w"}
    return shlex.split(get_submit_command(job, params) + set_gres_string(job))


@dryrun
def test_sbatch_flags_of_a_single_node_job(slurm_dry_run):
    resources = as_resources(train_jobs(slurm_dry_run)[("llama3.1-8b", "verify")]["resources"])
    flags = sbatch_flags(resources)
    assert "--gpus=8" in flags and "--nodes=1" in flags and "--cpus-per-task=64" in flags
    assert flags[flags.index("--mem") + 1] == "256000" and flags[flags.index("-t") + 1] == "720"
    assert not any(f.startswith("--ntasks-per-gpu") for f in flags)
    # inside the allocation the job step gets all GPUs of the node and one task
    from snakemake_executor_plugin_slurm_jobstep import get_gpu_setting, get_node_setting

    job = FakeJob(resources)
    assert get_gpu_setting(job) == "--gpus=8" and get_node_setting(job) == "--nodes=1"
    assert "mpi" not in job.resources


@dryrun
def test_sbatch_flags_of_the_multi_node_job(slurm_dry_run):
    resources = as_resources(train_jobs(slurm_dry_run)[("qwen2.5-72b", "verify")]["resources"])
    flags = sbatch_flags(resources)
    assert {"--gpus=32", "--nodes=4", "--ntasks=4", "--cpus-per-task=96"} <= set(flags)
    assert flags[flags.index("-t") + 1] == "2880" and flags[flags.index("--mem") + 1] == "720000"
    assert not any(f.startswith("--ntasks-per-gpu") for f in flags)
    # an `mpi` job: the job step runs the rule's shell in the batch script on the
    # first node, and that shell starts one torchrun per node with srun
    assert resources["mpi"] == "srun"


@dryrun
def test_gpu_model_becomes_part_of_the_gpus_flag(slurm_dry_run):
    resources = as_resources(train_jobs(slurm_dry_run)[("qwen2.5-14b", "verify")]["resources"])
    assert "--gpus=h100:8" in sbatch_flags({**resources, "gpu_model": "h100"})


# --- the profiles themselves ------------------------------------------------------------


@unit
@pytest.mark.parametrize("name", ["slurm", "workstation"])
def test_every_profile_key_has_a_comment(name):
    lines = (PROFILES / name / "config.v8+.yaml").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*[\w-]+:", line) or re.match(r"^\s*- \w", line):
            before = next((p for p in reversed(lines[:i]) if p.strip()), "")
            assert " #" in line or before.strip().startswith("#"), f"{name}: no comment for {line!r}"


@unit
def test_slurm_profile_settings():
    profile = yaml.safe_load((PROFILES / "slurm" / "config.v8+.yaml").read_text(encoding="utf-8"))
    assert profile["executor"] == "slurm"
    assert profile["default-resources"]["slurm_account"] == "YOUR_ACCOUNT"
    assert "PARTITION" in profile["default-resources"]["slurm_partition"]
    assert "PARTITION" in profile["set-resources"]["train_genrm"]["slurm_partition"]
    assert profile["retries"] >= 1  # a resubmitted training job resumes from its checkpoint
    assert "--gres" not in (PROFILES / "slurm" / "config.v8+.yaml").read_text().replace("(--gres", "")


@unit
def test_downloads_stay_on_the_login_node():
    text = (REPO / "rules" / "data.smk").read_text(encoding="utf-8")
    for rule in ("download_data", "fetch_model"):
        block = text.split(f"rule {rule}:", 1)[1].split("\nrule ", 1)[0]
        assert re.search(r"^\s+localrule: True$", block, re.M), rule


@dryrun
def test_workstation_dry_run(tmp_path):
    out = dry_run(tmp_path, "results/models/qwen2.5-7b/verify", "--profile", str(PROFILES / "workstation"),
                  "--configfile", str(REPO / "workflow_config.yaml"))
    found = train_jobs(jobs(out))
    assert found[("qwen2.5-7b", "verify")]["shell"].split(" -- ", 1)[1].startswith(
        "torchrun --standalone --nnodes=1 --nproc-per-node=8 -m openrlhf.cli.train_sft")


@dryrun
def test_demo_config_trains_its_genrms_with_trl_and_its_bt_model_with_openrlhf_on_cpu(tmp_path):
    out = dry_run(tmp_path, "results/models/tiny-instruct/verify", "results/models/tiny-instruct/verify_correct",
                  "results/models/tiny-instruct/bt",
                  "--replace-workflow-config", "--configfile", str(REPO / "configs" / "demo.yaml"))
    all_jobs = jobs(out)
    train = {j["wildcards"]["method"]: j for j in all_jobs if j["rule"] == "train_genrm"}
    assert sorted(train) == ["bt", "verify", "verify_correct"]
    genrms = [train["verify"], train["verify_correct"]]
    assert all(j["shell"].startswith("python -m genrm train --model ") and "openrlhf" not in j["shell"]
               for j in genrms)
    # train.bt.backend: openrlhf, device: cpu: OpenRLHF's train_rm in one CPU process, through the wrapper
    bt = train["bt"]["shell"]
    assert bt.startswith("python -m genrm openrlhf run ") and " --objective bt " not in bt
    launch = bt.split(" -- ", 1)[1]
    assert launch.startswith("python -m genrm.train.openrlhf_cpu -m openrlhf.cli.train_rm ")
    assert "torchrun" not in launch and "--data.max_samples 480 " in launch
    assert all("gpu" not in j["resources"] and "mpi" not in j["resources"] for j in train.values())
    checks = [j for j in all_jobs if j["rule"] == "check_sft_lengths"]
    assert checks and all("--max-len 512" in j["shell"] for j in checks)
