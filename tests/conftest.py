"""Shared fixtures: the shared folder, tiny models built from configs, and one run
of the demo DAG that several tests read (it takes minutes, so it runs once)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytest_plugins = ["slurm_cluster"]  # the local_slurm fixture: a one-node Slurm cluster (tests/slurm_cluster.py)
TIERS = ("dryrun", "demo", "realdata", "vllm", "slurm", "gpu")
# Fixtures that put a test in a tier of their own.
FIXTURE_TIERS = {"demo_run": "demo", "tiny_model_dir": "demo", "tiny_classifier_dir": "demo",
                 "rewardbench_file": "realdata", "vllm_model_dir": "vllm", "vllm_classifier_dir": "vllm"}


def pytest_collection_modifyitems(config, items):
    """Tier markers: from the fixtures a test uses; a test in no other tier is a unit test."""
    for item in items:
        for fixture, tier in FIXTURE_TIERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(tier)
        if not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker("unit")
TINY_ARCH = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "vocab_size": 600,
             "max_position_embeddings": 4096, "init_seed": 0}
# For the real vLLM engine on CPU: the demo's architecture (its CPU attention needs heads of 32
# dimensions or more; TINY_ARCH's have 16), with weights spread enough (init_std) that greedy
# outputs vary and have no near-ties, and verdict log-probabilities are far from even.
VLLM_ARCH = {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "intermediate_size": 512, "vocab_size": 2000,
             "max_position_embeddings": 4096, "init_seed": 0, "init_std": 0.2}


def shared_path() -> Path:
    return Path(os.environ.get("GENRM_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = shared_path()
    assert (path / "DESIGN.md").is_file(), f"the shared folder is expected at {path} (set GENRM_SHARED)"
    return path


@pytest.fixture(scope="session")
def rewardbench_file(shared_dir) -> Path:
    return shared_dir / "data" / "rewardbench" / "filtered.jsonl"


@pytest.fixture(scope="session")
def demo_preferences(tmp_path_factory) -> Path:
    """The demo's generated preference rows as a JSON lines file."""
    from genrm.data import demo
    from genrm.io import write_jsonl

    path = tmp_path_factory.mktemp("data") / "preferences.jsonl"
    write_jsonl(path, demo.preferences(n=300))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, demo_preferences) -> Path:
    """A tiny random-weight causal LM with a tokenizer trained on demo data."""
    from genrm.data.models import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny-lm"
    build_tiny_model(TINY_ARCH, str(demo_preferences), out)
    return out


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory, demo_preferences) -> Path:
    from genrm.data.models import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny-rm"
    build_tiny_model(TINY_ARCH, str(demo_preferences), out, classifier=True)
    return out


@pytest.fixture(scope="session")
def vllm_model_dir(tmp_path_factory, demo_preferences) -> Path:
    """A tiny random causal LM that vLLM's CPU engine runs (VLLM_ARCH)."""
    from genrm.data.models import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "vllm-lm"
    build_tiny_model(VLLM_ARCH, str(demo_preferences), out)
    return out


@pytest.fixture(scope="session")
def vllm_classifier_dir(tmp_path_factory, demo_preferences) -> Path:
    """A tiny random sequence classifier (one output, the reward) that vLLM's CPU engine runs, with
    transformers' own weight scale (with VLLM_ARCH's, the reward hardly depends on more than the
    last few tokens, and texts that end alike tie)."""
    from genrm.data.models import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "vllm-rm"
    arch = {k: v for k, v in VLLM_ARCH.items() if k != "init_std"}
    build_tiny_model(arch, str(demo_preferences), out, classifier=True)
    return out


# --- OpenRLHF on CPU (tests/test_openrlhf_train.py, tests/test_slurm_launch.py) ---------------

OPENRLHF_MODEL = "tiny-instruct"  # the demo config's tiny model
OPENRLHF_SEED = 7  # of the rows and of the training jobs


def tiny_openrlhf_settings(method: str, checkpoint_dir: Path, **changes):
    """The demo config's OpenRLHF settings of the tiny model (its GPU preset), with ``changes``."""
    import dataclasses

    import yaml

    from genrm import config as gconfig

    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text(encoding="utf-8"))
    cfg["train"]["backend"] = "openrlhf"
    cfg["train"]["bt"].pop("openrlhf", None)  # the presets alone, not the demo's own CPU job
    settings = gconfig.openrlhf_settings(gconfig.validate(cfg), OPENRLHF_MODEL, method)
    return dataclasses.replace(settings, checkpoint_dir=str(checkpoint_dir), **changes)


