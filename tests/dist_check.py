"""A small distributed check that stands in for OpenRLHF in the launcher tests.

Started by torchrun (one per process, as ``torchrun ... tests/dist_check.py OUT`` or
``python -m``), it joins a ``gloo`` process group through the environment torchrun sets
(``MASTER_ADDR``/``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), checks that the
group agrees with that environment, sums the ranks with ``all_reduce`` (0 + 1 + ... + n-1 =
n(n-1)/2 when every process took part), and appends one JSON line per rank to OUT (the first
argument, else ``$DIST_CHECK_OUT``)::

    {"rank": 0, "world_size": 4, "local_rank": 0, "local_world_size": 2, "rank_sum": 6,
     "expected_sum": 6, "node": "vm", "hostname": "vm", "pid": 123, "problems": [], "ok": true}

``node`` is the Slurm node the process runs on (``SLURMD_NODENAME``; the host name outside
Slurm). Exit 0 when every check passed, 1 otherwise (the line is written either way, with
the problems), 2 on a usage error.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import timedelta


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None or not value.lstrip("-").isdigit():
        raise SystemExit(f"dist_check: ${name} is {value!r}; start me with torchrun")
    return int(value)


def append_line(path: str, row: dict) -> None:
    """One ``write`` of one line in append mode: lines of concurrent ranks do not interleave."""
    data = (json.dumps(row, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else os.environ.get("DIST_CHECK_OUT")
    if not out:
        print("usage: dist_check.py OUT (or DIST_CHECK_OUT=OUT)", file=sys.stderr)
        return 2
    rank, world, local_rank = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    local_world = _env_int("LOCAL_WORLD_SIZE")

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    try:
        problems = []
        if dist.get_rank() != rank:
            problems.append(f"dist.get_rank() {dist.get_rank()} != RANK {rank}")
        if dist.get_world_size() != world:
            problems.append(f"dist.get_world_size() {dist.get_world_size()} != WORLD_SIZE {world}")
        if not 0 <= local_rank < local_world:
            problems.append(f"LOCAL_RANK {local_rank} not in [0, LOCAL_WORLD_SIZE {local_world})")
        total = torch.tensor([rank], dtype=torch.int64)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        expected = world * (world - 1) // 2
        if int(total.item()) != expected:
            problems.append(f"all_reduce of the ranks gave {int(total.item())}, not {expected}")
        row = {"rank": rank, "world_size": world, "local_rank": local_rank, "local_world_size": local_world,
               "rank_sum": int(total.item()), "expected_sum": expected,
               "node": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
               "hostname": socket.gethostname(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
               "pid": os.getpid(), "problems": problems, "ok": not problems}
        append_line(out, row)
        dist.barrier()  # no rank leaves before every line is written
    finally:
        dist.destroy_process_group()
    if problems:
        print(f"dist_check rank {rank}: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
