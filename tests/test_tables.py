"""Results tables from synthetic scores: the published layout, the comparison with the
published figures, completeness without a published counterpart, the HTML pages of
the report, and an idempotent README block."""

from __future__ import annotations

import csv
import json
import random
import re
from html.parser import HTMLParser

import pytest

from genrm import tables
from genrm.io import write_json
from genrm.scoring import SECTIONS, SUBSETS, score_predictions

JUDGES = [
    {"judge": "llama3.1-8b", "family": "LLaMA", "model": "LLaMA3.1-8B-Instruct", "method": "LLM-as-a-Judge",
     "ours": False},
    {"judge": "llama3.1-8b__verify", "family": "LLaMA", "model": "LLaMA3.1-8B-GenRM", "method": "Verify Only",
     "ours": True},
    {"judge": "skywork-reward", "family": "LLaMA", "model": "Skywork-Reward-Llama-3.1-8B", "method": "Bradley-Terry",
     "ours": False},
    {"judge": "tiny-instruct", "family": "Tiny", "model": "Tiny-Instruct", "method": "LLM-as-a-Judge", "ours": False},
    {"judge": "tiny-instruct__verify", "family": "Tiny", "model": "Tiny-GenRM", "method": "Verify Only", "ours": True},
]


def predictions(accuracy: float, seed: int, per_subset: int = 20, skip=()) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for subset in SUBSETS:
        if subset in skip:
            continue
        for _ in range(per_subset):
            a, b = (rng.random() < accuracy), (rng.random() < accuracy)
            va = "A" if a else ("B" if rng.random() < 0.9 else None)
            vb = "B" if b else "A"
            rows.append({"id": len(rows), "subset": subset, "verdict_chosen_a": va, "verdict_chosen_b": vb,
                         "correct": ((1.0 if a else (0.0 if va else 0.5)) + (1.0 if b else 0.0)) / 2})
    return rows


@pytest.fixture()
def run(tmp_path):
    files = []
    for i, (judge, acc) in enumerate(zip(JUDGES, [0.7, 0.9, 0.92, 0.5, 0.88])):
        skip = ("hep-go",) if judge["judge"] == "tiny-instruct" else ()
        path = tmp_path / "eval" / judge["judge"] / "scores.json"
        write_json(path, score_predictions(predictions(acc, i, skip=skip)))
        files.append(str(path))
    out = tmp_path / "tables"
    rows = tables.write_tables(json.dumps(JUDGES), files, str(out))
    return out, rows, files


def test_every_output_is_written(run):
    out, rows, _ = run
    for name in tables.OUTPUTS.values():
        assert (out / name).stat().st_size > 0, name
    assert len(rows) == len(JUDGES)


def test_csv_columns_and_differences(run):
    out, rows, _ = run
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames[:8] == ["family", "model", "method", "score", *SECTIONS]
        data = list(reader)
    by = {r["judge"]: r for r in data}
    base = by["llama3.1-8b"]
    assert base["published_score"] == "71.3"
    for m in ("score", *SECTIONS):
        assert float(base[f"diff_{m}"]) == pytest.approx(float(base[m]) - float(base[f"published_{m}"]), abs=1e-9)
    assert by["skywork-reward"]["published_flag"].startswith("published Score 92.50 is not the mean")
    assert by["tiny-instruct"]["published_score"] == "" and by["tiny-instruct"]["diff_score"] == ""
    # Score is the mean of the reproduced sections (to rounding)
    for r in data:
        assert float(r["score"]) == pytest.approx(sum(float(r[s]) for s in SECTIONS) / 4, abs=0.01)


def test_results_md_keeps_the_published_layout(run):
    out, rows, _ = run
    text = (out / "results.md").read_text()
    assert [line for line in text.splitlines() if line.startswith("####")] == ["#### LLaMA", "#### Tiny"]
    assert text.count("| Model | Method | Score | Chat | Chat Hard | Safety | Reasoning |") == 2
    assert text.count("|:---:|:---:|:---:|:---:|:---:|:---:|:---:|") == 2
    body = [line for line in text.splitlines() if line.startswith("| ") and "Model" not in line]
    assert len(body) == len(JUDGES)
    for line in body:
        cells = [c.strip() for c in line.strip("|").split("|")]
        bold = cells[0].startswith("**")
        assert all(c.startswith("**") == bold for c in cells)
        assert all(re.fullmatch(r"\d{1,3}\.\d\d", c.strip("*")) for c in cells[2:])
    assert "| **Tiny-GenRM** | **Verify Only** |" in text


