# One judging job per judge (base model, trained GenRM or external), then scoring
# and the diagnostics table. How a job judges (backend, mode per judge kind,
# tensor parallel size per size class, shards) comes from the `judge` block of the
# config, resolved by genrm.config.judge_settings; see docs/judging.md.

EVAL_ENV = "../envs/eval.yaml" if config["judge"]["backend"] == "vllm" else "../envs/eval-cpu.yaml"


# Resumable: finished shards are kept in results/eval/{judge}/predictions.jsonl.shards/
# (not a declared output, so Snakemake leaves it when a job fails); a rerun with the
# same model, data and settings judges only the missing shards. predictions.jsonl
# appears only when every shard is done.
rule judge_rewardbench:
    input:
        data=P.REWARDBENCH,
        model=lambda w: W.judge_model_dir(JUDGES[w.judge]),
    output:
        P.PREDICTIONS,
    params:
        # printed in full by `snakemake -n -p` (genrm.workflow.judge_command)
        command=lambda w, input, output: W.judge_command(config, JUDGES[w.judge], input.model, input.data, output[0]),
    threads: config["judge"]["threads"]
    resources:
        # gpu: GPUs of the job (sbatch --gpus), the vLLM tensor parallel size of the
        # judge's size class; None on the transformers (CPU) backend.
        gpu=lambda w: W.judge_resources(config, JUDGES[w.judge])["gpu"],
        cpus_per_task=lambda w: W.judge_resources(config, JUDGES[w.judge])["cpus_per_task"],
        mem_mb=lambda w: W.judge_resources(config, JUDGES[w.judge])["mem_mb"],
        runtime=lambda w: W.judge_resources(config, JUDGES[w.judge])["runtime"],
    log:
        "logs/judge_rewardbench/{judge}.log",
    benchmark:
        "benchmarks/judge_rewardbench/{judge}.tsv"
    conda:
        EVAL_ENV
    shell:
        "{params.command} > {log} 2>&1"


rule score_judge:
    input:
        P.PREDICTIONS,
    output:
        P.SCORES,
    log:
        "logs/score_judge/{judge}.log",
    benchmark:
        "benchmarks/score_judge/{judge}.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm score --predictions {input} --out {output} > {log} 2>&1"
