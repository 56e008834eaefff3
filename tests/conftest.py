"""Shared fixtures: the shared folder, tiny models built from configs, and one run
of the demo DAG that several tests read (it takes minutes, so it runs once)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY_ARCH = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "vocab_size": 600,
             "max_position_embeddings": 4096, "init_seed": 0}


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
    from genrm import demo
    from genrm.io import write_jsonl

    path = tmp_path_factory.mktemp("data") / "preferences.jsonl"
    write_jsonl(path, demo.preferences(n=300))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, demo_preferences) -> Path:
    """A tiny random-weight causal LM with a tokenizer trained on demo data."""
    from genrm.models import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny-lm"
    build_tiny_model(TINY_ARCH, str(demo_preferences), out)
    return out


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory, demo_preferences) -> Path:
    from genrm.models import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny-rm"
    build_tiny_model(TINY_ARCH, str(demo_preferences), out, classifier=True)
    return out


def snakemake(args: list[str], workdir: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake on this repository's Snakefile with ``workdir`` as the working directory."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--workflow-profile", "none", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


DEMO_ARGS = ["--configfile", str(REPO / "configs" / "demo.yaml"), "--replace-workflow-config"]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The working directory of one complete run of the demo DAG (results/, logs/, ...)."""
    workdir = tmp_path_factory.mktemp("demo")
    (workdir / "README.md").write_text((REPO / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    snakemake(["--cores", "2", *DEMO_ARGS], workdir)
    return workdir
