# One judging job per judge (base model, trained GenRM or external), then scoring.


def judge_model(wildcards):
    judge = JUDGES[wildcards.judge]
    if judge.kind == "genrm":
        return f"results/models/{judge.model}/{judge.genrm_method}"
    return f"resources/models/{judge.model}"


rule judge_rewardbench:
    input:
        data="resources/data/rewardbench.jsonl",
        model=judge_model,
    output:
        "results/eval/{judge}/predictions.jsonl",
    params:
        type=lambda w: JUDGES[w.judge].type,
        settings=lambda w: as_arg(gconfig.judge_settings(config, JUDGES[w.judge])),
    threads: config["judge"]["threads"]
    log:
        "logs/judge_rewardbench/{judge}.log",
    benchmark:
        "benchmarks/judge_rewardbench/{judge}.tsv"
    conda:
        "../envs/eval.yaml"
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
