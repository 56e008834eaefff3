"""Plots from synthetic scores: PNG files with the right content, reproducible bytes."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from genrm.evaluate import score_predictions
from genrm.io import write_json
from genrm.protocol import SECTIONS, SUBSETS, generate_row
from genrm.report import plots

REPO = Path(__file__).resolve().parent.parent
JUDGES = [
    {"judge": "llama3.1-8b", "family": "LLaMA", "model": "LLaMA3.1-8B-Instruct", "method": "LLM-as-a-Judge",
     "ours": False},
    {"judge": "llama3.1-8b__verify", "family": "LLaMA", "model": "LLaMA3.1-8B-GenRM", "method": "Verify Only",
     "ours": True},
    {"judge": "tiny-reward", "family": "Tiny", "model": "Tiny-Reward", "method": "Bradley-Terry", "ours": False,
     "published": None},
]


def scores(hits_per_subset: dict[str, int], n: int = 10) -> dict:
    rows = []
    for subset, hits in hits_per_subset.items():
        rows += [generate_row(len(rows) + k, subset, ("[[A]]", "[[B]]") if k < hits else ("[[B]]", "[[A]]"),
                              shortened=False) for k in range(n)]
    return score_predictions(rows)


@pytest.fixture(scope="module")
def data():
    base = scores({s: 5 for s in SUBSETS})
    genrm = scores({s: 9 for s in SUBSETS})
    partial = scores({s: (i % 11) for i, s in enumerate(SUBSETS) if s != "donotanswer"})
    return [base, genrm, partial]


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_sections_plot(tmp_path, data):
    out = tmp_path / "plots" / "sections.png"
    result = plots.plot_sections(JUDGES, data, str(out))
    assert list(result) == ["LLaMA", "Tiny"]  # one panel per family
    llama = result["LLaMA"]
    assert [e["label"] for e in llama] == ["LLaMA3.1-8B-Instruct (LLM-as-a-Judge)", "LLaMA3.1-8B-GenRM (Verify Only)"]
    assert llama[1]["values"]["score"] == pytest.approx(90.0) and llama[1]["ours"]
    assert llama[0]["published"]["chat_hard"] == 51.97  # the published figure is marked
    assert result["Tiny"][0]["published"] is None
    width, height = png_size(out)
    assert width > 600 and height > 500


def test_heatmap(tmp_path, data):
    out = tmp_path / "heatmap.png"
    labels, subsets, matrix = plots.plot_heatmap(JUDGES, data, str(out))
    assert subsets == list(SUBSETS) and len(labels) == len(JUDGES)
    assert labels[2] == "Tiny: Tiny-Reward (Bradley-Terry)"
    assert matrix[0] == [50.0] * len(SUBSETS) and matrix[1] == [90.0] * len(SUBSETS)
    assert matrix[2][SUBSETS.index("donotanswer")] is None  # a subset not judged is blank, not 0
    width, height = png_size(out)
    assert width > 1000 and height > 200


def test_genrm_vs_base(tmp_path, data):
    out = tmp_path / "gvb.png"
    result = plots.plot_genrm_vs_base(JUDGES[0], data[0], JUDGES[1], data[1], str(out))
    assert result["metrics"]["score"] == pytest.approx((50.0, 90.0))
    assert set(result["metrics"]) == {"score", *SECTIONS}
    assert len(result["subsets"]) == len(SUBSETS)
    png_size(out)


BT = {"judge": "llama3.1-8b__bt", "family": "LLaMA", "model": "LLaMA3.1-8B-Instruct", "method": "Bradley-Terry (ours)",
      "ours": True}


def test_genrm_vs_base_with_the_bradley_terry_model(tmp_path, data):
    """The Bradley-Terry model of the same base joins the plot: its sections, and its subsets (None
    where it judged none)."""
    out = tmp_path / "gvb_bt.png"
    bt = data[2]  # some subsets missing
    result = plots.plot_genrm_vs_base(JUDGES[0], data[0], JUDGES[1], data[1], str(out), BT, bt)
    assert result["metrics"] == plots.genrm_vs_base_data(data[0], data[1])["metrics"]
    assert result["bt"]["metrics"]["score"] == pytest.approx(100 * bt["score"])
    assert result["bt"]["metrics"]["chat"] == pytest.approx(100 * bt["sections"]["chat"])
    assert result["bt"]["subsets"]["donotanswer"] is None
    assert result["bt"]["subsets"]["hep-go"] == pytest.approx(100 * bt["subsets"]["hep-go"])
    assert set(result["bt"]["subsets"]) == set(result["subsets"])
    without = tmp_path / "gvb.png"
    plots.plot_genrm_vs_base(JUDGES[0], data[0], JUDGES[1], data[1], str(without))
    assert out.read_bytes() != without.read_bytes()
    png_size(out)


def test_same_data_same_bytes(tmp_path, data):
    plots.plot_heatmap(JUDGES, data, str(tmp_path / "a.png"))
    plots.plot_heatmap(JUDGES, data, str(tmp_path / "b.png"))
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_command_line(tmp_path, data):
    files = []
    for j, s in zip(JUDGES, data):
        write_json(tmp_path / f"{j['judge']}.json", s)
        files.append(str(tmp_path / f"{j['judge']}.json"))
    for args in (["sections", "--judges", json.dumps(JUDGES), "--scores", *files, "--out", str(tmp_path / "s.png")],
                 ["heatmap", "--judges", json.dumps(JUDGES), "--scores", *files, "--out", str(tmp_path / "h.png")],
                 ["genrm-vs-base", "--judges", json.dumps(JUDGES[:2]), "--scores", files[0], files[1],
                  "--out", str(tmp_path / "g.png")],
                 ["genrm-vs-base", "--judges", json.dumps(JUDGES[:2] + [BT]), "--scores", *files,
                  "--out", str(tmp_path / "gbt.png")]):
        proc = subprocess.run([sys.executable, "-m", "genrm", "plots", *args], capture_output=True, text=True,
                              cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        png_size(Path(args[-1]))
    proc = subprocess.run([sys.executable, "-m", "genrm", "plots", "sections", "--judges", json.dumps(JUDGES),
                           "--scores", files[0], "--out", str(tmp_path / "x.png")], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 2 and "3 judges but 1 score files" in proc.stderr
