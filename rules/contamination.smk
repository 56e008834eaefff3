# Contamination check: training prompts against RewardBench prompts (exact match after
# normalisation, and shared long n-grams), reported per RewardBench subset. With
# contamination.drop on, the matched training rows are dropped before SFT (format_sft
# reads the decontaminated copy) and the number dropped is recorded.


rule check_contamination:
    input:
        preferences="resources/data/preferences.jsonl",
        rewardbench="resources/data/rewardbench.jsonl",
    output:
        report=report(
            "results/contamination/report.html",
            caption="../report/contamination.rst",
            category="4. Contamination",
            labels={"table": "per RewardBench subset"},
        ),
        md="results/contamination/report.md",
        csv="results/contamination/report.csv",
        summary="results/contamination/summary.json",
        matches="results/contamination/matches.jsonl",
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
        preferences="resources/data/preferences.jsonl",
        matches=rules.check_contamination.output.matches,
        summary=rules.check_contamination.output.summary,
    output:
        rows=temp("results/contamination/preferences.jsonl"),
        stats="results/contamination/dropped.json",
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
