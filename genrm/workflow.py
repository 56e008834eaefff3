"""What the rule files call (layer 4): job commands, scheduler resources and table rows,
computed from a validated config. Rule files stay declarative; the logic is here,
importable and tested without Snakemake.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys

from genrm import paths
from genrm.config import (
    BT_METHOD,
    Judge,
    agreement_sample,
    as_dict,
    genrm_name,
    genrms,
    judge_settings,
    objective,
    openrlhf_settings,
    published_key,
    train_backend,
    trl_settings,
)
from genrm.train.openrlhf import cpu_job, job_resources, rule_job


def as_arg(obj) -> str:
    """A Python object (or settings dataclass) as one shell-quoted JSON argument."""
    if hasattr(obj, "__dataclass_fields__"):
        obj = as_dict(obj)
    return shlex.quote(json.dumps(obj, sort_keys=True))


REPLACED_CONFIG = "GENRM_REPLACE_WORKFLOW_CONFIG"


def uses_workflow_config(workflow) -> bool:
    """Whether the Snakefile loads workflow_config.yaml: not when --replace-workflow-config
    gave a config of its own. A job submitted to a cluster runs Snakemake again with the same
    --configfiles but without that flag, so the choice travels in the environment, which
    sbatch passes on to the job."""
    if workflow.config_settings.replace_workflow_config:
        os.environ[REPLACED_CONFIG] = "1"
    return os.environ.get(REPLACED_CONFIG) != "1"


def prepare_job_environment(package_root: str) -> None:
    """Make ``python -m genrm`` work in every job: the package on the import path
    whatever the working directory, and ``python`` the interpreter running Snakemake
    (a virtual environment need not be activated; with --sdm conda the job's own
    environment comes first)."""
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    os.environ["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", "")))


# --- judging ------------------------------------------------------------------------

def judge_model_dir(judge: Judge) -> str:
    """The weights a judge runs: the trained GenRM or Bradley-Terry model, or the fetched base or
    external model."""
    if judge.ours:
        return paths.TRAINED.format(model=judge.model, method=judge.genrm_method)
    return paths.MODEL.format(name=judge.model)


def judge_gpus(config: dict, judge: Judge) -> int:
    """GPUs of one judging job: on vLLM the tensor parallel size of the judge's size class (generative
    judges and classifiers alike), none for the transformers backend (CPU)."""
    if config["judge"]["backend"] != "vllm":
        return 0
    return config["judge"]["tensor_parallel"][judge.size]


def judge_resources(config: dict, judge: Judge) -> dict:
    """What one judging job asks the scheduler for (Snakemake resources)."""
    j = config["judge"]
    return {"gpu": judge_gpus(config, judge) or None, "cpus_per_task": j["threads"], "mem_mb": j["mem_mb"],
            "runtime": j["runtime"]}


def judge_command(config: dict, judge: Judge, model_dir: str, data: str, out: str, judging: str) -> str:
    """The judging job of one judge: every example, its predictions and how they were produced."""
    return (f"python -m genrm judge --model {shlex.quote(model_dir)} --data {shlex.quote(data)}"
            f" --settings {as_arg(judge_settings(config, judge))} --out {shlex.quote(out)}"
            f" --judging {shlex.quote(judging)}")


def job_settings(config: dict, judge: Judge | None = None, model: str | None = None,
                 method: str | None = None) -> str:
    """The settings of a judging job (``judge``) or a training job (``model``, ``method``) as
    one string, for a rule's ``params``: Snakemake reruns a job whose params changed, but not
    for params computed from its input or output paths, as the job commands are."""
    if judge is not None:
        return as_arg(judge_settings(config, judge))
    if train_backend(config, method) == "openrlhf":
        return as_arg(openrlhf_settings(config, model, method))
    return as_arg(trl_settings(config, method))


def greedy_sample_command(config: dict, judge: Judge, model_dir: str, data: str, out: str, judging: str) -> str:
    """A judge in logprob mode judges a seeded sample again by greedy decoding (the published protocol),
    with the same backend and settings otherwise."""
    settings = dataclasses.replace(judge_settings(config, judge), mode="generate")
    return (f"python -m genrm judge --model {shlex.quote(model_dir)} --data {shlex.quote(data)}"
            f" --settings {as_arg(settings)} --sample {agreement_sample(config, judge)}"
            f" --out {shlex.quote(out)} --judging {shlex.quote(judging)}")


def score_inputs(config: dict, judge: Judge) -> dict[str, str]:
    """What scoring one judge reads: its predictions and judging.json, and for a judge in logprob
    mode (when judge.agreement_sample > 0) its greedy verdicts on the sample."""
    inputs = {"predictions": paths.PREDICTIONS.format(judge=judge.name),
              "judging": paths.JUDGING.format(judge=judge.name)}
    if agreement_sample(config, judge):
        inputs.update(greedy=paths.GREEDY_SAMPLE.format(judge=judge.name),
                      greedy_judging=paths.GREEDY_JUDGING.format(judge=judge.name))
    return inputs


def score_command(inputs: dict, out: str) -> str:
    """``python -m genrm score`` over the files ``score_inputs`` named."""
    words = ["python", "-m", "genrm", "score", "--predictions", inputs["predictions"], "--judging", inputs["judging"]]
    if "greedy" in inputs:
        words += ["--greedy", inputs["greedy"], inputs["greedy_judging"]]
    return " ".join(shlex.quote(str(w)) for w in [*words, "--out", out])


# --- training ------------------------------------------------------------------------

def sft_methods(config: dict) -> list[str]:
    """The GenRM (SFT) methods of the config, each with its own SFT rows."""
    return [m for m in config["methods"] if objective(m) == "sft"]


def train_rows(method: str) -> str:
    """The rows a training job of ``method`` reads: its SFT rows, or the Bradley-Terry pairs."""
    return paths.BT_ROWS if objective(method) == "bt" else paths.SFT_ROWS.format(method=method)


def train_command(config: dict, model: str, method: str, model_dir: str, rows: str, out: str) -> str:
    """The shell command of one training job (rule train_genrm; ``snakemake -n -p`` prints it):
    the OpenRLHF launch line (train_sft, or train_rm for method bt), or ``python -m genrm train
    ...`` (TRL, CPU). An OpenRLHF job of ``device: cpu`` runs in its CPU form (``cpu_job``)."""
    if train_backend(config, method) == "openrlhf":
        settings = openrlhf_settings(config, model, method)
        job = rule_job(settings, model=model, method=method, model_dir=model_dir, rows=rows, out=out,
                       seed=config["seed"])
        return (cpu_job(job) if settings.device == "cpu" else job).shell_command()
    return (f"python -m genrm train --model {shlex.quote(model_dir)} --rows {shlex.quote(rows)}"
            f" --objective {objective(method)} --settings {as_arg(trl_settings(config, method))}"
            f" --seed {config['seed']} --out {shlex.quote(out)}")


def train_resources(config: dict, model: str, method: str | None = None) -> dict:
    """What one training job of ``model`` x ``method`` asks the scheduler for (Snakemake resources)."""
    if train_backend(config, method) == "openrlhf":
        return job_resources(openrlhf_settings(config, model, method))
    trl = trl_settings(config, method)
    return {"nodes": 1, "tasks": 1, "cpus_per_task": trl.threads, "mem_mb": trl.mem_mb,
            "runtime": trl.runtime, "gpu": None, "tasks_per_gpu": None, "mpi": None}


# --- fitting the cluster --------------------------------------------------------------

def job_requests(config: dict, judges: list[Judge]) -> dict[str, dict]:
    """What each job of a run asks for on one node (CPUs and MB), by a label naming it."""
    guard = config["train"]["length_guard"]
    requests = {"check_sft_lengths (train.length_guard)": {"cpus": guard["threads"], "mem_mb": guard["mem_mb"]}}
    for model, method in genrms(config):  # the GenRM methods of a model share their settings
        r = train_resources(config, model, method)
        label = f"train_genrm {model}" + (f" {method}" if objective(method) == "bt" else "")
        requests[label] = {"cpus": r["cpus_per_task"], "mem_mb": r["mem_mb"]}
    for judge in judges:
        r = judge_resources(config, judge)
        requests[f"judge_rewardbench {judge.name}"] = {"cpus": r["cpus_per_task"], "mem_mb": r["mem_mb"]}
    return requests


def requests_beyond(requests: dict[str, dict], cpus: int, mem_mb: int) -> list[str]:
    """The jobs that ask for more CPUs or memory than the largest node has (they would wait forever)."""
    return [f"{job} asks for {r['cpus']} CPUs and {r['mem_mb']} MB; the largest node has {cpus} CPUs and "
            f"{mem_mb} MB" for job, r in requests.items() if r["cpus"] > cpus or r["mem_mb"] > mem_mb]


def largest_slurm_node() -> tuple[int, int] | None:
    """(CPUs, memory in MB) of the largest node ``sinfo`` reports, or None without Slurm."""
    if not shutil.which("sinfo"):
        return None
    proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%c %m"], capture_output=True, text=True)
    nodes = [tuple(int(x.rstrip("+")) for x in line.split()) for line in proc.stdout.splitlines()
             if len(line.split()) == 2]
    if proc.returncode != 0 or not nodes:
        return None
    return max(n[0] for n in nodes), max(n[1] for n in nodes)


def submitted_requests(jobs) -> dict[str, dict]:
    """What each Snakemake job about to be submitted asks for on one node, as the SLURM plugin
    asks it (``cpus_per_task``, else the job's threads; ``mem_mb``), after --set-resources."""
    requests = {}
    for job in jobs:
        if job.is_local:
            continue
        label = " ".join([job.rule.name, *map(str, job.wildcards)])
        requests[label] = {"cpus": job.resources.get("cpus_per_task") or job.threads,
                           "mem_mb": job.resources.get("mem_mb") or 0}
    return requests


def jobs_no_slurm_node_can_run(jobs) -> list[str]:
    """The jobs about to be submitted that ask for more than the largest node of the cluster
    has. Many clusters queue such a job forever (reason PartitionConfig) instead of refusing
    it. Empty without Slurm."""
    node = largest_slurm_node()
    return requests_beyond(submitted_requests(jobs), *node) if node else []


# --- tables --------------------------------------------------------------------------

def table_row(judge: Judge) -> dict:
    """The identity of a judge in the results tables (``kind`` and ``base``, the model it starts
    from, let the report group a Bradley-Terry model with its GenRM siblings)."""
    return {"judge": judge.name, "family": judge.family, "model": judge.label, "method": judge.method,
            "ours": judge.ours, "kind": judge.kind, "base": judge.model}


def table_rows(config: dict, judges: list[Judge]) -> list[dict]:
    """The judges' identities in the tables, each with the published row it is compared with."""
    return [{**table_row(j), "published": published_key(config, j)} for j in judges]


def genrm_pair(judges: dict[str, Judge], model: str, method: str) -> tuple[Judge, ...]:
    """(base judge, GenRM judge) of one trained GenRM, and the Bradley-Terry model of the same base
    when one is trained (the plot of a GenRM against its base shows it too)."""
    bt = judges.get(genrm_name(model, BT_METHOD))
    return (judges[model], judges[genrm_name(model, method)]) + ((bt,) if bt is not None else ())


def bt_groups(judges: list[Judge]) -> list[Judge]:
    """The judges of the GenRM vs Bradley-Terry comparison: per base model with a Bradley-Terry
    model, that model and the GenRMs trained from the same base on the same pairs."""
    with_bt = [j.model for j in judges if j.kind == "bt"]
    return [j for model in with_bt for j in judges if j.model == model and j.kind in ("bt", "genrm")]