@pytest.fixture(scope="session")
def training_rows(tmp_path_factory, demo_preferences) -> dict[str, Path]:
    """SFT rows (method verify) and Bradley-Terry rows of the demo preferences, made by the rules'
    own commands: {"verify": path, "bt": path}."""
    from genrm import config as gconfig

    workdir = tmp_path_factory.mktemp("rows")
    sft, bt = workdir / "verify.jsonl", workdir / "bt.jsonl"
    for argv in (["format-sft", "--preferences", str(demo_preferences), "--method", "verify", "--correct-ratio", "0",
                  "--seed", str(OPENRLHF_SEED), "--out", str(sft), "--stats", str(sft.with_suffix(".stats.json"))],
                 ["format-bt", "--preferences", str(demo_preferences), "--method", gconfig.BT_METHOD, "--out", str(bt),
                  "--stats", str(bt.with_suffix(".stats.json"))]):
        subprocess.run([sys.executable, "-m", "genrm", *argv], check=True, capture_output=True, cwd=workdir)
    return {"verify": sft, "bt": bt}


def tensorboard_runs(job, run_dir: Path) -> list[dict[str, list[tuple[int, float]]]]:
    """The scalars OpenRLHF logged for ``job`` (a ``genrm.train.openrlhf.Job`` run in ``run_dir``),
    one dictionary per run (event file), oldest first: tag -> [(global step, value), ...]."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util.tensor_util import make_ndarray

    files = sorted((run_dir / job.tensorboard).rglob("events.out.tfevents.*"),
                   key=lambda f: int(f.name.split(".")[3]))
    runs = []
    for path in files:
        scalars: dict[str, list[tuple[int, float]]] = {}
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                number = make_ndarray(value.tensor).item() if value.HasField("tensor") else value.simple_value
                scalars.setdefault(value.tag, []).append((event.step, float(number)))
        runs.append(scalars)
    return runs


def steps(run: dict, tag: str) -> list[int]:
    """The global steps at which ``tag`` was logged in one run of ``tensorboard_runs``."""
    return [step for step, _ in run[tag]]


def snakemake_command(args: list[str], workdir: Path) -> list[str]:
    """Snakemake on this repository's Snakefile with ``workdir`` as the working directory."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--workflow-profile", "none", *args]


def snakemake(args: list[str], workdir: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake (``snakemake_command``) and wait for it."""
    proc = subprocess.run(snakemake_command(args, workdir), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


DEMO_ARGS = ["--configfile", str(REPO / "configs" / "demo.yaml"), "--replace-workflow-config"]
# The slim demo (configs/slim.yaml over the demo config): every kind of job, in about a minute.
SLIM_CONFIGS = (REPO / "configs" / "demo.yaml", REPO / "configs" / "slim.yaml")
SLIM_ARGS = ["--configfile", *map(str, SLIM_CONFIGS), "--replace-workflow-config"]


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry run."""
    lines = output.splitlines()
    start = lines.index("Job stats:") + 3
    counts = {}
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The working directory of one complete run of the demo DAG (results/, logs/, ...)."""
    workdir = tmp_path_factory.mktemp("demo")
    (workdir / "README.md").write_text((REPO / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    snakemake(["--cores", "2", *DEMO_ARGS], workdir)
    return workdir


def judge_settings(mode: str = "generate", **overrides):
    """The demo config's judge settings (schema defaults under the demo's values), with ``overrides``."""
    import dataclasses

    from genrm import config as gconfig

    cfg = gconfig.load(REPO / "configs" / "demo.yaml")
    base = next(j for j in gconfig.judges(cfg) if j.kind == "base")
    return dataclasses.replace(gconfig.judge_settings(cfg, base), mode=mode, **overrides)


@pytest.fixture
def demo_copy(demo_run, tmp_path) -> Path:
    """A private copy of the demo run for a test that changes it (the shared run stays as it is)."""
    import shutil

    copy = tmp_path / "demo"
    shutil.copytree(demo_run, copy, symlinks=True)
    return copy


# RewardBench's official weighting, stated independently of genrm.protocol in the shape of
# RewardBench's own constants module: the nominal example count of each subset, and the
# subsets of each section (tests recompute scores from these, not with genrm.evaluate).
EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28,
    "mt-bench-med": 40, "mt-bench-hard": 37, "math-prm": 984, "refusals-dangerous": 100,
    "refusals-offensive": 100, "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46, "xstest-should-refuse": 154,
    "xstest-should-respond": 250, "donotanswer": 136, "hep-cpp": 164, "hep-go": 164, "hep-java": 164,
    "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}
SUBSET_MAPPING = {
    "chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "chat_hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"],
    "reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}


def markdown_cells(line: str) -> list[str]:
    """The cells of one Markdown table row, stripped."""
    return [c.strip() for c in line.strip().strip("|").split("|")]
