"""``python -m genrm <subcommand>``: the one entry point every Snakemake rule calls.

Each subcommand is a thin wrapper over a function of the package, so every
step can be run and tested without Snakemake.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _json(text: str):
    return json.loads(text)


def cmd_check_config(a):
    from genrm import config

    cfg = config.load(a.config)
    print(f"{a.config}: valid; judges: {', '.join(j.name for j in config.judges(cfg))}")


def cmd_download(a):
    from genrm.data import download

    stats = download(a.source, a.split, a.kind, a.out, a.stats, seed=a.seed, limit=a.limit)
    print(json.dumps(stats, indent=2))


def cmd_fetch_model(a):
    from genrm.models import fetch_model

    fetch_model(_json(a.spec), a.out, corpus=a.corpus, classifier=a.classifier)


def cmd_format_sft(a):
    from genrm.sft import format_sft

    stats = format_sft(a.preferences, a.out, a.stats, a.method, a.correct_ratio, a.seed)
    print(json.dumps(stats, indent=2))


def cmd_train(a):
    from genrm.train import train

    train(a.backend, a.model, a.rows, a.out, _json(a.settings), seed=a.seed)


def cmd_judge(a):
    from genrm.judge import judge

    judge(a.type, a.model, a.data, a.out, _json(a.settings))


def cmd_score(a):
    from genrm.io import read_jsonl, write_json
    from genrm.scoring import score_predictions

    scores = score_predictions(read_jsonl(a.predictions))
    write_json(a.out, scores)
    print(json.dumps({k: scores[k] for k in ("score", "sections", "counts")}, indent=2))


def cmd_tables(a):
    from genrm.tables import write_tables

    write_tables(a.config, a.scores, a.out_dir)


def cmd_readme(a):
    from genrm.tables import update_readme

    changed = update_readme(a.readme, a.tables)
    print(f"{a.readme}: {'updated' if changed else 'already up to date'}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m genrm", description=__doc__,
        epilog="Also: " + ", ".join(MODULE_COMMANDS) + " (each with its own --help).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("check-config", help="validate a workflow config file")
    s.add_argument("config")
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser("download", help="fetch a data source into JSON lines")
    s.add_argument("--kind", choices=["preferences", "rewardbench"], required=True)
    s.add_argument("--source", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--limit", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--stats", required=True)
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("fetch-model", help="download a model snapshot, or build a tiny one")
    s.add_argument("--spec", required=True, help="JSON: the model's config entry")
    s.add_argument("--corpus", default=None, help="JSON lines to train a tiny model's tokenizer on")
    s.add_argument("--classifier", action="store_true", help="a sequence-classification (reward) model")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_fetch_model)

    s = sub.add_parser("format-sft", help="preference pairs -> SFT rows")
    s.add_argument("--preferences", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--correct-ratio", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--out", required=True)
    s.add_argument("--stats", required=True)
    s.set_defaults(func=cmd_format_sft)

    s = sub.add_parser("train", help="supervised fine-tuning of a GenRM")
    s.add_argument("--backend", choices=["trl", "openrlhf"], required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--rows", required=True)
    s.add_argument("--settings", required=True, help="JSON: the backend's settings")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("judge", help="judge RewardBench with one model")
    s.add_argument("--type", choices=["generative", "classifier"], required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--settings", required=True, help="JSON: judge settings")
    s.add_argument("--out", required=True, help="predictions.jsonl")
    s.set_defaults(func=cmd_judge)

    s = sub.add_parser("score", help="predictions.jsonl -> scores.json")
    s.add_argument("--predictions", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("tables", help="scores of every judge -> results.csv and Markdown tables")
    s.add_argument("--config", required=True, help="JSON: the judges' table rows")
    s.add_argument("--scores", nargs="+", required=True)
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=cmd_tables)

    s = sub.add_parser("readme", help="rewrite the results tables inside README.md")
    s.add_argument("--readme", required=True)
    s.add_argument("--tables", required=True, help="the Markdown file made by `tables`")
    s.set_defaults(func=cmd_readme)
    return p


# Steps whose module has a command line of its own: ``python -m genrm plots ...`` runs
# ``genrm.plots.main([...])``, so every rule calls the one entry point.
MODULE_COMMANDS = {
    "contamination": "genrm.contamination",
    "diagnostics": "genrm.diagnostics",
    "lengths": "genrm.lengths",
    "openrlhf": "genrm.openrlhf",
    "plots": "genrm.plots",
    "report-tables": "genrm.tables",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in MODULE_COMMANDS:
        import importlib

        return importlib.import_module(MODULE_COMMANDS[argv[0]]).main(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:  # DataError, ConfigError and friends
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
