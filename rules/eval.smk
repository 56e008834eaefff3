# One judging job per judge (base model, trained GenRM or external), then scoring
# and the diagnostics table. How a job judges (backend, mode per judge kind,
# tensor parallel size per size class, shards) comes from the `judge` block of the
# config, resolved by genrm.config.judge_settings; see docs/judging.md.

EVAL_ENV = "../envs/eval.yaml" if config["judge"]["backend"] == "vllm" else "../envs/eval-cpu.yaml"


# Resumable: finished shards are kept in results/eval/{judge}/predictions.jsonl.shards/
# (not a declared output, so Snakemake leaves it when a job fails); a rerun with the
# same model, data and settings judges only the missing shards. predictions.jsonl
# appears only when every shard is done, with judging.json beside it: how the
# predictions were produced (mode, backend, the context used, shortened examples).
rule judge_rewardbench:
    input:
        data=P.REWARDBENCH,
        model=lambda w: W.judge_model_dir(JUDGES[w.judge]),
    output:
        predictions=P.PREDICTIONS,
        judging=P.JUDGING,
    params:
        # the settings alone: a change reruns the job (Snakemake ignores changes of params
        # computed from paths, as the command is)
        settings=lambda w: W.job_settings(config, JUDGES[w.judge]),
        # printed in full by `snakemake -n -p` (genrm.workflow.judge_command)
        command=lambda w, input, output: W.judge_command(
            config, JUDGES[w.judge], input.model, input.data, output.predictions, output.judging
        ),
    threads: config["judge"]["threads"]
    resources:
        # gpu: GPUs of the job (sbatch --gpus), the vLLM tensor parallel size of the
        # judge's size class; None on the transformers (CPU) backend.
        gpu=lambda w: W.judge_resources(config, JUDGES[w.judge])["gpu"],
        cpus_per_task=lambda w: W.judge_resources(config, JUDGES[w.judge])["cpus_per_task"],
        mem_mb=lambda w: W.judge_resources(config, JUDGES[w.judge])["mem_mb"],
        runtime=lambda w: W.judge_resources(config, JUDGES[w.judge])["runtime"],
    log:
        "logs/judge_rewardbench/{judge}.log",
    benchmark:
        "benchmarks/judge_rewardbench/{judge}.tsv"
    conda:
        EVAL_ENV
    shell:
        "{params.command} > {log} 2>&1"


# A judge judged in logprob mode (our GenRMs) judges a seeded sample of
# judge.agreement_sample examples again by greedy decoding, the published protocol, with
# the same backend and settings; scoring reports how often the two verdicts agree.
rule judge_greedy_sample:
    input:
        data=P.REWARDBENCH,
        model=lambda w: W.judge_model_dir(JUDGES[w.judge]),
    output:
        sample=P.GREEDY_SAMPLE,
        judging=P.GREEDY_JUDGING,
    params:
        settings=lambda w: W.job_settings(config, JUDGES[w.judge]),
        command=lambda w, input, output: W.greedy_sample_command(
            config, JUDGES[w.judge], input.model, input.data, output.sample, output.judging
        ),
    threads: config["judge"]["threads"]
    resources:
        # the resources of the judge's own judging job (GPUs: its tensor parallel size)
        gpu=lambda w: W.judge_resources(config, JUDGES[w.judge])["gpu"],
        cpus_per_task=lambda w: W.judge_resources(config, JUDGES[w.judge])["cpus_per_task"],
        mem_mb=lambda w: W.judge_resources(config, JUDGES[w.judge])["mem_mb"],
        runtime=lambda w: W.judge_resources(config, JUDGES[w.judge])["runtime"],
    log:
        "logs/judge_greedy_sample/{judge}.log",
    benchmark:
        "benchmarks/judge_greedy_sample/{judge}.tsv"
    conda:
        EVAL_ENV
    shell:
        "{params.command} > {log} 2>&1"


rule score_judge:
    input:
        unpack(lambda w: W.score_inputs(config, JUDGES[w.judge])),
    output:
        P.SCORES,
    params:
        command=lambda w, input, output: W.score_command(dict(input.items()), output[0]),
    log:
        "logs/score_judge/{judge}.log",
    benchmark:
        "benchmarks/score_judge/{judge}.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "{params.command} > {log} 2>&1"
