# Downloads run on the submitting (login) node: compute nodes often have no internet.


rule download_data:
    output:
        data=P.DATA,
        stats=P.DATA_STATS,
    params:
        source=lambda w: config["data"][w.kind]["source"],
        split=lambda w: config["data"][w.kind]["split"],
        seed=config["seed"],
        limit=lambda w: (
            f"--limit {config['data'][w.kind]['limit']}" if config["data"][w.kind]["limit"] else ""
        ),
    log:
        "logs/download_data/{kind}.log",
    benchmark:
        "benchmarks/download_data/{kind}.tsv"
    conda:
        "../envs/data.yaml"
    localrule: True
    shell:
        "python -m genrm download --kind {wildcards.kind} --source {params.source:q}"
        " --split {params.split:q} {params.limit} --seed {params.seed}"
        " --out {output.data} --stats {output.stats} > {log} 2>&1"


rule fetch_model:
    input:
        # A tiny model trains its tokenizer on the run's preference data.
        corpus=lambda w: [P.PREFERENCES] if gconfig.model_entry(config, w.name)["source"] == "tiny" else [],
    output:
        directory(P.MODEL),
    params:
        spec=lambda w: W.as_arg(gconfig.model_entry(config, w.name)),
        corpus=lambda w, input: f"--corpus {input.corpus[0]}" if input.corpus else "",
        classifier=lambda w: (
            "--classifier" if config["external_judges"].get(w.name, {}).get("type") == "classifier" else ""
        ),
    log:
        "logs/fetch_model/{name}.log",
    benchmark:
        "benchmarks/fetch_model/{name}.tsv"
    conda:
        "../envs/data.yaml"
    localrule: True
    shell:
        "python -m genrm fetch-model --spec {params.spec} {params.corpus} {params.classifier}"
        " --out {output} > {log} 2>&1"
