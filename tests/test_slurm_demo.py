"""The embedded demo DAG submitted to a real one-node Slurm cluster through the SLURM executor
plugin and a profile derived from profiles/slurm: every job that is not a local rule goes
through sbatch, accounting shows each COMPLETED with what its rule declares, the tables equal
a local run's, and a cancelled judging job is resubmitted and resumes from its shards."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import DEMO_ARGS, REPO
from genrm import config as gconfig
from genrm import workflow

pytestmark = pytest.mark.slurm
LOCAL_RULES = {"download_data", "fetch_model", "all"}
CANCELLED_JUDGE = "tiny-instruct"  # the base model in generate mode: the slowest judging job


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


def snakemake_cmd(workdir: Path, profile: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--workflow-profile", "none", "--profile", str(profile), *DEMO_ARGS, *args]


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


def scores(workdir: Path) -> dict:
    with open(workdir / "results" / "tables" / "results.csv") as f:
        return {r["judge"]: {k: r[k] for k in ("score", "chat", "chat_hard", "safety", "reasoning")}
                for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def slurm_run(local_slurm, tmp_path_factory):
    """One run of the demo under Slurm. While it runs, the base model's judging job is cancelled
    with scancel once it has written a shard: the profile's retries resubmit it."""
    workdir = tmp_path_factory.mktemp("slurm-demo")
    profile = slurm_profile(tmp_path_factory.mktemp("profile"))
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    shards = workdir / "results" / "eval" / CANCELLED_JUDGE / "predictions.jsonl.shards"
    log = workdir.with_name(workdir.name + ".log")  # a file, not a pipe nobody reads while it runs
    with open(log, "w") as out:
        proc = subprocess.Popen(snakemake_cmd(workdir, profile), stdout=out, stderr=subprocess.STDOUT, text=True,
                                env=local_slurm.env, start_new_session=True)
    cancelled = None
    try:
        deadline = time.monotonic() + 2400
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


def test_every_job_goes_through_sbatch_and_completes_with_its_declared_resources(slurm_run, local_slurm):
    config = gconfig.load(REPO / "configs" / "demo.yaml")
    judges = {j.name: j for j in gconfig.judges(config)}
    jobs = [j for j in slurm_jobs(local_slurm, slurm_run["since"]) if j["JobID"] != slurm_run["cancelled"]]
    by_rule: dict[str, list[dict]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    assert not LOCAL_RULES & set(by_rule), "local rules must run on the submitting node"
    for rule in ("format_sft", "format_bt", "check_sft_lengths", "train_genrm", "judge_rewardbench", "score_judge",
                 "tables", "bt_table", "diagnostics_table", "check_contamination"):
        assert by_rule.get(rule), f"no {rule} job went through sbatch"
        assert all(j["State"] == "COMPLETED" for j in by_rule[rule]), by_rule[rule]
    assert len(by_rule["train_genrm"]) == len(gconfig.genrms(config)) == 3  # two GenRMs, a Bradley-Terry model
    assert len(by_rule["score_judge"]) == len(judges)
    for job in by_rule["train_genrm"]:
        method = next(m for m in config["methods"] if job["wildcards"] == f"tiny-instruct_{m}")
        train = workflow.train_resources(config, "tiny-instruct", method)
        assert int(job["AllocCPUS"]) == train["cpus_per_task"]
        assert mem_mb(job["ReqMem"]) == train["mem_mb"] and minutes(job["Timelimit"]) == train["runtime"]
    for job in by_rule["judge_rewardbench"]:
        declared = workflow.judge_resources(config, judges[job["wildcards"]])
        assert int(job["AllocCPUS"]) == declared["cpus_per_task"]
        assert mem_mb(job["ReqMem"]) == declared["mem_mb"] and minutes(job["Timelimit"]) == declared["runtime"]
    guard = config["train"]["length_guard"]
    for job in by_rule["check_sft_lengths"]:
        assert int(job["AllocCPUS"]) == guard["threads"] and mem_mb(job["ReqMem"]) == guard["mem_mb"]
        assert minutes(job["Timelimit"]) == guard["runtime"]


def test_the_tables_equal_a_local_run(slurm_run, demo_run):
    assert scores(slurm_run["workdir"]) == scores(demo_run)
    diagnostics = (slurm_run["workdir"] / "results" / "tables" / "diagnostics.md").read_text()
    assert "Tiny-GenRM (Verify Only)" in diagnostics and "Qwen" not in diagnostics  # the demo's judges only


def test_a_cancelled_judging_job_is_resubmitted_and_judges_only_its_missing_shards(slurm_run, local_slurm):
    assert slurm_run["cancelled"], "the judging job finished before it could be cancelled"
    jobs = [j for j in slurm_jobs(local_slurm, slurm_run["since"])
            if j["rule"] == "judge_rewardbench" and j["wildcards"] == CANCELLED_JUDGE]
    states = {j["JobID"]: j["State"].split()[0] for j in jobs}
    assert states[slurm_run["cancelled"]] == "CANCELLED" and list(states.values())[-1] == "COMPLETED"
    log = (slurm_run["workdir"] / "logs" / "judge_rewardbench" / f"{CANCELLED_JUDGE}.log").read_text()
    done = int(log.split(" done, ")[0].rsplit(" ", 1)[1])
    assert done >= 1 and f"{done} done, {5 - done} to judge" in log  # 276 examples in shards of 64
    assert log.count("written") == 5 - done
