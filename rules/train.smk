# One training job per model x method: a GenRM (SFT; OpenRLHF train_sft or TRL SFTTrainer),
# or for method bt a Bradley-Terry reward model (OpenRLHF train_rm or TRL RewardTrainer).
# The backend (config train.backend; train.bt.backend for bt where set) is openrlhf on GPU
# clusters; the demo trains its GenRMs with trl and its Bradley-Terry model with openrlhf on
# CPU. What a job asks the scheduler for comes from the OpenRLHF preset of the model's size
# (with train.bt over it for bt), the launch command from genrm.train.openrlhf (both through
# genrm.workflow). The conda environment (--use-conda) of a job, by its backend:
TRAIN_ENVS = {"openrlhf": "../envs/train.yaml", "trl": "../envs/train-cpu.yaml"}


# OpenRLHF drops rows whose prompt does not fit max_len and cuts longer rows (both
# sides of a Bradley-Terry pair), silently: count them with each model's own tokenizer
# before any GPU is asked for.
rule check_sft_lengths:
    input:
        rows=lambda w: W.train_rows(w.method),
        model=P.MODEL.format(name="{model}"),
    output:
        P.LENGTHS,
    params:
        max_len=lambda w: gconfig.train_max_len(config, w.model, w.method),
        max_fraction=config["train"]["length_guard"]["max_fraction"],
        trainer=lambda w: gconfig.train_backend(config, w.method),
    threads: config["train"]["length_guard"]["threads"]
    resources:
        mem_mb=config["train"]["length_guard"]["mem_mb"],
        runtime=config["train"]["length_guard"]["runtime"],
    retries: 0  # the same rows fail the same way: no resubmission (profiles retry training)
    log:
        "logs/check_sft_lengths/{model}/{method}.log",
    benchmark:
        "benchmarks/check_sft_lengths/{model}/{method}.tsv"
    conda:
        lambda w: TRAIN_ENVS[gconfig.train_backend(config, w.method)]
    shell:
        "python -m genrm check-lengths --rows {input.rows} --model {input.model} --name {wildcards.model}"
        " --max-len {params.max_len} --max-fraction {params.max_fraction} --trainer {params.trainer}"
        " --out {output} > {log} 2>&1"


rule train_genrm:
    input:
        rows=lambda w: W.train_rows(w.method),
        model=P.MODEL.format(name="{model}"),
        lengths=P.LENGTHS,
    output:
        directory(P.TRAINED),
    params:
        # the settings alone: a change reruns the job (see rule judge_rewardbench)
        settings=lambda w: W.job_settings(config, model=w.model, method=w.method),
        # printed in full by `snakemake -n -p` (genrm.workflow.train_command)
        command=lambda w, input, output: W.train_command(
            config, w.model, w.method, input.model, input.rows, output[0]
        ),
    threads: lambda w: W.train_resources(config, w.model, w.method)["cpus_per_task"]
    resources:
        # gpu: GPUs of the whole job (sbatch --gpus); nodes; one task per node;
        # cpus_per_task and mem_mb per node; runtime in minutes; mpi: a multi-node
        # job whose shell starts its own srun (see genrm.train.openrlhf.job_resources).
        gpu=lambda w: W.train_resources(config, w.model, w.method)["gpu"],
        nodes=lambda w: W.train_resources(config, w.model, w.method)["nodes"],
        tasks=lambda w: W.train_resources(config, w.model, w.method)["tasks"],
        tasks_per_gpu=lambda w: W.train_resources(config, w.model, w.method)["tasks_per_gpu"],
        cpus_per_task=lambda w: W.train_resources(config, w.model, w.method)["cpus_per_task"],
        mem_mb=lambda w: W.train_resources(config, w.model, w.method)["mem_mb"],
        runtime=lambda w: W.train_resources(config, w.model, w.method)["runtime"],
        mpi=lambda w: W.train_resources(config, w.model, w.method)["mpi"],
    log:
        "logs/train_genrm/{model}/{method}.log",
    benchmark:
        "benchmarks/train_genrm/{model}/{method}.tsv"
    conda:
        lambda w: TRAIN_ENVS[gconfig.train_backend(config, w.method)]
    shell:
        "{params.command} > {log} 2>&1"
