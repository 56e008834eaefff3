"""The OpenRLHF launcher's multi-node path, run in a real Slurm allocation.

A cluster of two nodes on this machine (``cluster/local-slurm.sh`` with ``LOCAL_SLURM_NODES=2``:
two slurmd, one per node, on their own ports) runs batch jobs whose body is the launch line that
``genrm.train.openrlhf`` writes for a job of two nodes: ``srun`` starts one ``torchrun`` per node,
and the torchruns meet in a c10d rendezvous on the allocation's first node, which the batch shell
finds with ``$(python -m genrm openrlhf head-node)``.

* OpenRLHF itself: the job that ``rule_job`` builds for two nodes of one process each, in its CPU
  form (``cpu_job``: the same srun and torchruns, which start ``genrm.train.openrlhf_cpu``), run
  through its own wrapper (``Job.shell_command``): ``train_sft`` with world size 2 (gloo, ZeRO-2)
  trains a tiny model for two steps; each rank writes its own ZeRO shard of the optimizer states,
  and one model is saved.
* Two processes per node (world size 4): a stand-in module, ``tests/dist_check.py``, in place of
  OpenRLHF (four trainers on two cores would be slow): every process joins a ``gloo`` process group,
  checks its rank and world size, sums the ranks with ``all_reduce`` and writes one JSON line.

The two-node cluster has ports of its own (``PORT_BASE``) and leaves ``/etc/slurm/slurm.conf``
alone, so it can run beside the one-node cluster of the other Slurm tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import OPENRLHF_MODEL, OPENRLHF_SEED, steps, tensorboard_runs, tiny_openrlhf_settings
from genrm import config as gconfig
from genrm.train import openrlhf as gor
from slurm_cluster import SlurmCluster, install_blocker, start_cluster, stop_cluster

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parent.parent
DIST_CHECK = REPO / "tests" / "dist_check.py"
BIN = Path(sys.executable).parent  # the venv's python, torchrun: what the batch shell finds on its PATH
PORT_BASE = 6917  # slurmctld, slurmd (first node), slurmdbd, MariaDB, slurmd (second node): 6917-6921
REFUSAL = "a multi-node job must run inside a SLURM allocation"


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """A cluster of two nodes (one CPU and half the memory each) for this module."""
    reason = install_blocker()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm2") / "state"
    env = start_cluster(state, nodes=2, port_base=PORT_BASE, etc_link=False)
    try:
        cluster = SlurmCluster(state, env)
        assert len(cluster.nodes()) == 2, cluster.run("sinfo", "-N").stdout
        yield cluster
    finally:
        stop_cluster(state)


@pytest.fixture(scope="module")
def production():
    return gconfig.load(REPO / "workflow_config.yaml")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def without_slurm(env) -> dict[str, str]:
    """An environment outside any allocation: no SLURM_* variable but the configuration."""
    return {k: v for k, v in env.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}


def batch_script(path: Path, body: str, cwd: Path = REPO) -> Path:
    """A batch script that runs ``body`` in ``cwd`` (the repository) with the venv first on the PATH."""
    path.write_text(f"#!/bin/bash\nset -euo pipefail\ncd {cwd}\nexport PATH={BIN}:$PATH\n{body}\n")
    return path


def run_job(cluster: SlurmCluster, script: Path, log: Path, *sbatch_args: str, timeout: float = 300) -> str:
    """Submit ``script``, wait for it; the job id (the log is shown when the job did not complete)."""
    job = cluster.sbatch("-o", str(log), "-t", "5", *sbatch_args, str(script))
    row = cluster.wait_for_job(job, timeout=timeout, fields=("State", "ExitCode", "NodeList"))
    log_text = log.read_text() if log.exists() else "(no log)"
    assert row["State"] == "COMPLETED", f"job {job}: {row}\n{log_text}"
    return job


def key_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def assert_step_ran_on_every_node(cluster: SlurmCluster, job: str) -> None:
    """The job's first step (srun's) COMPLETED on every node of the cluster."""
    step = cluster.run("sacct", "-j", f"{job}.0", "-n", "-P", "-o", "State,NodeList").stdout.split()
    assert step and step[0].split("|")[0] == "COMPLETED", step
    hosts = cluster.run("scontrol", "show", "hostnames", step[0].split("|")[1]).stdout.split()
    assert sorted(hosts) == sorted(cluster.nodes())


class _Stub:
    """What a class of DeepSpeed's becomes in ``zero_shard``: its arguments, its state."""

    def __init__(self, *args):
        self.args = args


class _WithoutDeepSpeed(pickle.Unpickler):
    def find_class(self, module, name):
        return _Stub if module.partition(".")[0] == "deepspeed" else super().find_class(module, name)


