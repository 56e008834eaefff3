"""``python -m genrm <step>``: the one command line (layer 4). Every Snakemake rule calls it.

Each step is a thin wrapper over a function of the package, so every step can be
run and tested without Snakemake. The same things have the same flags everywhere:
``--judges`` (JSON: the judges' table rows), ``--scores`` (their scores.json
files, same order), ``--settings`` (JSON: a job's resolved settings), ``--seed``,
``--out`` (one output file or directory) and ``--out-dir`` (a folder of outputs).

Exit status: 0 on success, 2 with a one-line ``error:`` message for bad input
(an invalid config, data or argument), 1 when a step fails otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

log = logging.getLogger("genrm")


class InputError(ValueError):
    """Bad input named on the command line."""


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"not valid JSON ({error}): {text[:80]}") from None


def _judges_and_scores(a) -> tuple[list[dict], list[str]]:
    judges = _json(a.judges)
    if len(judges) != len(a.scores):
        raise InputError(f"{len(judges)} judges but {len(a.scores)} score files")
    return judges, a.scores


# --- steps ----------------------------------------------------------------------------

def cmd_check_config(a):
    from genrm import config

    cfg = config.load(*a.config)
    print(f"{' + '.join(a.config)}: valid; judges: {', '.join(j.name for j in config.judges(cfg))}")


def cmd_download(a):
    from genrm.data.sources import download

    print(json.dumps(download(a.source, a.split, a.kind, a.out, a.stats, seed=a.seed, limit=a.limit), indent=2))


def cmd_fetch_model(a):
    from genrm.data.models import fetch_model

    fetch_model(_json(a.spec), a.out, corpus=a.corpus, classifier=a.classifier)


def cmd_contamination(a):
    from genrm import contamination

    if a.action == "check":
        result = contamination.check(a.preferences, a.rewardbench, a.out_dir, a.ngram, a.min_shared_ngrams, a.drop)
        result = {k: v for k, v in result.items() if k != "per_subset"}
    else:
        result = contamination.decontaminate(a.preferences, a.matches, a.summary, a.out, a.stats)
    print(json.dumps(result, indent=2))


def cmd_format_sft(a):
    from genrm.train.rows import format_sft

    print(json.dumps(format_sft(a.preferences, a.out, a.stats, a.method, a.correct_ratio, a.seed), indent=2))


def cmd_format_bt(a):
    from genrm.train.rows import format_bt

    print(json.dumps(format_bt(a.preferences, a.out, a.stats, a.method), indent=2))


def cmd_check_lengths(a):
    from genrm.train.lengths import check_lengths

    check_lengths(a.rows, a.model, a.max_len, a.max_fraction, a.out, a.name, a.trainer)


def cmd_train(a):
    from genrm.config import TrlSettings, from_dict
    from genrm.train.trl import train_trl, train_trl_bt

    train = train_trl_bt if a.objective == "bt" else train_trl
    train(a.model, a.rows, a.out, from_dict(TrlSettings, _json(a.settings), "--settings"), seed=a.seed)


def cmd_openrlhf(a):
    from genrm.train import openrlhf

    if a.action == "head-node":
        print(openrlhf.head_node())
    elif a.action == "run":
        launch = a.launch[1:] if a.launch[:1] == ["--"] else a.launch
        if not launch:
            raise InputError("openrlhf run: give the launch command after --")
        openrlhf.run(launch, a.out, a.staging, a.checkpoints, a.keep_checkpoints, record=_json(a.record))
    else:
        return _openrlhf_jobs(a)


def _openrlhf_jobs(a) -> int:
    """``show``: every training command and its resources; ``check``: parse each with the
    installed OpenRLHF's own parser of the command's module (train_sft, train_rm)."""
    from genrm import config, paths, workflow
    from genrm.train import openrlhf

    cfg = config.load(a.config)
    failed = 0
    for model, method in config.genrms(cfg):
        settings = config.openrlhf_settings(cfg, model, method)
        job = openrlhf.rule_job(settings, model=model, method=method, model_dir=paths.MODEL.format(name=model),
                                rows=workflow.train_rows(method),
                                out=paths.TRAINED.format(model=model, method=method), seed=cfg["seed"])
        if a.action == "show":
            print(f"# {model} x {method}: {json.dumps(openrlhf.job_resources(settings))}")
            print(job.shell_command() + "\n")
            continue
        try:
            openrlhf.check_command(job.launch, openrlhf.recover_parser(job.module, a.cli_dir))
            print(f"ok    {model} x {method}")
        except ValueError as error:
            failed += 1
            print(f"FAIL  {model} x {method}: {error}")
    return 1 if failed else 0


def cmd_judge(a):
    from genrm.config import JudgeSettings, from_dict
    from genrm.judge.job import judge

    judge(a.model, a.data, a.out, from_dict(JudgeSettings, _json(a.settings), "--settings"), judging=a.judging,
          sample=a.sample)


def cmd_score(a):
    from genrm.evaluate import score_predictions
    from genrm.io import read_json, read_jsonl, write_json

    greedy = None
    if a.greedy:
        greedy = {"rows": read_jsonl(a.greedy[0]), "judging": read_json(a.greedy[1])}
    scores = score_predictions(read_jsonl(a.predictions), judging=read_json(a.judging) if a.judging else None,
                               greedy=greedy)
    write_json(a.out, scores)
    print(json.dumps({k: scores[k] for k in ("score", "sections", "counts")}, indent=2))


def cmd_diagnostics(a):
    from genrm.report.tables import write_diagnostics_table

    print(write_diagnostics_table(*_judges_and_scores(a), os.path.join(a.out_dir, "diagnostics.md"),
                                  os.path.join(a.out_dir, "diagnostics.html")))


def cmd_tables(a):
    from genrm.report.tables import write_tables

    write_tables(*_judges_and_scores(a), a.out_dir)


def cmd_sft_table(a):
    from genrm.report.tables import write_sft_table

    write_sft_table(a.stats, os.path.join(a.out_dir, "sft.md"), os.path.join(a.out_dir, "sft.html"))


def cmd_plots(a):
    from genrm.io import read_json
    from genrm.report import plots

    judges, score_files = _judges_and_scores(a)
    scores = [read_json(p) for p in score_files]
    if a.plot == "sections":
        plots.plot_sections(judges, scores, a.out)
    elif a.plot == "heatmap":
        plots.plot_heatmap(judges, scores, a.out)
    else:
        if len(judges) not in (2, 3):
            raise InputError("genrm-vs-base: give the base judge, the GenRM and optionally the Bradley-Terry "
                             "model of the same base, in that order")
        plots.plot_genrm_vs_base(judges[0], scores[0], judges[1], scores[1], a.out,
                                 *((judges[2], scores[2]) if len(judges) == 3 else ()))
    print(f"wrote {a.out}")


def cmd_bt_table(a):
    from genrm.report.tables import write_bt_comparison

    print(write_bt_comparison(*_judges_and_scores(a), a.out_md, a.out_html))


def cmd_readme(a):
    from genrm.report.tables import update_readme

    changed = update_readme(a.readme, a.tables)
    print(f"{a.readme}: {'updated' if changed else 'already up to date'}")


# --- the parser tree ---------------------------------------------------------------------

def _judges_args(s) -> None:
    s.add_argument("--judges", required=True, help="JSON: the judges' table rows, in the order of --scores")
    s.add_argument("--scores", nargs="+", required=True, help="scores.json of each judge")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genrm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="STEP")

    s = sub.add_parser("check-config", help="validate a workflow config file (the check Snakemake runs)")
    s.add_argument("config", nargs="+", help="one file, or several merged in order as --configfile merges them")
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser("download", help="fetch a data source into JSON lines (malformed rows dropped, counted)")
    s.add_argument("--kind", choices=["preferences", "rewardbench"], required=True)
    s.add_argument("--source", required=True, help="a Hugging Face id, a .jsonl/.json/.parquet file, or demo:<kind>")
    s.add_argument("--split", required=True)
    s.add_argument("--limit", type=int, default=None, help="at most this many rows")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--stats", required=True)
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("fetch-model", help="download a model snapshot, link a local one, or build a tiny one")
    s.add_argument("--spec", required=True, help="JSON: the model's config entry")
    s.add_argument("--corpus", default=None, help="JSON lines to train a tiny model's tokenizer on")
    s.add_argument("--classifier", action="store_true", help="a sequence-classification (reward) model")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_fetch_model)

    s = sub.add_parser("contamination", help="training prompts against RewardBench prompts")
    actions = s.add_subparsers(dest="action", required=True)
    c = actions.add_parser("check", help="report the overlap per RewardBench subset")
    c.add_argument("--preferences", required=True)
    c.add_argument("--rewardbench", required=True)
    c.add_argument("--ngram", type=int, required=True)
    c.add_argument("--min-shared-ngrams", type=int, required=True)
    c.add_argument("--drop", action="store_true", help="(recorded in the report) rows will be dropped before SFT")
    c.add_argument("--out-dir", required=True)
    c = actions.add_parser("decontaminate", help="drop the matched training rows")
    c.add_argument("--preferences", required=True)
    c.add_argument("--matches", required=True)
    c.add_argument("--summary", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--stats", required=True)
    s.set_defaults(func=cmd_contamination)

    s = sub.add_parser("format-sft", help="preference pairs -> SFT rows of one method")
    s.add_argument("--preferences", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--correct-ratio", type=float, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--stats", required=True)
    s.set_defaults(func=cmd_format_sft)

    s = sub.add_parser("format-bt", help="preference pairs -> the Bradley-Terry rows of method bt")
    s.add_argument("--preferences", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--stats", required=True)
    s.set_defaults(func=cmd_format_bt)

    s = sub.add_parser("check-lengths", help="count the training rows (SFT or Bradley-Terry) a training job "
                                             "would not take whole")
    s.add_argument("--rows", required=True)
    s.add_argument("--model", required=True, help="a model directory with its tokenizer")
    s.add_argument("--name", default=None, help="the model's name in messages")
    s.add_argument("--max-len", type=int, required=True)
    s.add_argument("--max-fraction", type=float, required=True)
    s.add_argument("--trainer", choices=["openrlhf", "trl"], default="openrlhf",
                   help="the training job's backend: what it would do with the rows that do not fit")
    s.add_argument("--out", required=True, help="the report (JSON); written only when the check passes")
    s.set_defaults(func=cmd_check_lengths)

    s = sub.add_parser("train", help="train a GenRM or a Bradley-Terry model with TRL on CPU (GPU clusters: "
                                     "the openrlhf step)")
    s.add_argument("--objective", choices=["sft", "bt"], required=True,
                   help="sft: a GenRM (SFTTrainer); bt: a Bradley-Terry reward model (RewardTrainer)")
    s.add_argument("--model", required=True)
    s.add_argument("--rows", required=True)
    s.add_argument("--settings", required=True, help="JSON: the job's resolved TRL settings")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("openrlhf", help="OpenRLHF training jobs: run one, or show and check a config's commands")
    actions = s.add_subparsers(dest="action", required=True)
    c = actions.add_parser("run", help="run a launch command (after --) and move its model into --out")
    c.add_argument("--out", required=True)
    c.add_argument("--staging", required=True, help="the --ckpt.output_dir of the command")
    c.add_argument("--checkpoints", required=True, help="the --ckpt.path of the command")
    c.add_argument("--keep-checkpoints", action="store_true")
    c.add_argument("--record", required=True, help="JSON: what the model's genrm_training.json records")
    c.add_argument("launch", nargs=argparse.REMAINDER)
    actions.add_parser("head-node", help="print the first node of the SLURM allocation")
    c = actions.add_parser("show", help="print the command and resources of every training job of a config")
    c.add_argument("config")
    c = actions.add_parser("check", help="parse every training command of a config with the installed "
                                         "OpenRLHF's own parser of its module, train_sft or train_rm (no GPU "
                                         "needed)")
    c.add_argument("config")
    c.add_argument("--cli-dir", default=None, help="an openrlhf/cli folder (default: the installed one's)")
    s.set_defaults(func=cmd_openrlhf)

    s = sub.add_parser("judge", help="judge RewardBench with one model")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--settings", required=True, help="JSON: the judge's resolved settings")
    s.add_argument("--sample", type=int, default=0,
                   help="judge a sample of this many examples, drawn with the settings' seed (0: all)")
    s.add_argument("--out", required=True, help="predictions.jsonl")
    s.add_argument("--judging", default=None,
                   help="judging.json: how the predictions were produced (mode, backend, context used, shortened)")
    s.set_defaults(func=cmd_judge)

    s = sub.add_parser("score", help="predictions.jsonl -> scores.json (with diagnostics)")
    s.add_argument("--predictions", required=True)
    s.add_argument("--judging", default=None, help="the judging.json of the predictions (kept as `protocol`)")
    s.add_argument("--greedy", nargs=2, metavar=("SAMPLE", "JUDGING"), default=None,
                   help="a logprob judge's greedy verdicts on a sample and their judging.json: the agreement "
                        "of the two goes into the diagnostics")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("diagnostics", help="the judges' position-bias and reliability table (Markdown, HTML)")
    _judges_args(s)
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=cmd_diagnostics)

    s = sub.add_parser("tables", help="results.csv and the results tables (Markdown, HTML)")
    _judges_args(s)
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=cmd_tables)

    s = sub.add_parser("sft-table", help="the SFT rows of every method as one table")
    s.add_argument("--stats", nargs="+", required=True)
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=cmd_sft_table)

    s = sub.add_parser("plots", help="plots of the results (PNG)")
    s.add_argument("plot", choices=["sections", "heatmap", "genrm-vs-base"])
    _judges_args(s)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_plots)

    s = sub.add_parser("bt-table", help="each Bradley-Terry model beside the GenRMs of the same base, per "
                                        "section (Markdown, HTML)")
    _judges_args(s)
    s.add_argument("--out-md", required=True)
    s.add_argument("--out-html", required=True)
    s.set_defaults(func=cmd_bt_table)

    s = sub.add_parser("readme", help="rewrite the results tables between the README's markers")
    s.add_argument("--readme", required=True)
    s.add_argument("--tables", required=True, help="the Markdown file made by `tables`")
    s.set_defaults(func=cmd_readme)
    return p


def _exit_on_sigterm(signum, _frame):
    """A scheduler's SIGTERM (time limit, scancel) ends the step like Ctrl-C does: cleanup blocks
    run, so no half-written output is left behind."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    from genrm.config import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
        # ConfigError, DataError, InputError, LengthError and friends: bad input
        text = str(error).strip()
        if isinstance(error, ConfigError):
            text = text.replace(":\n  ", ": ").replace("\n  ", "; ")
        print(f"error: {' '.join(text.split())}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        log.error("%s", error)
        return 1
