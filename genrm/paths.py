"""Where every output lives (layer 0): the path templates of the DAG, written once.

The rule files use them as input and output patterns (``{wildcard}`` fields are
Snakemake wildcards); the package fills them with ``str.format``. Paths are
relative to the working directory of the run.
"""

from __future__ import annotations

# downloads and fetched models (local rules: compute nodes often have no internet)
DATA = "resources/data/{kind}.jsonl"
DATA_STATS = "resources/data/{kind}.stats.json"
PREFERENCES = DATA.format(kind="preferences")
REWARDBENCH = DATA.format(kind="rewardbench")
MODEL = "resources/models/{name}"

# contamination check and the decontaminated preference rows
CONTAMINATION = "results/contamination/{file}"

# SFT rows per GenRM method, the Bradley-Terry pairs (method bt), the length guard per
# model x method, trained GenRMs and Bradley-Terry models
SFT_ROWS = "results/sft/{method}/rows.jsonl"
SFT_STATS = "results/sft/{method}/stats.json"
BT_ROWS = "results/bt/rows.jsonl"
BT_STATS = "results/bt/stats.json"
LENGTHS = "results/lengths/{model}/{method}.json"
TRAINED = "results/models/{model}/{method}"
CHECKPOINTS = "{checkpoint_dir}/{model}/{method}"
TENSORBOARD = "logs/train_genrm/{model}/{method}.tensorboard"

# judging and scoring, one folder per judge: the predictions, how they were produced (mode,
# backend, context used, shortened examples), for judges in logprob mode the same judge's
# greedy verdicts on a seeded sample (and how those were produced), and the scores
PREDICTIONS = "results/eval/{judge}/predictions.jsonl"
JUDGING = "results/eval/{judge}/judging.json"
GREEDY_SAMPLE = "results/eval/{judge}/greedy_sample.jsonl"
GREEDY_JUDGING = "results/eval/{judge}/greedy_sample.judging.json"
SCORES = "results/eval/{judge}/scores.json"

# tables and plots
TABLE = "results/tables/{file}"
PLOT_SECTIONS = "results/plots/sections.png"
PLOT_HEATMAP = "results/plots/subset_heatmap.png"
PLOT_GENRM_VS_BASE = "results/plots/genrm_vs_base/{model}/{method}.png"
BT_COMPARISON = "results/tables/bt_vs_genrm.{ext}"


def shards_dir(predictions: str) -> str:
    """Finished shards of a judging job, beside its predictions file."""
    return str(predictions) + ".shards"