def zero_shard(path: Path) -> dict:
    """The optimizer state of one rank in a DeepSpeed ZeRO checkpoint, read without DeepSpeed (which
    only the CPU launcher's processes can import): its own classes (the ZeRO stage enum, the loss
    scaler) become ``_Stub``s, so the stage reads ``.args == (2,)``."""
    import types

    import torch

    unpickler = types.SimpleNamespace(Unpickler=_WithoutDeepSpeed, load=pickle.load, __name__="pickle")
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=unpickler)["optimizer_state_dict"]


TRAIN_STEPS, BATCH = 2, 16  # two optimizer steps of the tiny preset's global batch


@pytest.mark.openrlhf
def test_multi_node_openrlhf_job_trains_in_a_real_allocation(two_nodes, tiny_model_dir, training_rows, tmp_path):
    """train_sft on two nodes, one process each: the job's own command (wrapper, srun, torchrun,
    the CPU launcher), in a batch job of the two-node cluster."""
    from transformers import AutoModelForCausalLM

    nodes = len(two_nodes.nodes())
    settings = tiny_openrlhf_settings("verify", tmp_path / "checkpoints", nodes=nodes, gpus_per_node=1,
                                      cpus_per_task=1, rdzv_port=free_port(), epochs=1, save_steps=TRAIN_STEPS,
                                      keep_checkpoints=True,
                                      max_samples=TRAIN_STEPS * BATCH)
    assert settings.zero_stage == 2 and settings.global_batch_size == BATCH
    out = tmp_path / "results" / "models" / OPENRLHF_MODEL / "verify"
    job = gor.cpu_job(gor.rule_job(settings, model=OPENRLHF_MODEL, method="verify", model_dir=str(tiny_model_dir),
                                   rows=str(training_rows["verify"]), out=str(out), seed=OPENRLHF_SEED))
    # the GPU job's srun and one torchrun per node, less the step's GPUs; torchrun starts the CPU launcher
    words = gor.launcher(settings, step_gpus=False)
    assert job.launch[:len(words) + 4] == (*words, "-m", gor.CPU_MODULE, "-m", gor.TRAIN_SFT)
    assert f"--rdzv-endpoint=$(python -m genrm openrlhf head-node):{settings.rdzv_port}" in words
    # the rule's relative TensorBoard folder goes under the batch job's working directory
    script = batch_script(tmp_path / "train.sh", job.shell_command(), cwd=tmp_path)
    log = tmp_path / "train.log"

    job_id = run_job(two_nodes, script, log, f"--nodes={nodes}", "--ntasks-per-node=1", "--cpus-per-task=1",
                     "--mem=3000")

    text = log.read_text()
    assert_step_ran_on_every_node(two_nodes, job_id)
    # one CPU launcher per node, ranks 0 and 1 of a world of 2, one on each node
    ranks = re.findall(r"openrlhf.cli.train_sft on CPU, rank (\d+) of (\d+) on node (\S+);", text)
    assert sorted((int(r), int(w)) for r, w, _ in ranks) == [(0, nodes), (1, nodes)], text[-3000:]
    assert sorted(node for *_, node in ranks) == sorted(two_nodes.nodes())
    # both ranks trained: ZeRO-2 over 2 ranks, each rank's own shard of the optimizer states took every step
    checkpoint = Path(job.checkpoints) / f"global_step{TRAIN_STEPS}"
    assert (Path(job.checkpoints) / "latest").read_text().strip() == checkpoint.name
    shards = sorted(checkpoint.glob("*zero_pp_rank_*_optim_states.pt"))
    assert [re.search(r"zero_pp_rank_(\d+)_", p.name).group(1) for p in shards] == ["0", "1"], shards
    for path in shards:
        shard = zero_shard(path)
        assert shard["zero_stage"].args == (2,) and set(shard["partition_count"]) == {nodes}
        assert [int(s["step"]) for s in shard["base_optimizer_state"]["state"].values()] \
            == [TRAIN_STEPS] * len(shard["partition_count"])
    # the loss, logged by rank 0 at every step
    (run,) = tensorboard_runs(job, tmp_path)
    assert steps(run, "train/gpt_loss") == list(range(1, TRAIN_STEPS + 1))
    # one model, moved into place by the wrapper; it loads
    assert "model saved to" in text
    assert sorted(p.parent for p in tmp_path.rglob("config.json")) == [out]
    assert not Path(job.staging).exists()
    # the launch as the batch shell expanded it: the rendezvous on the allocation's first node
    info = json.loads((out / "genrm_training.json").read_text())
    nodelist = two_nodes.sacct(job_id, ("NodeList",))["NodeList"]
    head = two_nodes.run("scontrol", "show", "hostnames", nodelist).stdout.split()[0]
    assert info["command"][0] == "srun" and gor.CPU_MODULE in info["command"]
    assert f"--rdzv-endpoint={head}:{settings.rdzv_port}" in info["command"]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "llama"


