"""The DAG: production dry run, config errors before any job, the real
RewardBench file through download -> judge -> score, and the demo end to end."""

import dataclasses
import json
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from conftest import (
    DEMO_ARGS,
    EXAMPLE_COUNTS,
    REPO,
    SUBSET_MAPPING,
    job_counts,
    judge_settings,
    markdown_cells,
    snakemake,
    snakemake_command,
)
from genrm.evaluate import score_predictions
from genrm.io import read_json, read_jsonl, write_jsonl
from genrm.protocol import SUBSETS

PRODUCTION_JOBS = {"download_data": 2, "fetch_model": 7, "format_sft": 2, "format_bt": 1, "train_genrm": 7,
                   "judge_rewardbench": 14, "judge_greedy_sample": 6, "score_judge": 14, "tables": 1, "bt_table": 1,
                   "plot_genrm_vs_base": 6}


def test_production_dry_run_lists_every_job(tmp_path):
    proc = snakemake(["-n", "-p", "--cores", "8"], tmp_path)
    counts = job_counts(proc.stdout)
    for rule, n in PRODUCTION_JOBS.items():
        assert counts.get(rule) == n, (rule, counts)
    for model in ("llama3.1-8b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b"):
        assert f"results/models/{model}/verify" in proc.stdout
        assert f"results/eval/{model}/predictions.jsonl" in proc.stdout
        assert f"results/eval/{model}/judging.json" in proc.stdout
        assert f"results/eval/{model}__verify/greedy_sample.jsonl" in proc.stdout  # GenRMs: logprob mode
    assert "results/eval/qwen2.5-7b/greedy_sample.jsonl" not in proc.stdout  # base models: greedy already
    assert "results/models/llama3.1-8b/verify_correct" in proc.stdout
    # the published training context in every training command, the published judging context in every judge job
    commands = [line for line in proc.stdout.splitlines()
                if "openrlhf.cli.train_sft" in line or "openrlhf.cli.train_rm" in line]
    assert len(commands) == PRODUCTION_JOBS["train_genrm"]
    assert sum("openrlhf.cli.train_rm" in c for c in commands) == 1  # the Bradley-Terry model of LLaMA3.1-8B
    assert all(" --data.max_len 32768 " in c and " --train.micro_batch_size 1 " in c for c in commands)
    judging = [line for line in proc.stdout.splitlines() if "python -m genrm judge " in line]
    assert len(judging) == PRODUCTION_JOBS["judge_rewardbench"] + PRODUCTION_JOBS["judge_greedy_sample"]
    assert all('"max_model_len": 32768' in c and '"max_new_tokens": 1024' in c for c in judging)
    greedy = [c for c in judging if " --sample " in c]
    assert len(greedy) == 6 and all('"mode": "generate"' in c and " --sample 200 " in c for c in greedy)
    assert "results/models/llama3.1-8b/bt" in proc.stdout and "results/bt/rows.jsonl" in proc.stdout
    assert "results/models/qwen2.5-7b/bt" not in proc.stdout  # the Qwen sizes opt in


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda c: c["judge"].update(backend="sglang"), ["judge.backend", "'sglang'", "vllm, transformers"]),
        (lambda c: c["train"].update(epochz=3), ["train", "epochz", "allowed keys", "backend"]),
        (lambda c: c["genrms"].update({"qwen2.5-7b": ["verify_twice"]}), ["genrms.qwen2.5-7b", "verify_twice",
                                                                         "verify, verify_correct"]),
        (lambda c: c["models"]["qwen2.5-14b"].update(size="13b"), ["models.qwen2.5-14b.size", "14b"]),
    ],
)
def test_invalid_config_is_refused_before_any_job(tmp_path, change, expected):
    config = yaml.safe_load((REPO / "workflow_config.yaml").read_text())
    change(config)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake(["-n", "--configfile", str(bad), "--replace-workflow-config"], tmp_path, check=False)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    for text in expected:
        assert text in message, (text, message[-2000:])
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def stratified_sample(path: Path, per_subset: int, seed: int = 0) -> list[dict]:
    by_subset = defaultdict(list)
    for row in read_jsonl(path):
        by_subset[row["subset"]].append(row)
    rng = random.Random(seed)
    return [row for subset in SUBSETS for row in rng.sample(by_subset[subset], per_subset)]


