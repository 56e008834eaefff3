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
        data="resources/data/rewardbench.jsonl",
        model=lambda w: gconfig.judge_model_dir(JUDGES[w.judge]),
    output:
        "results/eval/{judge}/predictions.jsonl",
    params:
        type=lambda w: JUDGES[w.judge].type,
        settings=lambda w: as_arg(gconfig.judge_settings(config, JUDGES[w.judge])),
    threads: config["judge"]["threads"]
    resources:
        # gpu: GPUs of the job (sbatch --gpus), the vLLM tensor parallel size of the
        # judge's size class; None on the transformers (CPU) backend.
        gpu=lambda w: gconfig.judge_resources(config, JUDGES[w.judge])["gpu"],
        cpus_per_task=lambda w: gconfig.judge_resources(config, JUDGES[w.judge])["cpus_per_task"],
        mem_mb=lambda w: gconfig.judge_resources(config, JUDGES[w.judge])["mem_mb"],
        runtime=lambda w: gconfig.judge_resources(config, JUDGES[w.judge])["runtime"],
    log:
        "logs/judge_rewardbench/{judge}.log",
    benchmark:
        "benchmarks/judge_rewardbench/{judge}.tsv"
    conda:
        EVAL_ENV
    shell:
        "python -m genrm judge --type {params.type} --model {input.model} --data {input.data}"
        " --settings {params.settings} --out {output} > {log} 2>&1"


rule score_judge:
    input:
        "results/eval/{judge}/predictions.jsonl",
    output:
        "results/eval/{judge}/scores.json",
    log:
        "logs/score_judge/{judge}.log",
    benchmark:
        "benchmarks/score_judge/{judge}.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm score --predictions {input} --out {output} > {log} 2>&1"


# Position bias and reliability of every judge in one table: unparsed rate, accuracy
# per order, position consistency, preference for A, shortened prompts, bootstrap CI.
rule diagnostics_table:
    input:
        expand("results/eval/{judge}/scores.json", judge=JUDGES),
    output:
        "results/tables/diagnostics.md",
    params:
        judges=as_arg([gconfig.table_row(j) for j in JUDGES.values()]),
    log:
        "logs/diagnostics_table/diagnostics_table.log",
    benchmark:
        "benchmarks/diagnostics_table/diagnostics_table.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm diagnostics --judges {params.judges} --scores {input} --out {output} > {log} 2>&1"
