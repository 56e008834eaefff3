# GenRM: train generative reward models and score them on RewardBench.
# The DAG lives in rules/*.smk; what each step does lives in the genrm package.
from snakemake.utils import min_version

import genrm.workflow as W

min_version("9.0")


# The production config, found beside this Snakefile whatever the working directory, unless
# --replace-workflow-config replaced it (in this run and in every job it submits to a cluster).
if W.uses_workflow_config(workflow):

    configfile: f"{workflow.basedir}/workflow_config.yaml"



include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/contamination.smk"
include: "rules/sft.smk"
include: "rules/train.smk"
include: "rules/eval.smk"
include: "rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
