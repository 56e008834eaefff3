"""Run one of OpenRLHF's training modules in a process that has no GPU.

Usage, in place of ``torchrun ... -m openrlhf.cli.train_sft <flags>``: one process on one node, or
under torchrun (one per node, started by srun), which sets the rank and the rendezvous::

    python -m genrm.train.openrlhf_cpu -m openrlhf.cli.train_sft <flags>
    torchrun ... -m genrm.train.openrlhf_cpu -m openrlhf.cli.train_sft <flags>

OpenRLHF 0.11.2 trains on CPU through DeepSpeed's CPU accelerator (gloo, bf16, PyTorch's sdpa
attention) once two things that assume a GPU are dealt with, in this process only:

* ``openrlhf/models/ring_attn_utils.py`` imports two ``flash_attn`` modules at module level,
  whatever the flags, and real flash-attn cannot be imported without CUDA: the folder
  ``cpu_shims`` beside this file, holding pure-PyTorch stand-ins for them, goes first on
  ``sys.path`` (it is on no other process's path: ``flash_attn`` stays unimportable elsewhere);
* three ``torch.cuda`` calls that OpenRLHF makes unconditionally become CPU no-ops
  (``patch_cuda_calls``), and only when CUDA is absent.

DeepSpeed itself, with its two CPU ops built in advance, lives in the folder ``openrlhf-cpu`` of
the environment (``make install`` links it to a per-user cache; requirements/openrlhf-cpu.txt),
which this launcher alone puts on its path: where DeepSpeed can be imported, accelerate imports it
(about 5 s) in every ``save_pretrained`` of every other job.

Everything else (model, loss, optimizer, collation, checkpoints, the saved model) is OpenRLHF's and
DeepSpeed's own: the module runs as ``python -m`` would run it, with the given flags. The flags
that a CPU job needs (``genrm.train.openrlhf.cpu_launch``) are the caller's business.

This is an explicit launcher, not a ``sitecustomize``: the ``python -m genrm openrlhf run`` wrapper
runs it like any other launch command and forwards SIGTERM to it.
"""

from __future__ import annotations

import os
import runpy
import socket
import sys
from pathlib import Path

SHIMS = Path(__file__).resolve().parent / "cpu_shims"
# DeepSpeed and its own small requirements, installed apart (requirements/openrlhf-cpu.txt; a link
# to the per-user cache folder that holds them, resolved so that DeepSpeed sees one path)
DEEPSPEED_DIR = (Path(sys.prefix) / "openrlhf-cpu").resolve()
MODULE_PREFIX = "openrlhf.cli."
USAGE = "usage: python -m genrm.train.openrlhf_cpu -m openrlhf.cli.<module> [flags...]"
# What torchrun would otherwise set for a one-process job; DS_ACCELERATOR=cpu makes DeepSpeed take
# its CPU accelerator (and the gloo backend) instead of guessing. MASTER_PORT: a free port, chosen
# when unset, so that several jobs on one machine do not meet on the same rendezvous.
ENV_DEFAULTS = {"DS_ACCELERATOR": "cpu", "MASTER_ADDR": "127.0.0.1", "RANK": "0", "WORLD_SIZE": "1",
                "LOCAL_RANK": "0"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def apply_env_defaults(environ=None) -> dict[str, str]:
    """Set the variables of ``ENV_DEFAULTS`` and ``MASTER_PORT`` that ``environ`` (os.environ)
    lacks; what the environment already sets wins. Returns the values set."""
    environ = os.environ if environ is None else environ
    wanted = dict(ENV_DEFAULTS)
    if "MASTER_PORT" not in environ:
        wanted["MASTER_PORT"] = str(free_port(environ.get("MASTER_ADDR", ENV_DEFAULTS["MASTER_ADDR"])))
    added = {key: value for key, value in wanted.items() if key not in environ}
    environ.update(added)
    return added


def add_shims(path: list[str] | None = None) -> None:
    """Put the stand-in ``flash_attn`` and the folder of DeepSpeed first on this process's import path."""
    path = sys.path if path is None else path
    for folder in (DEEPSPEED_DIR, SHIMS):
        if str(folder) not in path:
            path.insert(0, str(folder))


def _no_device_to_select(device) -> None:
    """torch.cuda.set_device without CUDA: there is one device, the CPU, already selected."""


def _nothing_to_wait_for(device=None) -> None:
    """torch.cuda.synchronize without CUDA: CPU operations are done when they return."""


class _CudaOnCpu:
    """``torch.cuda`` as OpenRLHF's strategy module sees it without CUDA: its current device is
    the CPU (``all_reduce`` and ``all_gather`` move every logged value there, every micro-step)."""

    def __getattr__(self, name):
        return getattr(_torch().cuda, name)

    @staticmethod
    def current_device():
        return _torch().device("cpu")


class _TorchOnCpu:
    """``torch`` with ``cuda`` replaced by ``_CudaOnCpu``, for the globals of one module."""

    cuda = _CudaOnCpu()

    def __getattr__(self, name):
        return getattr(_torch(), name)


def _torch():
    import torch

    return torch


def patch_cuda_calls() -> list[str]:
    """Make OpenRLHF's three unconditional CUDA calls CPU no-ops when CUDA is absent (on a GPU
    nothing changes). Returns what was patched.

    * ``torch.cuda.set_device(local_rank)``: OpenRLHF's ``DeepspeedStrategy.setup_distributed``,
      and torch's DeviceMesh for the ``"cuda"`` mesh that OpenRLHF creates whatever the device;
      replaced in ``torch.cuda`` (both call it there);
    * ``torch.cuda.synchronize()``: OpenRLHF's ``torch_dist_barrier_and_cuda_sync`` (on saving a
      model or a checkpoint), which imports torch inside the function; replaced in ``torch.cuda``;
    * ``torch.cuda.current_device()``: ``DeepspeedStrategy.all_reduce``/``all_gather``; replaced
      for that module alone (its ``torch`` global), since elsewhere it must stay an integer index.
    """
    torch = _torch()
    if torch.cuda.is_available():
        return []
    torch.cuda.set_device = _no_device_to_select
    torch.cuda.synchronize = _nothing_to_wait_for
    from openrlhf.utils.deepspeed import deepspeed as strategy

    strategy.torch = _TorchOnCpu()
    return ["torch.cuda.set_device", "torch.cuda.synchronize", f"{strategy.__name__}.torch.cuda.current_device"]


def parse_argv(argv: list[str]) -> tuple[str, list[str]]:
    """``-m openrlhf.cli.<module> flags...`` -> the module and its flags."""
    if len(argv) < 2 or argv[0] != "-m" or not argv[1].startswith(MODULE_PREFIX):
        raise SystemExit(USAGE)
    return argv[1], argv[2:]


def main(argv: list[str] | None = None) -> None:
    module, flags = parse_argv(sys.argv[1:] if argv is None else argv)
    added = apply_env_defaults()
    add_shims()
    patched = patch_cuda_calls()
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    # one write: the lines of several ranks that share a log stay whole
    sys.stderr.write(f"[genrm.train.openrlhf_cpu] {module} on CPU, rank {os.environ['RANK']} of "
                     f"{os.environ['WORLD_SIZE']} on node {node}; environment set: {added}; patched: {patched}\n")
    sys.stderr.flush()
    sys.argv = [module, *flags]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
