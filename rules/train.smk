# One training job per model x method. The backend (config train.backend) is
# openrlhf on GPU clusters and trl on CPU (demo, tests).


rule train_genrm:
    input:
        rows="results/sft/{method}/rows.jsonl",
        model="resources/models/{model}",
    output:
        directory("results/models/{model}/{method}"),
    params:
        backend=config["train"]["backend"],
        settings=lambda w: as_arg(gconfig.train_settings(config, w.model)),
    threads: config["train"]["trl"]["threads"]
    log:
        "logs/train_genrm/{model}/{method}.log",
    benchmark:
        "benchmarks/train_genrm/{model}/{method}.tsv"
    conda:
        "../envs/train.yaml" if config["train"]["backend"] == "openrlhf" else "../envs/train-cpu.yaml"
    shell:
        "python -m genrm train --backend {params.backend} --model {input.model} --rows {input.rows}"
        " --settings {params.settings} --seed {config[seed]} --out {output} > {log} 2>&1"
