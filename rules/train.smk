# One training job per model x method. The backend (config train.backend) is
# openrlhf on GPU clusters and trl on CPU (demo, tests). What a job asks the
# scheduler for comes from the OpenRLHF preset of the model's size (see
# genrm.config.openrlhf_settings); the launch command from genrm.openrlhf.
import genrm.openrlhf as gopenrlhf

_train_problems = gconfig.openrlhf_problems(config)
if _train_problems:
    raise WorkflowError("invalid configuration:\n  " + "\n  ".join(_train_problems))

TRAIN_ENV = "../envs/train.yaml" if config["train"]["backend"] == "openrlhf" else "../envs/train-cpu.yaml"


def _train_resource(key):
    return lambda w: gconfig.train_resources(config, w.model)[key]


# OpenRLHF drops rows whose prompt does not fit max_len and cuts longer rows,
# silently: count them with each model's own tokenizer before any GPU is asked for.
rule check_sft_lengths:
    input:
        rows="results/sft/{method}/rows.jsonl",
        model="resources/models/{model}",
    output:
        "results/lengths/{model}/{method}.json",
    params:
        max_len=lambda w: gconfig.train_max_len(config, w.model),
        max_fraction=config["train"]["length_guard"]["max_fraction"],
    threads: config["train"]["length_guard"]["threads"]
    resources:
        mem_mb=16000,
        runtime=60,
    log:
        "logs/check_sft_lengths/{model}/{method}.log",
    benchmark:
        "benchmarks/check_sft_lengths/{model}/{method}.tsv"
    conda:
        TRAIN_ENV
    shell:
        "python -m genrm.lengths --rows {input.rows} --model {input.model} --name {wildcards.model}"
        " --max-len {params.max_len} --max-fraction {params.max_fraction} --out {output} > {log} 2>&1"


def train_command(wildcards, input, output):
    """The shell command of one training job (printed by `snakemake -n -p`)."""
    settings = gconfig.train_settings(config, wildcards.model)
    if config["train"]["backend"] == "openrlhf":
        job = gopenrlhf.rule_job(settings, model=wildcards.model, method=wildcards.method,
                                 model_dir=input.model, rows=input.rows, out=output[0], seed=config["seed"])
        return job.shell_command()
    return (
        f"python -m genrm train --backend trl --model {shlex.quote(input.model)}"
        f" --rows {shlex.quote(input.rows)} --settings {as_arg(settings)} --seed {config['seed']}"
        f" --out {shlex.quote(output[0])}"
    )


rule train_genrm:
    input:
        rows="results/sft/{method}/rows.jsonl",
        model="resources/models/{model}",
        lengths="results/lengths/{model}/{method}.json",
    output:
        directory("results/models/{model}/{method}"),
    params:
        command=train_command,
    threads: lambda w: gconfig.train_resources(config, w.model)["cpus_per_task"]
    resources:
        # gpu: GPUs of the whole job (sbatch --gpus); nodes; one task per node;
        # cpus_per_task and mem_mb per node; runtime in minutes; mpi: a multi-node
        # job whose shell starts its own srun (see genrm.openrlhf.job_resources).
        gpu=_train_resource("gpu"),
        nodes=_train_resource("nodes"),
        tasks=_train_resource("tasks"),
        tasks_per_gpu=_train_resource("tasks_per_gpu"),
        cpus_per_task=_train_resource("cpus_per_task"),
        mem_mb=_train_resource("mem_mb"),
        runtime=_train_resource("runtime"),
        mpi=_train_resource("mpi"),
    log:
        "logs/train_genrm/{model}/{method}.log",
    benchmark:
        "benchmarks/train_genrm/{model}/{method}.tsv"
    conda:
        TRAIN_ENV
    shell:
        "{params.command} > {log} 2>&1"
