# Contamination check: training prompts against RewardBench prompts (exact match after
# normalisation, and shared long n-grams), reported per RewardBench subset. With
# contamination.drop on, the matched training rows are dropped before SFT (format_sft
# reads the decontaminated copy) and the number dropped is recorded.


rule check_contamination:
    input:
        preferences=P.PREFERENCES,
        rewardbench=P.REWARDBENCH,
    output:
        report=report(
            P.CONTAMINATION.format(file="report.html"),
            caption="../report/contamination.rst",
            category="4. Contamination",
            labels={"table": "per RewardBench subset"},
        ),
        md=P.CONTAMINATION.format(file="report.md"),
        csv=P.CONTAMINATION.format(file="report.csv"),
        summary=P.CONTAMINATION.format(file="summary.json"),
        matches=P.CONTAMINATION.format(file="matches.jsonl"),
    params:
        ngram=config["contamination"]["ngram"],
        min_shared=config["contamination"]["min_shared_ngrams"],
        drop="--drop" if config["contamination"]["drop"] else "",
        out_dir=lambda w, output: os.path.dirname(output.summary),
    log:
        "logs/check_contamination/check_contamination.log",
    benchmark:
        "benchmarks/check_contamination/check_contamination.tsv"
    conda:
        "../envs/data.yaml"
    shell:
        "python -m genrm contamination check --preferences {input.preferences}"
        " --rewardbench {input.rewardbench} --ngram {params.ngram}"
        " --min-shared-ngrams {params.min_shared} {params.drop}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule decontaminate:
    input:
        preferences=P.PREFERENCES,
        matches=rules.check_contamination.output.matches,
        summary=rules.check_contamination.output.summary,
    output:
        rows=temp(P.CONTAMINATION.format(file="preferences.jsonl")),
        stats=P.CONTAMINATION.format(file="dropped.json"),
    log:
        "logs/decontaminate/decontaminate.log",
    benchmark:
        "benchmarks/decontaminate/decontaminate.tsv"
    conda:
        "../envs/data.yaml"
    shell:
        "python -m genrm contamination decontaminate --preferences {input.preferences}"
        " --matches {input.matches} --summary {input.summary}"
        " --out {output.rows} --stats {output.stats} > {log} 2>&1"
