"""A real one-node Slurm cluster for tests, driven through ``cluster/local-slurm.sh``.

Not a test module: tests import from it::

    from slurm_cluster import local_slurm  # noqa: F401  (the session fixture)

    def test_something(local_slurm):
        job = local_slurm.sbatch("--wrap", "echo hi", "-c", "1", "--mem", "100", "-t", "1")
        assert local_slurm.wait_for_job(job)["State"] == "COMPLETED"

or without pytest::

    env = start_cluster(state_dir)   # installs the Debian packages if missing, then `up`
    subprocess.run(["sbatch", ...], env=env)
    stop_cluster(state_dir)          # `down`: every daemon stopped by its PID

The packages are installed when they are missing and can be (root with apt-get); the fixture skips
only where they cannot be. One cluster per machine at a time: its ports are fixed (6817-6820 unless
``LOCAL_SLURM_PORT_BASE`` says otherwise) and ``/etc/slurm/slurm.conf`` points at it while it is up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "cluster" / "local-slurm.sh"
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
PROGRAMS = (*DAEMONS, "sbatch", "sacct", "sacctmgr")
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
            "BOOT_FAIL", "DEADLINE"}


def _script(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def install_blocker() -> str | None:
    """Why the packages cannot be installed here, or None when they are present or can be installed."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    if all(shutil.which(program, path=path) for program in PROGRAMS):
        return None
    if not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        return "Slurm is not installed and this is not a Debian-like system with apt-get"
    if os.geteuid() != 0:
        return "Slurm is not installed and installing it needs root"
    return None


def ensure_installed() -> None:
    """``local-slurm.sh install``: apt-get the packages if missing (about 25 s), a no-op otherwise."""
    proc = _script("install")
    if proc.returncode != 0:
        raise RuntimeError(f"local-slurm.sh install failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def start_cluster(state_dir: str | Path, *, nodes: int = 1, port_base: int | None = None,
                  etc_link: bool | None = None) -> dict[str, str]:
    """Install if needed and bring the cluster up in ``state_dir``; the environment to run Slurm
    commands with (this process's environment plus ``SLURM_CONF``). Running it twice is harmless.

    ``nodes=2``: two nodes on this host, one slurmd each (``LOCAL_SLURM_NODES``); ``port_base``
    moves the cluster's ports (``LOCAL_SLURM_PORT_BASE``), so that it can run beside another;
    ``etc_link=False`` leaves ``/etc/slurm/slurm.conf`` to the other one (``LOCAL_SLURM_ETC_LINK``).
    ``port_base`` and ``etc_link`` left at None keep what the environment says."""
    ensure_installed()
    settings = {"LOCAL_SLURM_NODES": str(nodes)}
    if port_base is not None:
        settings["LOCAL_SLURM_PORT_BASE"] = str(port_base)
    if etc_link is not None:
        settings["LOCAL_SLURM_ETC_LINK"] = "1" if etc_link else "0"
    proc = _script("up", str(state_dir), timeout=300, env=settings)
    if proc.returncode != 0:
        raise RuntimeError(f"local-slurm.sh up {state_dir} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    extra = {}
    for line in proc.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            extra[key] = value
    assert "SLURM_CONF" in extra, proc.stdout
    return {**os.environ, **extra}


def stop_cluster(state_dir: str | Path) -> None:
    """``local-slurm.sh down``: cancel jobs, stop every daemon by the PID in its PID file."""
    proc = _script("down", str(state_dir), timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"local-slurm.sh down {state_dir} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def cluster_status(state_dir: str | Path) -> subprocess.CompletedProcess:
    """``local-slurm.sh status``: exit 0 when every daemon runs, 3 when none does, 1 otherwise."""
    return _script("status", str(state_dir), timeout=60)


def daemon_pids(state_dir: str | Path) -> dict[str, int]:
    """The PIDs in the cluster's PID files (daemons not started, or stopped, have none); a cluster
    of two nodes has a slurmd-<node> for each node in place of slurmd."""
    run = Path(state_dir) / "run"
    pids = {}
    for name in (*DAEMONS, *sorted(f.stem for f in run.glob("slurmd-*.pid"))):
        text = (run / f"{name}.pid").read_text().strip() if (run / f"{name}.pid").exists() else ""
        if text.isdigit():
            pids[name] = int(text)
    return pids


def pid_alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class SlurmCluster:
    """A running local cluster: its state folder and the environment for Slurm commands."""

    state_dir: Path
    env: dict[str, str] = field(repr=False)

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def sbatch(self, *args: str) -> str:
        """Submit with ``sbatch --parsable ARGS``; the job id."""
        return self.run("sbatch", "--parsable", *args).stdout.strip().split(";")[0]

    def nodes(self) -> list[str]:
        """The names of the cluster's nodes (``sinfo -N``)."""
        return self.run("sinfo", "-h", "-N", "-o", "%N").stdout.split()

    def node(self) -> dict[str, str]:
        """The node as ``scontrol show node`` reports it (NodeName, CPUTot, RealMemory, State, ...)."""
        out = self.run("scontrol", "show", "node", "-o").stdout.split()
        return dict(word.split("=", 1) for word in out if "=" in word)

    def sacct(self, job_id: str, fields: tuple[str, ...] = ("State", "AllocCPUS", "ReqMem", "Timelimit")
              ) -> dict[str, str]:
        """The job's allocation line in accounting (``sacct -X``), field name -> value ({} if not yet there)."""
        out = self.run("sacct", "-j", job_id, "-X", "-n", "-P", "-o", ",".join(fields)).stdout.strip()
        if not out:
            return {}
        return dict(zip(fields, out.splitlines()[0].split("|")))

    def wait_for_job(self, job_id: str, timeout: float = 120,
                     fields: tuple[str, ...] = ("State", "AllocCPUS", "ReqMem", "Timelimit")) -> dict[str, str]:
        """Poll sacct until the job has finished and its record is complete (right after the end sacct
        can show a state with the other fields still empty or unset); its fields."""
        deadline = time.monotonic() + timeout
        row: dict[str, str] = {}
        while time.monotonic() < deadline:
            row = self.sacct(job_id, fields)
            state = row.get("State", "").split()[0] if row.get("State") else ""
            if state in FINISHED and all(row.values()) and "?" not in row.get("ReqMem", ""):
                return row
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} not finished after {timeout}s: {row}")


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory) -> Iterator[SlurmCluster]:
    """A one-node cluster for the whole session (installed if needed, up in about 8 s, down at the end)."""
    reason = install_blocker()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm") / "state"
    env = start_cluster(state)
    try:
        yield SlurmCluster(state, env)
    finally:
        stop_cluster(state)
