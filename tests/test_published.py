"""The published reference: every figure kept as printed, the two inconsistent rows
flagged (not corrected), and the matching of this run's judges to published rows."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO, markdown_cells
from genrm import config as gconfig
from genrm import published as reference
from genrm import workflow
from genrm.evaluate import score_predictions
from genrm.io import write_json
from genrm.protocol import SECTIONS, SUBSETS, generate_row
from genrm.report.tables import write_tables

INCONSISTENT = {("Qwen2.5-7B-GenRM", "Verify Only"), ("Skywork-Reward-Llama-3.1-8B", "Bradley-Terry")}
REPO_CONFIG = REPO / "workflow_config.yaml"


def test_resource_holds_the_shared_figures(shared_dir):
    import importlib.resources

    ours = yaml.safe_load(importlib.resources.files("genrm").joinpath(reference.RESOURCE).read_text())
    shared = yaml.safe_load((shared_dir / "reference" / "published_rewardbench.yaml").read_text())
    assert ours == shared


def test_rows_and_the_two_inconsistent_ones():
    rows = reference.load_published()
    assert [r.family for r in rows].count("LLaMA") == 5 and [r.family for r in rows].count("Qwen") == 8
    assert {r.key for r in reference.inconsistent(rows)} == INCONSISTENT
    index = reference.by_key(rows)
    qwen = index[("Qwen2.5-7B-GenRM", "Verify Only")]
    assert qwen.score == 88.87 and qwen.section_mean == pytest.approx(90.6525)
    assert "not the mean" in qwen.flag and "90.653" in qwen.flag
    sky = index[("Skywork-Reward-Llama-3.1-8B", "Bradley-Terry")]
    assert sky.score == 92.50 and sky.section_mean == pytest.approx(92.525)
    # a row whose Score only differs from the mean by rounding is consistent
    llama = index[("LLaMA3.1-8B-GenRM", "Verify+Correct")]
    assert llama.consistent and llama.flag == ""


def test_duplicate_published_rows_are_refused(tmp_path):
    row = {"model": "M", "method": "X", "score": 1, **{s: 1 for s in SECTIONS}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"families": {"F": [row, row]}}))
    with pytest.raises(ValueError, match="not unique"):
        reference.load_published(tmp_path / "p.yaml")


def _scores(tmp_path, judges):
    files = []
    for i in range(len(judges)):
        rows = [generate_row(k, s, ("[[A]]", "[[B]]"), shortened=False) for k, s in enumerate(SUBSETS)]
        path = tmp_path / f"{i}.json"
        write_json(path, score_predictions(rows))
        files.append(str(path))
    return files


def test_published_tables_reproduce_every_figure(tmp_path):
    judges = [{"judge": "x", "family": "Tiny", "model": "Tiny", "method": "LLM-as-a-Judge", "ours": False}]
    write_tables(judges, _scores(tmp_path, judges), str(tmp_path / "t"))
    text = (tmp_path / "t" / "published.md").read_text()
    for row in reference.load_published():
        cells = next(c for c in (markdown_cells(line.replace("**", "")) for line in text.splitlines())
                     if c[:2] == [row.model, row.method])
        flagged = row.key in INCONSISTENT
        assert cells[2] == f"{row.score:.2f}" + (" †" if flagged else "")
        assert cells[3:] == [f"{getattr(row, s):.2f}" for s in SECTIONS]
        if row.ours:  # the project's GenRM rows in bold
            assert f"**{row.model}**" in text
    notes = [line for line in text.splitlines() if line.startswith("† ")]
    assert len(notes) == 2 and all("not the mean of its sections" in n for n in notes)
    html = (tmp_path / "t" / "published.html").read_text()
    assert html.count("<tr") == 2 + 13 and html.count("†") >= 4


def test_judges_match_published_rows_by_label_and_method():
    cfg = gconfig.load(REPO_CONFIG)
    index = reference.by_key(reference.load_published())
    matched = {}
    for j in gconfig.judges(cfg):
        row = {**workflow.table_row(j), "published": gconfig.published_key(cfg, j)}
        matched[j.name] = reference.match(row, index)
    # every production judge has its published row, except the Bradley-Terry models trained
    # here on the GenRM pairs: that comparison is new (issue 11), nobody published it
    unmatched = {k for k, v in matched.items() if not v}
    assert unmatched == {j.name for j in gconfig.judges(cfg) if j.kind == "bt"} == {"llama3.1-8b__bt"}
    matched = {k: v for k, v in matched.items() if v}
    assert matched["llama3.1-8b__verify_correct"].key == ("LLaMA3.1-8B-GenRM", "Verify+Correct")
    assert matched["skywork-reward-llama3.1-8b"].key == ("Skywork-Reward-Llama-3.1-8B", "Bradley-Terry")
    assert len({m.key for m in matched.values()}) == 13


def test_config_overrides_the_match():
    cfg = gconfig.load(REPO_CONFIG)
    cfg = copy.deepcopy(cfg)
    cfg["report"]["published"] = {"qwen2.5-7b": None,
                                  "qwen2.5-14b": {"model": "Qwen2.5-7B-Instruct", "method": "LLM-as-a-Judge"}}
    gconfig.validate(cfg)
    judges = {j.name: j for j in gconfig.judges(cfg)}
    assert gconfig.published_key(cfg, judges["qwen2.5-7b"]) is None
    assert gconfig.published_key(cfg, judges["qwen2.5-14b"])["model"] == "Qwen2.5-7B-Instruct"
    cfg["report"]["published"] = {"nope": None, "qwen2.5-7b": {"model": "Qwen9", "method": "X"}}
    with pytest.raises(gconfig.ConfigError) as problems:
        gconfig.validate(cfg)
    assert "report.published.nope: unknown judge" in str(problems.value)
    assert "no published row Qwen9 / X" in str(problems.value)
    cfg["report"]["published"] = {"qwen2.5-7b": {"model": "Qwen9"}}
    with pytest.raises(gconfig.ConfigError, match="report.published.qwen2.5-7b"):
        gconfig.validate(cfg)


def test_unmatched_and_renamed_rows_in_the_tables(tmp_path):
    judges = [
        {"judge": "a", "family": "Qwen", "model": "My-Qwen-7B", "method": "Verify Only", "ours": True,
         "published": {"model": "Qwen2.5-7B-GenRM", "method": "Verify Only"}},
        {"judge": "b", "family": "Qwen", "model": "Qwen2.5-14B-Instruct", "method": "LLM-as-a-Judge", "ours": False,
         "published": None},
    ]
    rows = write_tables(judges, _scores(tmp_path, judges), str(tmp_path / "t"))
    assert rows[0]["published_score"] == 88.87 and rows[0]["diff_score"] == round(100.0 - 88.87, 2)
    assert "not the mean" in rows[0]["published_flag"]
    assert rows[1]["published_score"] is None and rows[1]["diff_score"] is None
    comparison = (tmp_path / "t" / "comparison.md").read_text()
    assert "published (Qwen2.5-7B-GenRM, Verify Only)" in comparison
    cells = [markdown_cells(line) for line in comparison.splitlines() if line.startswith("|")]
    assert ["Qwen2.5-14B-Instruct", "LLM-as-a-Judge", "reproduced (no published row)"] in [c[:3] for c in cells]
    assert "88.87 †" in comparison and any("+11.13" in c for c in cells)
