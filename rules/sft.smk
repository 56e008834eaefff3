# Preference pairs -> SFT rows, one file per training method.


rule format_sft:
    input:
        sft_preferences,  # rules/common.smk: decontaminated rows when contamination.drop is on
    output:
        rows=P.SFT_ROWS,
        stats=P.SFT_STATS,
    params:
        ratio=lambda w: config["methods"][w.method]["correct_ratio"],
        seed=config["seed"],
    log:
        "logs/format_sft/{method}.log",
    benchmark:
        "benchmarks/format_sft/{method}.tsv"
    conda:
        "../envs/data.yaml"
    shell:
        "python -m genrm format-sft --preferences {input} --method {wildcards.method}"
        " --correct-ratio {params.ratio} --seed {params.seed}"
        " --out {output.rows} --stats {output.stats} > {log} 2>&1"
