# GenRM: train generative reward models and score them on RewardBench.
# The DAG lives in rules/*.smk; what each step does lives in the genrm package.
from snakemake.utils import min_version

min_version("9.0")


# Found beside this Snakefile, whatever the working directory (--directory).
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