def test_comparison_shows_ours_published_and_difference(run):
    out, rows, _ = run
    text = (out / "comparison.md").read_text()
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("| **LLaMA3.1-8B-GenRM** | **Verify Only** |"))
    assert "**reproduced**" in lines[i]
    assert lines[i + 1].startswith("|  |  | published | 88.76 | 93.30 | 81.58 | 91.55 | 88.60 |")
    diff = [c.strip() for c in lines[i + 2].strip("|").split("|")]
    assert diff[2] == "difference"
    ours = next(r for r in rows if r["judge"] == "llama3.1-8b__verify")
    assert diff[3] == f"{ours['score'] - 88.76:+.2f}"
    assert "| 92.50 † |" in text
    assert len([line for line in lines if line.startswith("† ")]) == 1  # only the flagged row in this run
    # judges without a published counterpart are still there
    assert "| Tiny-Instruct | LLM-as-a-Judge | reproduced (no published row) |" in text
    assert "| **Tiny-GenRM** | **Verify Only** | **reproduced (no published row)** |" in text


def test_readme_block(run):
    out, rows, _ = run
    text = (out / "readme.md").read_text()
    assert text.count("| Model | Method | Score | Chat | Chat Hard | Safety | Reasoning |") == 2
    assert text.count("| Model | Method | Figures |") == 1  # a comparison only where one exists
    assert "No published figures to compare with for Tiny." in text
    for judge in JUDGES:
        assert f"{judge['model']}" in text


def test_update_readme_is_idempotent(run, tmp_path):
    out, _, _ = run
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nintro\n\n## Results\n\n", "\n\n## Reports\n\nmore text\n"
    readme.write_text(before + tables.README_START + "\nold table\n" + tables.README_END + after)
    assert tables.update_readme(str(readme), str(out / "readme.md")) is True
    first = readme.read_text()
    assert first.startswith(before + tables.README_START + "\n#### LLaMA") and first.endswith(tables.README_END + after)
    assert tables.update_readme(str(readme), str(out / "readme.md")) is False
    assert readme.read_text() == first
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        tables.update_readme(str(readme), str(out / "readme.md"))


class _TableCounter(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1


def _tags(path) -> dict[str, int]:
    p = _TableCounter()
    p.feed(path.read_text())
    return p.tags


def test_html_pages(run):
    out, _, _ = run
    assert _tags(out / "results.html")["table"] == 2
    assert _tags(out / "results.html")["tr"] == 2 + len(JUDGES)
    assert _tags(out / "comparison.html")["tr"] == 2 + 3 * 3 + 2  # 3 matched judges x 3 rows, 2 unmatched
    assert _tags(out / "published.html")["tr"] == 2 + 13
    fragment = (out / "comparison.fragment.html").read_text()
    assert "<style" not in fragment and "<html" not in fragment and fragment.count("<table") == 2


def test_coverage_table_shows_missing_subsets(run):
    out, _, _ = run
    text = (out / "coverage.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("| tiny-instruct |"))
    assert "| 22/23 | hep-go |" in line
    assert "| 460 | 100 | 120 | 100 | 140 | 23/23 | – |" in next(
        line for line in text.splitlines() if line.startswith("| llama3.1-8b |"))


def test_markdown_table_files_become_html(tmp_path):
    md = ("## Judge diagnostics\n\n| Judge | Mode | Score |\n|:---|:---:|:---:|\n| a (b) | generate | 50.00 |\n"
          "| **c** | **logprob** | **90.00** |\n\nPercentages. Score and\nits interval.\n")
    (tmp_path / "d.md").write_text(md)
    from genrm.tables import main

    assert main(["html", "--md", str(tmp_path / "d.md"), "--title", "Judge diagnostics",
                 "--out", str(tmp_path / "d.html")]) == 0
    html = (tmp_path / "d.html").read_text()
    assert "<h2>Judge diagnostics</h2>" in html and "<th>Mode</th>" in html
    assert '<tr class="ours"><td>c</td><td>logprob</td><td>90.00</td></tr>' in html
    assert "<p>Percentages. Score and its interval.</p>" in html
    assert _tags(tmp_path / "d.html")["tr"] == 3


def test_sft_table(tmp_path):
    stats = [{"method": m, "correct_ratio": r, "seed": 42, "rows_in": 100, "dropped": {"missing_key": 2},
              "judge_rows": 98, "correct_rows": n, "rows_out": 98 + n, "chosen_at_a": 50, "chosen_at_b": 48,
              "fraction_chosen_at_a": 50 / 98} for m, r, n in (("verify", 0.0, 0), ("verify_correct", 1.0, 98))]
    files = []
    for s in stats:
        write_json(tmp_path / f"{s['method']}.json", s)
        files.append(str(tmp_path / f"{s['method']}.json"))
    from genrm.tables import main

    assert main(["sft", "--stats", *files, "--out-md", str(tmp_path / "sft.md"),
                 "--out-html", str(tmp_path / "sft.html")]) == 0
    text = (tmp_path / "sft.md").read_text()
    assert text.splitlines()[0].startswith("| method | rows_in | correct_ratio |")
    assert "dropped.missing_key" in text and "| verify_correct | 100 | 1 |" in text
    assert "0.5102" in text
