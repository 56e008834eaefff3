"""The slim demo (configs/slim.yaml over configs/demo.yaml: every kind of job, in about a minute)
submitted to a real one-node Slurm cluster through the SLURM executor plugin and a profile derived
from profiles/slurm: every job that is not a local rule goes through sbatch, accounting shows each
COMPLETED with what its rule declares, the tables equal the same slim run done locally, and the
faults a cluster brings end the way a user needs, each shown on one job: a cancelled judging job is
resubmitted and resumes from its shards, a job killed at its time limit fails with Slurm's reason
and leaves no output, a submission Slurm refuses ends the run with sbatch's message, and a job
larger than any node is refused before anything is submitted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SLIM_ARGS, SLIM_CONFIGS, job_counts, snakemake, snakemake_command
from genrm import config as gconfig
from genrm import paths, workflow
from genrm.io import read_jsonl, remove_path

pytestmark = pytest.mark.slurm
LOCAL_RULES = {"download_data", "fetch_model", "all"}
CANCELLED_JUDGE = "tiny-instruct"  # the base model in generate mode: the slowest judging job
TIMED_OUT = ("tiny-instruct", "verify")  # a training job, made to outlast its limit below


def slurm_profile(directory: Path, **changes) -> Path:
    """profiles/slurm with its placeholders filled for the local cluster, status checks
    that suit a small cluster, and ``changes`` on top."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.v8+.yaml").read_text())
    profile["default-resources"].update(slurm_partition="debug", slurm_account="genrm")
    for resources in profile["set-resources"].values():
        resources["slurm_partition"] = "debug"
    profile.update({"jobs": 4, "latency-wait": 5, "slurm-init-seconds-before-status-checks": 2,
                    "seconds-between-status-checks": 4, **changes})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.v8+.yaml").write_text(yaml.safe_dump(profile))
    return directory


def snakemake_cmd(workdir: Path, profile: Path, *args: str, configs: tuple[Path, ...] = SLIM_CONFIGS) -> list[str]:
    """The slim run (or ``configs``) submitted through ``profile``."""
    return snakemake_command(["--profile", str(profile), "--configfile", *map(str, configs),
                              "--replace-workflow-config", *args], workdir)


