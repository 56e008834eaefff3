# Tables of every judge's scores (reproduced, beside the published figures), plots,
# the README section, and the Snakemake report (`snakemake --report report.html`).
report: "../report/workflow.rst"


rule tables:
    input:
        scores_of(JUDGES.values()),
    output:
        csv=P.TABLE.format(file="results.csv"),
        md=P.TABLE.format(file="results.md"),
        html=report(
            P.TABLE.format(file="results.html"),
            caption="../report/results.rst",
            category="1. Results",
            labels={"table": "reproduced"},
        ),
        comparison_md=P.TABLE.format(file="comparison.md"),
        comparison_html=report(
            P.TABLE.format(file="comparison.html"),
            caption="../report/comparison.rst",
            category="1. Results",
            labels={"table": "reproduced vs published"},
        ),
        published_md=P.TABLE.format(file="published.md"),
        published_html=report(
            P.TABLE.format(file="published.html"),
            caption="../report/published.rst",
            category="1. Results",
            labels={"table": "published reference"},
        ),
        coverage_md=P.TABLE.format(file="coverage.md"),
        coverage_html=report(
            P.TABLE.format(file="coverage.html"),
            caption="../report/coverage.rst",
            category="3. Diagnostics",
            labels={"table": "examples judged"},
        ),
        comparison_fragment=P.TABLE.format(file="comparison.fragment.html"),
        readme=P.TABLE.format(file="readme.md"),
    params:
        judges=W.as_arg(W.table_rows(config, JUDGES.values())),
        out_dir=lambda w, output: os.path.dirname(output[0]),
    log:
        "logs/tables/tables.log",
    benchmark:
        "benchmarks/tables/tables.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm tables --judges {params.judges} --scores {input}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule sft_table:
    input:
        training_stats(),
    output:
        md=P.TABLE.format(file="sft.md"),
        html=report(
            P.TABLE.format(file="sft.html"),
            caption="../report/sft.rst",
            category="3. Diagnostics",
            labels={"table": "training rows"},
        ),
    params:
        out_dir=lambda w, output: os.path.dirname(output[0]),
    log:
        "logs/sft_table/sft_table.log",
    benchmark:
        "benchmarks/sft_table/sft_table.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm sft-table --stats {input} --out-dir {params.out_dir} > {log} 2>&1"


# Position bias and reliability of every judge in one table: unparsed rate, accuracy
# per order, position consistency, preference for A, shortened prompts, bootstrap CI.
rule diagnostics_table:
    input:
        scores_of(JUDGES.values()),
    output:
        md=P.TABLE.format(file="diagnostics.md"),
        html=report(
            P.TABLE.format(file="diagnostics.html"),
            caption="../report/diagnostics.rst",
            category="3. Diagnostics",
            labels={"table": "position bias and reliability"},
        ),
    params:
        judges=W.as_arg([W.table_row(j) for j in JUDGES.values()]),
        out_dir=lambda w, output: os.path.dirname(output[0]),
    log:
        "logs/diagnostics_table/diagnostics_table.log",
    benchmark:
        "benchmarks/diagnostics_table/diagnostics_table.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm diagnostics --judges {params.judges} --scores {input} --out-dir {params.out_dir} > {log} 2>&1"


rule plot_sections:
    input:
        scores_of(JUDGES.values()),
    output:
        report(
            P.PLOT_SECTIONS,
            caption="../report/plot_sections.rst",
            category="2. Plots",
            subcategory="Overview",
            labels={"plot": "sections per judge"},
        ),
    params:
        judges=W.as_arg(W.table_rows(config, JUDGES.values())),
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
            P.PLOT_HEATMAP,
            caption="../report/plot_heatmap.rst",
            category="2. Plots",
            subcategory="Overview",
            labels={"plot": "accuracy per subset"},
        ),
    params:
        judges=W.as_arg(W.table_rows(config, JUDGES.values())),
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
        lambda w: scores_of(W.genrm_pair(JUDGES, w.model, w.method)),
    output:
        report(
            P.PLOT_GENRM_VS_BASE,
            caption="../report/plot_genrm_vs_base.rst",
            category="2. Plots",
            subcategory="GenRM vs its base model",
            labels={"plot": "GenRM vs base (and Bradley-Terry)", "model": "{model}", "method": "{method}"},
        ),
    params:
        judges=lambda w: W.as_arg(W.table_rows(config, W.genrm_pair(JUDGES, w.model, w.method))),
    log:
        "logs/plot_genrm_vs_base/{model}/{method}.log",
    benchmark:
        "benchmarks/plot_genrm_vs_base/{model}/{method}.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm plots genrm-vs-base --judges {params.judges} --scores {input}"
        " --out {output} > {log} 2>&1"


# Each Bradley-Terry model trained here beside the GenRMs of the same base model, trained on
# the same pairs: Score and sections, and the difference GenRM - Bradley-Terry.
rule bt_table:
    input:
        scores_of(BT_JUDGES),
    output:
        md=P.BT_COMPARISON.format(ext="md"),
        html=report(
            P.BT_COMPARISON.format(ext="html"),
            caption="../report/bt_vs_genrm.rst",
            category="1. Results",
            labels={"table": "GenRM vs Bradley-Terry (same pairs)"},
        ),
    params:
        judges=W.as_arg([W.table_row(j) for j in BT_JUDGES]),
    log:
        "logs/bt_table/bt_table.log",
    benchmark:
        "benchmarks/bt_table/bt_table.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm bt-table --judges {params.judges} --scores {input}"
        " --out-md {output.md} --out-html {output.html} > {log} 2>&1"


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
