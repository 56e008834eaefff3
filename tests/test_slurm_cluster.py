"""The local one-node Slurm cluster of ``cluster/local-slurm.sh``: it comes up, runs a job with the
resources asked for, records it in accounting (sacct), refuses a job no node can run, and goes down
leaving no daemon and no job process behind. The packages are installed when missing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from slurm_cluster import DAEMONS, cluster_status, daemon_pids, pid_alive, start_cluster, stop_cluster

pytestmark = pytest.mark.slurm


def test_node_is_idle_in_the_default_partition(local_slurm):
    node = local_slurm.node()
    assert node["State"] in ("IDLE", "MIXED")  # MIXED while another test's job still runs
    assert int(node["CPUTot"]) == os.cpu_count()
    assert local_slurm.run("sinfo", "-h", "-o", "%P %a").stdout.split() == ["debug*", "up"]
    # the conf that the snakemake job-step plugin's inner srun reads (it unsets SLURM_CONF)
    assert Path("/etc/slurm/slurm.conf").resolve() == Path(local_slurm.env["SLURM_CONF"]).resolve()


def test_job_completes_with_the_resources_it_asked_for(local_slurm, tmp_path):
    out = tmp_path / "hi.out"
    job = local_slurm.sbatch("--wrap", "echo hi", "-c", "1", "--mem", "100", "-t", "1", "-p", "debug",
                             "-o", str(out))
    row = local_slurm.wait_for_job(job)
    assert row == {"State": "COMPLETED", "AllocCPUS": "1", "ReqMem": "100M", "Timelimit": "00:01:00"}
    shown = local_slurm.run("sacct", "-j", job, "-X", "-n", "-o", "State,AllocCPUS,ReqMem,Timelimit").stdout
    assert shown.split() == ["COMPLETED", "1", "100M", "00:01:00"]
    assert out.read_text() == "hi\n"
    # finished jobs stay visible to squeue for a while (MinJobAge), as the executor plugin may ask it
    assert local_slurm.run("squeue", "-h", "-j", job, "-t", "all", "-o", "%T").stdout.strip() == "COMPLETED"


def test_a_job_can_have_the_whole_node(local_slurm):
    node = local_slurm.node()
    cpus, mem = int(node["CPUTot"]), int(node["RealMemory"])
    job = local_slurm.sbatch("--wrap", "nproc", "-c", str(cpus), "--mem", str(mem), "-t", "1", "-o", "/dev/null")
    row = local_slurm.wait_for_job(job)
    assert row["State"] == "COMPLETED" and row["AllocCPUS"] == str(cpus) and row["ReqMem"] == f"{mem}M"


def test_more_cpus_than_the_node_has_are_refused_at_submission(local_slurm):
    cpus = int(local_slurm.node()["CPUTot"])
    proc = local_slurm.run("sbatch", "--parsable", "--wrap", "echo never", "-c", str(cpus + 1), "--mem", "100",
                           "-t", "1", "-p", "debug", check=False)
    # EnforcePartLimits=ALL: sbatch fails at once, no job id, nothing left pending
    assert proc.returncode == 1 and not proc.stdout.strip()
    assert "More processors requested than permitted" in proc.stderr


def test_more_memory_than_the_node_has_is_refused_at_submission(local_slurm):
    mem = int(local_slurm.node()["RealMemory"])
    proc = local_slurm.run("sbatch", "--parsable", "--wrap", "echo never", "-c", "1", "--mem", str(mem + 1),
                           "-t", "1", "-p", "debug", check=False)
    assert proc.returncode == 1 and not proc.stdout.strip()
    assert "Requested node configuration is not available" in proc.stderr


def test_up_twice_changes_nothing(local_slurm):
    before = daemon_pids(local_slurm.state_dir)
    env = start_cluster(local_slurm.state_dir)
    assert env["SLURM_CONF"] == local_slurm.env["SLURM_CONF"]
    assert daemon_pids(local_slurm.state_dir) == before
    assert cluster_status(local_slurm.state_dir).returncode == 0


def job_processes(job_id: str) -> list[int]:
    """PIDs of processes that belong to a job (SLURM_JOB_ID in their environment)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"SLURM_JOB_ID={job_id}".encode() in env and pid_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def test_down_stops_every_daemon_and_up_resumes(local_slurm):
    """Last in this file: takes the session's cluster down and brings it back up."""
    state = local_slurm.state_dir
    pids = daemon_pids(state)
    assert set(pids) == set(DAEMONS) and all(pid_alive(pid) for pid in pids.values())
    # a job still running when the cluster goes down is cancelled, its processes end
    job = local_slurm.sbatch("--wrap", "sleep 300", "-c", "1", "--mem", "100", "-t", "10", "-o", "/dev/null")
    deadline = time.monotonic() + 60
    while not job_processes(job):
        assert time.monotonic() < deadline, "the sleep job never started"
        time.sleep(0.2)

    stop_cluster(state)
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert daemon_pids(state) == {}  # PID files removed
    assert job_processes(job) == []
    assert cluster_status(state).returncode == 3  # none running
    assert not Path("/etc/slurm/slurm.conf").is_symlink()
    stop_cluster(state)  # twice: nothing to do

    # up again on the same state: new daemons, the accounting database remembers the jobs
    env = start_cluster(state)
    assert env["SLURM_CONF"] == local_slurm.env["SLURM_CONF"]
    assert set(daemon_pids(state)) == set(DAEMONS)
    assert local_slurm.wait_for_job(job, fields=("State",))["State"].startswith("CANCELLED")