def slurm_jobs(cluster, since: str) -> list[dict]:
    """Every job of accounting since ``since``: id, rule and wildcard values (from the plugin's
    --comment, ``rule_<rule>_wildcards_<values joined by _>``), state, CPUs, requested memory,
    time limit."""
    fields = ("JobID", "Comment", "State", "AllocCPUS", "ReqMem", "Timelimit")
    out = cluster.run("sacct", "-X", "-n", "-P", "-S", since, "-o", ",".join(fields)).stdout
    jobs = []
    for line in out.splitlines():
        row = dict(zip(fields, line.split("|")))
        rule = row["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        jobs.append({**row, "rule": rule, "wildcards": row["Comment"].partition("_wildcards_")[2]})
    return jobs


def minutes(timelimit: str) -> int:
    """sacct's Timelimit ([D-]HH:MM:SS) in minutes."""
    days, _, clock = timelimit.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (s > 0)


def mem_mb(reqmem: str) -> int:
    value, unit = float(reqmem[:-1]), reqmem[-1]
    return int(value * {"M": 1, "G": 1024, "T": 1024 * 1024}[unit])


def tables(workdir: Path) -> dict[str, str]:
    """The run's results and diagnostics tables, as text."""
    return {name: (workdir / "results" / "tables" / name).read_text()
            for name in ("results.csv", "results.md", "diagnostics.md", "bt_vs_genrm.md", "sft.md")}


@pytest.fixture(scope="module")
def slim_local(local_slurm, tmp_path_factory) -> dict:
    """The slim run done here, without Slurm: the reference for the Slurm run, and the finished run
    that each fault test copies to submit one job of it. (Run beside the Slurm run, both took far
    longer: more processes than cores.)"""
    workdir = tmp_path_factory.mktemp("slim-local")
    proc = snakemake(["--cores", "2", *SLIM_ARGS], workdir)
    return {"workdir": workdir, "jobs": job_counts(proc.stdout + proc.stderr)}


@pytest.fixture(scope="module")
def slurm_run(local_slurm, tmp_path_factory):
    """One run of the slim demo under Slurm. While it runs, the base model's judging job is cancelled
    with scancel once it has written a shard: the profile's retries resubmit it."""
    workdir = tmp_path_factory.mktemp("slurm-slim")
    profile = slurm_profile(tmp_path_factory.mktemp("profile"))
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    shards = workdir / "results" / "eval" / CANCELLED_JUDGE / "predictions.jsonl.shards"
    log = workdir.with_name(workdir.name + ".log")  # a file, not a pipe nobody reads while it runs
    with open(log, "w") as out:
        proc = subprocess.Popen(snakemake_cmd(workdir, profile), stdout=out, stderr=subprocess.STDOUT, text=True,
                                env=local_slurm.env, start_new_session=True)
    cancelled = None
    try:
        deadline = time.monotonic() + 900
        while proc.poll() is None and time.monotonic() < deadline:
            if cancelled is None and any(shards.glob("shard-*.jsonl")):
                # the controller's view of running jobs: id and the plugin's --comment
                queue = local_slurm.run("squeue", "-h", "-t", "RUNNING", "-o", "%i|%k").stdout.split()
                wanted = f"rule_judge_rewardbench_wildcards_{CANCELLED_JUDGE}"  # the plugin's comment
                running = [line.split("|")[0] for line in queue if line.split("|")[1] == wanted]
                if running:
                    cancelled = running[0]
                    local_slurm.run("scancel", cancelled)
            time.sleep(0.1)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    output = log.read_text()
    assert proc.returncode == 0, output[-6000:]
    return {"workdir": workdir, "since": since, "cancelled": cancelled, "output": output, "profile": profile}


def test_a_cancelled_judging_job_is_resubmitted_and_judges_only_its_missing_shards(slurm_run, local_slurm):
    assert slurm_run["cancelled"], "the judging job finished before it could be cancelled"
    jobs = [j for j in slurm_jobs(local_slurm, slurm_run["since"])
            if j["rule"] == "judge_rewardbench" and j["wildcards"] == CANCELLED_JUDGE]
    states = {j["JobID"]: j["State"].split()[0] for j in jobs}
    assert states[slurm_run["cancelled"]] == "CANCELLED" and list(states.values())[-1] == "COMPLETED"
    examples = len(read_jsonl(slurm_run["workdir"] / paths.REWARDBENCH))
    shards = -(-examples // gconfig.load(*SLIM_CONFIGS)["judge"]["shard_size"])
    log = (slurm_run["workdir"] / "logs" / "judge_rewardbench" / f"{CANCELLED_JUDGE}.log").read_text()
    done = int(log.split(" done, ")[0].rsplit(" ", 1)[1])
    assert 1 <= done < shards and f"{done} done, {shards - done} to judge" in log
    assert log.count("written") == shards - done


def test_every_job_goes_through_sbatch_and_completes_with_its_declared_resources(slurm_run, slim_local, local_slurm):
    config = gconfig.load(*SLIM_CONFIGS)
    judges = {j.name: j for j in gconfig.judges(config)}
    jobs = [j for j in slurm_jobs(local_slurm, slurm_run["since"]) if j["JobID"] != slurm_run["cancelled"]]
    by_rule: dict[str, list[dict]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    assert not LOCAL_RULES & set(by_rule), "local rules must run on the submitting node"
    # every kind of job of the run, as many as the local run ran, each through sbatch and COMPLETED
    submitted = {rule: n for rule, n in slim_local["jobs"].items() if rule not in LOCAL_RULES}
    assert {rule: len(js) for rule, js in by_rule.items()} == submitted
    assert {"format_sft", "format_bt", "check_sft_lengths", "train_genrm", "judge_rewardbench", "judge_greedy_sample",
            "score_judge", "tables", "sft_table", "bt_table", "diagnostics_table", "plot_sections", "plot_heatmap",
            "plot_genrm_vs_base", "check_contamination"} <= set(submitted)
    assert all(j["State"] == "COMPLETED" for j in jobs), [j for j in jobs if j["State"] != "COMPLETED"]
    assert {"download_data", "fetch_model"} <= set(slim_local["jobs"])  # they ran, on the submitting node
    assert len(by_rule["train_genrm"]) == len(gconfig.genrms(config)) == 2  # a GenRM, a Bradley-Terry model
    assert len(by_rule["score_judge"]) == len(judges)
    for job in by_rule["train_genrm"]:
        method = next(m for m in config["methods"] if job["wildcards"] == f"tiny-instruct_{m}")
        train = workflow.train_resources(config, "tiny-instruct", method)
        assert int(job["AllocCPUS"]) == train["cpus_per_task"]
        assert mem_mb(job["ReqMem"]) == train["mem_mb"] and minutes(job["Timelimit"]) == train["runtime"]
    for job in by_rule["judge_rewardbench"] + by_rule["judge_greedy_sample"]:
        declared = workflow.judge_resources(config, judges[job["wildcards"]])
        assert int(job["AllocCPUS"]) == declared["cpus_per_task"]
        assert mem_mb(job["ReqMem"]) == declared["mem_mb"] and minutes(job["Timelimit"]) == declared["runtime"]
    guard = config["train"]["length_guard"]
    for job in by_rule["check_sft_lengths"]:
        assert int(job["AllocCPUS"]) == guard["threads"] and mem_mb(job["ReqMem"]) == guard["mem_mb"]
        assert minutes(job["Timelimit"]) == guard["runtime"]


def test_the_tables_equal_a_local_run(slurm_run, slim_local):
    assert tables(slurm_run["workdir"]) == tables(slim_local["workdir"])
    diagnostics = (slurm_run["workdir"] / "results" / "tables" / "diagnostics.md").read_text()
    assert "Tiny-GenRM (Verify Only)" in diagnostics and "Qwen" not in diagnostics  # the slim run's judges only


# --- faults, each on one job of a copy of the finished local run ---------------------------------

def one_job(slim_local: dict, where: Path, *outputs: str) -> Path:
    """A copy of the finished slim run without ``outputs`` (files or a model folder), all of one job:
    asking for the first submits exactly that job."""
    workdir = where / "run"
    shutil.copytree(slim_local["workdir"], workdir, symlinks=True)
    for output in outputs:
        remove_path(workdir / output)
    dry = snakemake(["-n", *SLIM_ARGS, outputs[0]], workdir)
    assert sum(job_counts(dry.stdout + dry.stderr).values()) == 1, dry.stdout[-3000:]
    return workdir


def submit(local_slurm, workdir: Path, profile: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_cmd(workdir, profile, *args), capture_output=True, text=True,
                          env=local_slurm.env, timeout=timeout)


MODEL = paths.TRAINED.format(model=TIMED_OUT[0], method=TIMED_OUT[1])


def test_a_job_larger_than_any_node_is_refused_before_submission(slim_local, local_slurm, tmp_path):
    """Many clusters queue such a job forever (reason PartitionConfig) instead of refusing it:
    the workflow asks sinfo for the largest node and refuses the run before any job starts."""
    workdir = one_job(slim_local, tmp_path, MODEL)
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    profile = slurm_profile(tmp_path / "profile", retries=0)
    proc = submit(local_slurm, workdir, profile, MODEL, "--set-resources", "train_genrm:cpus_per_task=64",
                  timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "jobs that no node of this cluster can run" in output
    assert f"train_genrm {TIMED_OUT[0]} {TIMED_OUT[1]} asks for 64 CPUs" in output
    assert "sbatch" not in output and slurm_jobs(local_slurm, since) == []


def test_a_submission_slurm_refuses_ends_the_run_with_sbatchs_message(slim_local, local_slurm, tmp_path):
    predictions = paths.PREDICTIONS.format(judge=CANCELLED_JUDGE)
    workdir = one_job(slim_local, tmp_path, predictions, paths.JUDGING.format(judge=CANCELLED_JUDGE))
    profile = slurm_profile(tmp_path / "profile", retries=0)
    proc = submit(local_slurm, workdir, profile, predictions,
                  "--set-resources", "judge_rewardbench:slurm_partition=nosuchpartition", timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "sbatch: error: invalid partition specified: nosuchpartition" in output.lower()
    assert not (workdir / predictions).exists()


def test_a_job_killed_at_its_time_limit_fails_with_slurms_reason_and_leaves_no_output(
        slim_local, local_slurm, tmp_path):
    """Slurm ends a job at its limit (at least a minute: limits are whole minutes, checked every 30 s).
    Once Snakemake has reported the failure the test ends the run as a user would, with Ctrl-C: left
    alone, it would first sleep out its status-check interval (the plugin adds 10 s to it at every
    check that finds no job finished, so by then it is nearly a minute)."""
    workdir = one_job(slim_local, tmp_path, MODEL)
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    profile = slurm_profile(tmp_path / "profile", retries=0)
    # a one-minute limit for a training job given many minutes of work: Slurm ends it at its limit
    longer = tmp_path / "longer.yaml"
    longer.write_text(yaml.safe_dump({"train": {"trl": {"epochs": 100}}}))
    log = tmp_path / "snakemake.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(snakemake_cmd(workdir, profile, MODEL, "--set-resources", "train_genrm:runtime=1",
                                              configs=(*SLIM_CONFIGS, longer)),
                                stdout=out, stderr=subprocess.STDOUT, text=True, env=local_slurm.env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while proc.poll() is None and time.monotonic() < deadline and "Error in rule" not in log.read_text():
            time.sleep(0.5)
        if proc.poll() is None:
            time.sleep(1)  # the rest of the report
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log.read_text()
    assert proc.returncode != 0
    assert "Error in rule train_genrm" in output and "SLURM status is: 'TIMEOUT'" in output, output[-3000:]
    jobs = [j for j in slurm_jobs(local_slurm, since) if j["rule"] == "train_genrm"]
    assert [j["State"] for j in jobs] == ["TIMEOUT"] and minutes(jobs[0]["Timelimit"]) == 1
    slurm_logs = list((workdir / ".snakemake" / "slurm_logs" / "rule_train_genrm").rglob(f"{jobs[0]['JobID']}.log"))
    assert slurm_logs and "DUE TO TIME LIMIT" in slurm_logs[0].read_text()  # slurmstepd's reason
    model = workdir / MODEL
    assert not model.exists() and not list(model.parent.glob(f".{model.name}.*"))  # nor a partial one
