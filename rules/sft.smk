# Preference pairs -> training rows: SFT rows per GenRM method, and the Bradley-Terry
# pairs of method bt (the same valid pairs, as OpenRLHF's reward-model rows).


rule format_sft:
    input:
        sft_preferences,  # rules/common.smk: decontaminated rows when contamination.drop is on
    output:
        rows=P.SFT_ROWS,
        stats=P.SFT_STATS,
    wildcard_constraints:
        method=_alternatives(W.sft_methods(config)) or "(?!)",
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


# The same validity filter (genrm.protocol.pair_problem) and, when on, the same
# decontamination as the SFT rows: a Bradley-Terry model and the GenRMs learn from the same pairs.
rule format_bt:
    input:
        sft_preferences,
    output:
        rows=P.BT_ROWS,
        stats=P.BT_STATS,
    params:
        method=gconfig.BT_METHOD,
    log:
        "logs/format_bt/format_bt.log",
    benchmark:
        "benchmarks/format_bt/format_bt.tsv"
    conda:
        "../envs/data.yaml"
    shell:
        "python -m genrm format-bt --preferences {input} --method {params.method}"
        " --out {output.rows} --stats {output.stats} > {log} 2>&1"
