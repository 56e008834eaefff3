# Config validation, wildcard constraints and target lists: thin wrappers over genrm.
import json
import re
import shlex

from snakemake.exceptions import WorkflowError

import genrm.config as gconfig
import genrm.reference as greference

try:
    gconfig.validate(config)  # fills defaults; fails before any job starts
except gconfig.ConfigError as error:
    raise WorkflowError(str(error))

# Jobs run `python -m genrm` with the interpreter running Snakemake, from any
# working directory (see genrm.config.prepare_job_environment).
gconfig.prepare_job_environment(workflow.basedir)

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


_published_problems = greference.override_problems(config, list(JUDGES))
if _published_problems:
    raise WorkflowError("invalid configuration:\n  " + "\n  ".join(_published_problems))


def table_rows(judges):
    """The judges' identities in the tables, each with the published row it is compared with."""
    return [{**gconfig.table_row(j), "published": greference.published_key(config, j)} for j in judges]


def scores_of(judges):
    return [f"results/eval/{j.name}/scores.json" for j in judges]


def report_targets():
    """What all_targets() adds: every table, every plot, the contamination report."""
    return [
        *rules.tables.output,
        *rules.sft_table.output,
        *rules.diagnostics_html.output,
        *rules.plot_sections.output,
        *rules.plot_heatmap.output,
        *(f"results/plots/genrm_vs_base/{model}/{method}.png" for model, method in GENRMS),
        *contamination_targets(),
    ]


def genrm_pair(model, method):
    """(base judge, GenRM judge) of one trained GenRM."""
    return JUDGES[model], JUDGES[gconfig.genrm_name(model, method)]


def sft_preferences(wildcards=None):
    """The preference rows SFT is made from: decontaminated when contamination.drop is on."""
    if config["contamination"]["drop"]:
        return rules.decontaminate.output.rows
    return "resources/data/preferences.jsonl"


def contamination_targets():
    """What all_targets() adds: the report, and the record of dropped rows when dropping."""
    targets = [rules.check_contamination.output.report]
    if config["contamination"]["drop"]:
        targets.append(rules.decontaminate.output.stats)
    return targets


def all_targets():
    return [
        "results/tables/results.csv",
        "results/tables/results.md",
        *expand("results/sft/{method}/stats.json", method=config["methods"]),
        *report_targets(),
    ]
