# Tables of every judge's scores, and the README section that shows them.


rule tables:
    input:
        expand("results/eval/{judge}/scores.json", judge=JUDGES),
    output:
        csv="results/tables/results.csv",
        md="results/tables/results.md",
    params:
        judges=as_arg([gconfig.table_row(j) for j in JUDGES.values()]),
    log:
        "logs/tables/tables.log",
    benchmark:
        "benchmarks/tables/tables.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m genrm tables --config {params.judges} --scores {input}"
        " --out-dir results/tables > {log} 2>&1"


# `snakemake --cores 1 readme`: rewrite the tables between the README's markers.
# It has no output file, so it runs whenever asked; a second run changes nothing.
rule readme:
    input:
        rules.tables.output.md,
    localrule: True
    shell:
        "python -m genrm readme --readme README.md --tables {input}"
