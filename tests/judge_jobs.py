"""Several judging jobs in one process, each run as ``python -m genrm judge`` runs it
(``genrm.judge.job.judge``), for the real-engine tests (tests/test_vllm_engine.py).

    python tests/judge_jobs.py JOBS.json

JOBS.json is a list of ``{"model", "data", "out", "settings"}`` (settings: a ``JudgeSettings``
as a dictionary), with optional ``"judging"`` and ``"sample"``, and ``"expect_error"``: a job
that must fail with an error whose message contains that text (the message is written to
``out``; exit 1 if it does not fail so). The jobs run in order; the process prints one
``job <k> done in <s>s`` line per job.

Why one process: importing vLLM and starting its first engine takes 15-30 s on two cores,
a later engine in the same process about a second. Why not the test process itself:
an engine on a CPU changes its process for good (it replaces ``torch.set_num_threads``
with a no-op, puts its libraries into ``LD_PRELOAD`` for every later child process and
joins a ``torch.distributed`` group), which the other tests must not inherit.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    from genrm.config import JudgeSettings, from_dict
    from genrm.judge.job import judge

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with open(argv[0], encoding="utf-8") as f:
        jobs = json.load(f)
    for k, job in enumerate(jobs):
        start = time.perf_counter()
        try:
            judge(job["model"], job["data"], job["out"], from_dict(JudgeSettings, job["settings"], "settings"),
                  judging=job.get("judging"), sample=job.get("sample", 0))
        except Exception as error:
            if "expect_error" not in job or job["expect_error"] not in str(error):
                raise
            with open(job["out"], "w", encoding="utf-8") as f:
                f.write(str(error))
        else:
            if "expect_error" in job:
                print(f"job {k} did not fail with {job['expect_error']!r}", file=sys.stderr)
                return 1
        gc.collect()  # the job's engine and its KV cache
        print(f"job {k} done in {time.perf_counter() - start:.1f}s", flush=True)
    return 0


if __name__ == "__main__":  # guarded: an engine that spawns workers imports the main module again
    sys.exit(main(sys.argv[1:]))
