# Config validation, wildcard constraints and target lists: thin wrappers over genrm.
import json
import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError

import genrm.config as gconfig

try:
    gconfig.validate(config)  # fills defaults; fails before any job starts
except gconfig.ConfigError as error:
    raise WorkflowError(str(error))

# Jobs run `python -m genrm` from the working directory, which need not be the
# repository: put the package on the import path of every job.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (workflow.basedir, os.environ.get("PYTHONPATH")) if p
)
# ... and let `python` in a job be the interpreter running Snakemake (a virtual
# environment need not be activated). With --sdm conda, the job's own environment
# is put in front of this.
os.environ["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", "")))

JUDGES = {j.name: j for j in gconfig.judges(config)}
GENRMS = gconfig.genrms(config)
FETCHED = list(config["models"]) + list(config["external_judges"])


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))


wildcard_constraints:
    judge=_alternatives(JUDGES),
    model=_alternatives(config["models"]),
    method=_alternatives(config["methods"]),
    name=_alternatives(FETCHED),
    kind="preferences|rewardbench",


def as_arg(obj):
    """A Python object as one shell-quoted JSON argument."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


def all_targets():
    return [
        "results/tables/results.csv",
        "results/tables/results.md",
        *expand("results/sft/{method}/stats.json", method=config["methods"]),
        *report_targets(),  # rules/report.smk: tables, plots, contamination report
    ]
