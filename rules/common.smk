# Config validation, wildcard constraints and target lists: thin wrappers over genrm.
import re

from snakemake.exceptions import WorkflowError

import genrm.config as gconfig
import genrm.paths as P
import genrm.workflow as W

try:
    gconfig.validate(config)  # the check of `python -m genrm check-config`; fills defaults
except gconfig.ConfigError as error:
    raise WorkflowError(str(error))

# Jobs run `python -m genrm` with the interpreter running Snakemake, from any
# working directory (see genrm.workflow.prepare_job_environment).
W.prepare_job_environment(workflow.basedir)

JUDGES = {j.name: j for j in gconfig.judges(config)}
GENRMS = gconfig.genrms(config)
# The GenRM vs Bradley-Terry comparison: each Bradley-Terry model with the GenRMs of its base.
BT_JUDGES = W.bt_groups(list(JUDGES.values()))
FETCHED = list(config["models"]) + list(config["external_judges"])


onstart:
    # Submitting to a cluster: a job that asks for more than any node has would wait in the
    # queue forever where the cluster does not refuse it. Refuse the run before any job starts.
    if workflow.non_local_exec and not workflow.remote_exec:
        _beyond = W.jobs_no_slurm_node_can_run(workflow.dag.needrun_jobs())
        if _beyond:
            raise WorkflowError("jobs that no node of this cluster can run:\n  " + "\n  ".join(_beyond))


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))


wildcard_constraints:
    judge=_alternatives(JUDGES),
    model=_alternatives(config["models"]),
    method=_alternatives(config["methods"]),
    name=_alternatives(FETCHED),
    kind="preferences|rewardbench",


def scores_of(judges):
    return [P.SCORES.format(judge=j.name) for j in judges]


def report_targets():
    """What all_targets() adds: every table, every plot, the contamination report."""
    return [
        *rules.tables.output,
        *rules.sft_table.output,
        *rules.diagnostics_table.output,
        *rules.plot_sections.output,
        *rules.plot_heatmap.output,
        *(P.PLOT_GENRM_VS_BASE.format(model=model, method=method) for model, method in GENRMS
          if gconfig.objective(method) == "sft"),
        *(rules.bt_table.output if BT_JUDGES else []),
        *contamination_targets(),
    ]


def training_stats():
    """The stats.json of every training rows file: per GenRM method, and the Bradley-Terry pairs."""
    stats = expand(P.SFT_STATS, method=W.sft_methods(config))
    return stats + ([P.BT_STATS] if gconfig.BT_METHOD in config["methods"] else [])


def sft_preferences(wildcards=None):
    """The preference rows SFT is made from: decontaminated when contamination.drop is on."""
    if config["contamination"]["drop"]:
        return rules.decontaminate.output.rows
    return P.PREFERENCES


def contamination_targets():
    """What all_targets() adds: the report, and the record of dropped rows when dropping."""
    targets = [rules.check_contamination.output.report]
    if config["contamination"]["drop"]:
        targets.append(rules.decontaminate.output.stats)
    return targets


def all_targets():
    return [
        *rules.tables.output,
        *training_stats(),
        *report_targets(),
    ]
