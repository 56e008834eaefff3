# Tables of every judge's scores (reproduced, beside the published figures), plots,
# the README section, and the Snakemake report (`snakemake --report report.html`).
report: "../report/workflow.rst"


rule tables:
    input:
        scores_of(JUDGES.values()),
    output:
        csv="results/tables/results.csv",
        md="results/tables/results.md",
        html=report(
            "results/tables/results.html",
            caption="../report/results.rst",
            category="1. Results",
            labels={"table": "reproduced"},
        ),
        comparison_md="results/tables/comparison.md",
        comparison_html=report(
            "results/tables/comparison.html",
            caption="../report/comparison.rst",
            category="1. Results",
            labels={"table": "reproduced vs published"},
        ),
        published_md="results/tables/published.md",
        published_html=report(
            "results/tables/published.html",
            caption="../report/published.rst",
            category="1. Results",
            labels={"table": "published reference"},
        ),
        coverage_md="results/tables/coverage.md",
        coverage_html=report(
            "results/tables/coverage.html",
            caption="../report/coverage.rst",
            category="3. Diagnostics",
            labels={"table": "examples judged"},
        ),
        comparison_fragment="results/tables/comparison.fragment.html",
        readme="results/tables/readme.md",
    params:
        judges=as_arg(table_rows(JUDGES.values())),
        out_dir=lambda w, output: os.path.dirname(output.csv),
    log:
        "logs/tables/tables.log",
    benchmark:
        "benchmarks/tables/tables.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm tables --config {params.judges} --scores {input}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule sft_table:
    input:
        expand("results/sft/{method}/stats.json", method=config["methods"]),
    output:
        md="results/tables/sft.md",
        html=report(
            "results/tables/sft.html",
            caption="../report/sft.rst",
            category="3. Diagnostics",
            labels={"table": "SFT rows"},
        ),
    log:
        "logs/sft_table/sft_table.log",
    benchmark:
        "benchmarks/sft_table/sft_table.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm report-tables sft --stats {input} --out-md {output.md} --out-html {output.html} > {log} 2>&1"


# The judging step's diagnostics table (rule diagnostics_table, Markdown) as a page of the report.
rule diagnostics_html:
    input:
        "results/tables/diagnostics.md",
    output:
        report(
            "results/tables/diagnostics.html",
            caption="../report/diagnostics.rst",
            category="3. Diagnostics",
            labels={"table": "position bias and reliability"},
        ),
    log:
        "logs/diagnostics_html/diagnostics_html.log",
    benchmark:
        "benchmarks/diagnostics_html/diagnostics_html.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm report-tables html --md {input} --title 'Judge diagnostics' --out {output} > {log} 2>&1"


rule plot_sections:
    input:
        scores_of(JUDGES.values()),
    output:
        report(
            "results/plots/sections.png",
            caption="../report/plot_sections.rst",
            category="2. Plots",
            subcategory="Overview",
            labels={"plot": "sections per judge"},
        ),
    params:
        judges=as_arg(table_rows(JUDGES.values())),
    log:
        "logs/plot_sections/plot_sections.log",
    benchmark:
        "benchmarks/plot_sections/plot_sections.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm plots sections --judges {params.judges} --scores {input} --out {output} > {log} 2>&1"


rule plot_heatmap:
    input:
        scores_of(JUDGES.values()),
    output:
        report(
            "results/plots/subset_heatmap.png",
            caption="../report/plot_heatmap.rst",
            category="2. Plots",
            subcategory="Overview",
            labels={"plot": "accuracy per subset"},
        ),
    params:
        judges=as_arg(table_rows(JUDGES.values())),
    log:
        "logs/plot_heatmap/plot_heatmap.log",
    benchmark:
        "benchmarks/plot_heatmap/plot_heatmap.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm plots heatmap --judges {params.judges} --scores {input} --out {output} > {log} 2>&1"


rule plot_genrm_vs_base:
    input:
        base=lambda w: f"results/eval/{genrm_pair(w.model, w.method)[0].name}/scores.json",
        genrm=lambda w: f"results/eval/{genrm_pair(w.model, w.method)[1].name}/scores.json",
    output:
        report(
            "results/plots/genrm_vs_base/{model}/{method}.png",
            caption="../report/plot_genrm_vs_base.rst",
            category="2. Plots",
            subcategory="GenRM vs its base model",
            labels={"plot": "GenRM vs base", "model": "{model}", "method": "{method}"},
        ),
    params:
        judges=lambda w: as_arg(table_rows(genrm_pair(w.model, w.method))),
    log:
        "logs/plot_genrm_vs_base/{model}/{method}.log",
    benchmark:
        "benchmarks/plot_genrm_vs_base/{model}/{method}.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm plots genrm-vs-base --judges {params.judges} --base {input.base}"
        " --genrm {input.genrm} --out {output} > {log} 2>&1"


# `snakemake --cores 1 readme`: rewrite the tables between the README's markers.
# It has no output file, so it runs whenever asked; a second run changes nothing.
rule readme:
    input:
        rules.tables.output.readme,
    log:
        "logs/readme/readme.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm readme --readme README.md --tables {input} 2>&1 | tee {log}"