def test_multi_node_launch_of_two_processes_per_node_runs_in_a_real_allocation(two_nodes, production, tmp_path):
    """World size 4, with the stand-in module: OpenRLHF itself passes too (measured: 47 s, against
    12 s), but one process per node (the test above) already runs it through the same launcher."""
    nodes, gpus_per_node = len(two_nodes.nodes()), 2
    settings = dataclasses.replace(gconfig.openrlhf_settings(production, "qwen2.5-72b"), nodes=nodes,
                                   gpus_per_node=gpus_per_node, cpus_per_task=1, rdzv_port=free_port())
    # no --gpus-per-node on the srun step: this cluster has no GPUs (no GRES) and srun refuses it
    words = gor.launcher(settings, step_gpus=False)
    assert gor.launcher(settings) == [*words[:4], f"--gpus-per-node={gpus_per_node}", *words[4:]]
    assert words[0] == "srun" and "torchrun" in words
    assert f"--rdzv-endpoint=$(python -m genrm openrlhf head-node):{settings.rdzv_port}" in words
    out = tmp_path / "ranks.jsonl"
    # in place of `-m openrlhf.cli.train_sft <flags>`: the distributed check and its output file
    line = gor.shell_join([*words, str(DIST_CHECK), str(out)])
    script = batch_script(tmp_path / "launch.sh", line)

    job = run_job(two_nodes, script, tmp_path / "launch.log", f"--nodes={nodes}", "--ntasks-per-node=1",
                  "--cpus-per-task=1", "--mem=3000")

    rows = [json.loads(text) for text in out.read_text().splitlines()]
    world = nodes * gpus_per_node
    assert len(rows) == world, rows
    assert sorted(r["rank"] for r in rows) == list(range(world))
    assert {r["world_size"] for r in rows} == {world}
    assert {r["rank_sum"] for r in rows} == {world * (world - 1) // 2}
    assert all(r["ok"] for r in rows), [r["problems"] for r in rows]
    assert {r["slurm_job_id"] for r in rows} == {job}
    # one torchrun per node, each with gpus_per_node processes: local ranks 0..g-1 on every node
    assert {r["node"] for r in rows} == set(two_nodes.nodes())
    for node in two_nodes.nodes():
        assert sorted(r["local_rank"] for r in rows if r["node"] == node) == list(range(gpus_per_node))
    assert_step_ran_on_every_node(two_nodes, job)


def test_head_node_is_the_first_node_of_the_allocation(two_nodes, tmp_path):
    body = "\n".join([
        'echo "batch_node=$SLURMD_NODENAME"',
        'echo "first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        'echo "head=$(python -m genrm openrlhf head-node)"',
        # as in the Snakemake executor's job step, which keeps SLURM_JOB_ID only: read back with scontrol
        'echo "head_by_job_id=$(env -u SLURM_JOB_NODELIST -u SLURM_NODELIST python -m genrm openrlhf head-node)"',
    ])
    script = batch_script(tmp_path / "head.sh", body)
    log = tmp_path / "head.log"
    run_job(two_nodes, script, log, "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--mem=500")
    seen = key_values(log.read_text())
    assert seen["head"] in two_nodes.nodes()
    assert seen["head"] == seen["first"] == seen["batch_node"] == seen["head_by_job_id"], seen

    # an allocation on the node that is not named after this host: head-node names that node,
    # so it reads the allocation, not the host name
    other = next(n for n in two_nodes.nodes() if n != socket.gethostname())
    log = tmp_path / "other.log"
    run_job(two_nodes, script, log, "--nodes=1", f"--nodelist={other}", "--cpus-per-task=1", "--mem=500")
    seen = key_values(log.read_text())
    assert seen["head"] == seen["head_by_job_id"] == other != socket.gethostname()

    # outside an allocation: the host name
    proc = subprocess.run([sys.executable, "-m", "genrm", "openrlhf", "head-node"], capture_output=True,
                          text=True, cwd=REPO, env=without_slurm(two_nodes.env))
    assert proc.returncode == 0 and proc.stdout.strip() == socket.gethostname(), proc.stderr


def test_run_refuses_a_multi_node_launch_outside_an_allocation(production, tmp_path):
    settings = gconfig.openrlhf_settings(production, "qwen2.5-72b")
    assert settings.nodes > 1
    job = gor.rule_job(settings, model="qwen2.5-72b", method="verify", model_dir="resources/models/qwen2.5-72b",
                       rows="results/sft/verify/rows.jsonl", out=str(tmp_path / "model"), seed=0)
    assert job.launch[0] == "srun"
    # an srun that would leave a mark if it were started
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text(f"#!/bin/sh\ntouch {tmp_path / 'srun-ran'}\n")
    (fake / "srun").chmod(0o755)
    env = {**without_slurm(os.environ), "PATH": f"{fake}:{BIN}:{os.environ['PATH']}"}
    env.pop("SLURM_CONF", None)
    proc = subprocess.run(["bash", "-c", job.shell_command()], capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert REFUSAL in proc.stderr and "nodes to 1" in proc.stderr
    assert not (tmp_path / "srun-ran").exists()
    assert not (tmp_path / "model").exists() and not Path(job.staging).exists()