def run_genrm(*args):
    proc = subprocess.run([sys.executable, "-m", "genrm", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_real_rewardbench_download_judge_score(rewardbench_file, tiny_model_dir, tiny_classifier_dir, tmp_path):
    """Tier 4: real RewardBench rows (5 per subset) through the real steps with tiny judges."""
    sample = tmp_path / "sample.jsonl"
    write_jsonl(sample, stratified_sample(rewardbench_file, 5))
    data, stats = tmp_path / "rb.jsonl", tmp_path / "rb.stats.json"
    run_genrm("download", "--kind", "rewardbench", "--source", str(sample), "--split", "filtered",
              "--seed", "0", "--out", str(data), "--stats", str(stats))
    assert read_json(stats)["rows_written"] == 115
    # A context far shorter than many RewardBench answers: prompts must be shortened, not dropped.
    for judge_type, model in (("generative", tiny_model_dir), ("classifier", tiny_classifier_dir)):
        settings = judge_settings("classifier" if judge_type == "classifier" else "generate", max_new_tokens=4,
                                  max_model_len=384, batch_size=16, threads=2)
        preds, scores = tmp_path / f"{judge_type}.jsonl", tmp_path / f"{judge_type}.scores.json"
        run_genrm("judge", "--model", str(model), "--data", str(data),
                  "--settings", json.dumps(dataclasses.asdict(settings)), "--out", str(preds))
        run_genrm("score", "--predictions", str(preds), "--out", str(scores))
        rows = read_jsonl(preds)
        assert len(rows) == 115 and {r["subset"] for r in rows} == set(SUBSETS)
        assert all(r["correct"] in (0.0, 0.25, 0.5, 0.75, 1.0) for r in rows)
        result = read_json(scores)
        assert result == json.loads(json.dumps(score_predictions(rows)))
        assert 0.0 <= result["score"] <= 1.0 and all(v is not None for v in result["sections"].values())
        if judge_type == "generative":
            assert any(r["shortened"] for r in rows)
            assert result["counts"]["unparsed_verdicts"] == sum(
                (r["verdict_chosen_a"] is None) + (r["verdict_chosen_b"] is None) for r in rows)


# --- the demo, end to end --------------------------------------------------------


def test_demo_tables_show_learning(demo_run):
    import csv

    with open(demo_run / "results" / "tables" / "results.csv") as f:
        rows = {(r["model"], r["method"]): r for r in csv.DictReader(f)}
    assert float(rows[("Tiny-Instruct", "LLM-as-a-Judge")]["score"]) <= 65
    assert float(rows[("Tiny-GenRM", "Verify Only")]["score"]) >= 85
    assert float(rows[("Tiny-GenRM", "Verify+Correct")]["score"]) >= 85
    # the Bradley-Terry model trained on the same pairs learns too; the untrained classifier does not
    assert float(rows[("Tiny-Instruct", "Bradley-Terry (ours)")]["score"]) >= 85
    assert float(rows[("Tiny-Reward (untrained)", "Bradley-Terry")]["score"]) <= 65
    assert rows[("Tiny-Instruct", "Bradley-Terry (ours)")]["judge"] == "tiny-instruct__bt"
    lines = (demo_run / "results" / "tables" / "results.md").read_text().splitlines()
    header = lines.index("#### Tiny") + 2
    assert markdown_cells(lines[header]) == ["Model", "Method", "Score", "Chat", "Chat Hard", "Safety", "Reasoning"]
    assert all(c.startswith(":-") and c.endswith("-:") for c in markdown_cells(lines[header + 1]))  # centred
    body = [markdown_cells(line)[:2] for line in lines[header + 2:] if line.startswith("|")]
    # trained here: bold; our GenRMs are judged in logprob mode: marked, and explained under the table
    assert body == [["Tiny-Instruct", "LLM-as-a-Judge ¶"], ["**Tiny-GenRM**", "**Verify Only ‡**"],
                    ["**Tiny-GenRM**", "**Verify+Correct ‡**"], ["**Tiny-Instruct**", "**Bradley-Terry (ours)**"],
                    ["Tiny-Reward (untrained)", "Bradley-Terry"]]
    assert any(line.startswith("‡ judged in logprob mode") for line in lines)


def test_demo_rows_say_how_they_were_judged(demo_run):
    """results.csv carries each row's protocol; each GenRM (logprob mode) was also judged greedily on
    a seeded sample of 200 examples, and the diagnostics show how often the two verdicts agree."""
    import csv

    with open(demo_run / "results" / "tables" / "results.csv") as f:
        rows = {r["judge"]: r for r in csv.DictReader(f)}
    protocol = {j: (r["protocol"], r["context"], r["shortened"], r["protocol_deviations"]) for j, r in rows.items()}
    assert protocol == {"tiny-instruct": ("generate", "1024", "0", "max_new_tokens"),
                        "tiny-instruct__verify": ("logprob", "1024", "0", "logprob"),
                        "tiny-instruct__verify_correct": ("logprob", "1024", "0", "logprob"),
                        "tiny-instruct__bt": ("bt", "1024", "0", ""),
                        "tiny-reward": ("classifier", "1024", "0", "")}
    diagnostics = (demo_run / "results" / "tables" / "diagnostics.md").read_text()
    for judge in ("tiny-instruct__verify", "tiny-instruct__verify_correct"):
        greedy = read_jsonl(demo_run / "results" / "eval" / judge / "greedy_sample.jsonl")
        assert len(greedy) == 200 and all(g["mode"] == "generate" for g in greedy)
        agreement = read_json(demo_run / "results" / "eval" / judge / "scores.json")["diagnostics"][
            "agreement_with_greedy"]
        assert agreement["examples"] == 200 and agreement["compared"] + agreement["unparsed_greedy"] == 400
        assert agreement["share"] >= 0.99 and float(rows[judge]["agreement_with_greedy"]) >= 0.99
        assert f"{100 * agreement['share']:.2f} ({agreement['agree']}/{agreement['compared']};" in diagnostics
    assert not (demo_run / "results" / "eval" / "tiny-instruct" / "greedy_sample.jsonl").exists()


def test_demo_compares_the_bradley_terry_model_with_its_genrm_siblings(demo_run):
    from genrm.protocol import SECTIONS

    text = (demo_run / "results" / "tables" / "bt_vs_genrm.md").read_text()
    assert "#### Tiny: Tiny-Instruct" in text and "difference (Verify+Correct - Bradley-Terry)" in text
    bt = read_json(demo_run / "results" / "eval" / "tiny-instruct__bt" / "scores.json")
    genrm = read_json(demo_run / "results" / "eval" / "tiny-instruct__verify" / "scores.json")
    diffs = [round(100 * genrm[k] - 100 * bt[k], 2) if k == "score" else
             round(100 * genrm["sections"][k] - 100 * bt["sections"][k], 2) for k in ("score", *SECTIONS)]
    row = next(line for line in text.splitlines() if "difference (Verify Only - Bradley-Terry)" in line)
    assert [float(c) for c in markdown_cells(row)[2:]] == pytest.approx(diffs, abs=0.011)
    stats = read_json(demo_run / "results" / "bt" / "stats.json")
    assert stats["pairs"] == 4000 and sum(stats["dropped"].values()) == 7  # the same pairs as the GenRMs
    # trained by OpenRLHF's own train_rm on CPU, on the first max_samples of those pairs
    training = read_json(demo_run / "results" / "models" / "tiny-instruct" / "bt" / "genrm_training.json")
    assert training["objective"] == "bt" and training["backend"] == "openrlhf"
    assert training["command"][:5] == ["python", "-m", "genrm.train.openrlhf_cpu", "-m", "openrlhf.cli.train_rm"]
    assert training["settings"]["max_samples"] == 480 < stats["pairs"] and not training["resumed_from_checkpoint"]
    log = (demo_run / "logs" / "train_genrm" / "tiny-instruct" / "bt.log").read_text(errors="replace")
    assert "Train step of epoch 0: 100%" in log and "acc=1" in log  # OpenRLHF's own progress, 30 steps
    assert "DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op" in log  # DeepSpeed's own, loading its CPU op
    assert (demo_run / "results" / "plots" / "genrm_vs_base" / "tiny-instruct" / "verify.png").is_file()
    assert not (demo_run / "results" / "plots" / "genrm_vs_base" / "tiny-instruct" / "bt.png").exists()


def official_scores(predictions: list[dict]) -> tuple[dict, float]:
    """Sections and Score recomputed from the prediction rows with RewardBench's constants
    (conftest), independently of genrm.evaluate: each example's score from its verdicts."""
    per_subset = defaultdict(list)
    for p in predictions:
        if p["mode"] == "classifier":
            chosen, rejected = p["reward_chosen"], p["reward_rejected"]
            won = 1.0 if chosen > rejected else 0.0 if chosen < rejected else 0.5
        else:
            orders = [0.5 if v is None else float(v == want)
                      for v, want in ((p["verdict_chosen_a"], "A"), (p["verdict_chosen_b"], "B"))]
            won = sum(orders) / 2
        per_subset[p["subset"]].append(won)
    acc = {s: sum(v) / len(v) for s, v in per_subset.items()}
    sections = {sec: sum(acc[s] * EXAMPLE_COUNTS[s] for s in subs) / sum(EXAMPLE_COUNTS[s] for s in subs)
                for sec, subs in SUBSET_MAPPING.items()}
    return sections, sum(sections.values()) / 4


def test_demo_scores_match_official_weighting(demo_run):
    import csv

    with open(demo_run / "results" / "tables" / "results.csv") as f:
        table = {r["judge"]: r for r in csv.DictReader(f)}
    files = sorted((demo_run / "results" / "eval").glob("*/scores.json"))
    assert {f.parent.name for f in files} == set(table) and len(files) == 5
    for scores_file in files:
        predictions = read_jsonl(scores_file.parent / "predictions.jsonl")
        sections, score = official_scores(predictions)
        stored = read_json(scores_file)
        assert stored["sections"] == pytest.approx(sections, abs=1e-12)
        assert stored["score"] == pytest.approx(score, abs=1e-12)
        assert float(table[scores_file.parent.name]["score"]) == round(100 * score, 2)
        assert stored["counts"]["examples"] == len(predictions) == 23 * 12


def test_demo_format_stats_count_malformed_rows(demo_run):
    stats = read_json(demo_run / "results" / "sft" / "verify_correct" / "stats.json")
    assert sum(stats["dropped"].values()) == 7 and stats["judge_rows"] == 4000
    assert stats["correct_rows"] > 0 and 0.45 < stats["fraction_chosen_at_a"] < 0.55


def test_demo_rerun_does_nothing(demo_run):
    proc = snakemake(["-n", *DEMO_ARGS], demo_run)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_interrupted_training_resumes_without_redoing_finished_jobs(demo_copy):
    """Kill the run during a training job: no output that looks complete is left, and the rerun
    redoes that job and what it feeds into, nothing else. The job is the Bradley-Terry model's
    (OpenRLHF's train_rm on CPU), the demo's shortest training, and the target the results table
    it feeds."""
    import os
    import shutil

    demo_run = demo_copy
    target = "results/tables/results.csv"
    # The state of a run stopped before this model was trained: its model and everything
    # downstream of it are missing.
    model = demo_run / "results" / "models" / "tiny-instruct" / "bt"
    for path in (model, demo_run / "results" / "eval" / "tiny-instruct__bt", demo_run / "results" / "tables"):
        shutil.rmtree(path)
    log = demo_run / "logs" / "train_genrm" / "tiny-instruct" / "bt.log"
    log.unlink()
    cmd = snakemake_command(["--cores", "2", *DEMO_ARGS, target], demo_run)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (log.exists() and "loss=" in log.read_text(errors="replace")):
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            time.sleep(0.05)
        assert log.exists(), "training never started"
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does to the whole run
        first = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, first[-2000:]
    assert "model saved to" not in log.read_text(errors="replace"), "training finished before it was killed"
    assert not model.exists(), "a killed training job left its output directory in place"
    leftovers = [*model.parent.glob(f"{model.name}.*"), *model.parent.glob(f".{model.name}*")]  # bt.partial
    assert not leftovers, "a killed training job left a partial directory"
    assert not (demo_run / target).exists()
    rerun = snakemake(["--cores", "2", "--rerun-incomplete", *DEMO_ARGS, target], demo_run)
    counts = job_counts(rerun.stdout + rerun.stderr)
    assert counts == {"train_genrm": 1, "judge_rewardbench": 1, "score_judge": 1, "tables": 1}, counts
    assert (model / "config.json").exists()
    assert (demo_run / target).exists()
