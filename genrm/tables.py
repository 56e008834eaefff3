"""Results tables: ``results.csv`` and one Markdown table per family in the
published layout, and the README section that shows them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from genrm.io import atomic_path, read_json
from genrm.scoring import SECTION_LABELS, SECTIONS

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
CSV_COLUMNS = ["family", "model", "method", "score", *SECTIONS, "judge", "ours", "examples", "unparsed_verdicts"]


def percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def result_rows(judges: list[dict], score_files: list[str]) -> list[dict]:
    """One row per judge: its identity plus Score and sections, x100 with two decimals."""
    if len(judges) != len(score_files):
        raise ValueError(f"{len(judges)} judges but {len(score_files)} score files")
    rows = []
    for judge, path in zip(judges, score_files):
        scores = read_json(path)
        rows.append({
            "family": judge["family"],
            "model": judge["model"],
            "method": judge["method"],
            "score": percent(scores["score"]),
            **{s: percent(scores["sections"][s]) for s in SECTIONS},
            "judge": judge["judge"],
            "ours": judge["ours"],
            "examples": scores["counts"]["examples"],
            "unparsed_verdicts": scores["counts"]["unparsed_verdicts"],
        })
    return rows


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown_table(rows: list[dict]) -> str:
    """The published layout: centred columns, two decimals, our GenRM rows in bold."""
    header = ["Model", "Method", "Score", *(SECTION_LABELS[s] for s in SECTIONS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---:"] * len(header)) + "|"]
    for r in rows:
        cells = [r["model"], r["method"], _cell(r["score"]), *(_cell(r[s]) for s in SECTIONS)]
        if r["ours"]:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_by_family(rows: list[dict]) -> str:
    families = list(dict.fromkeys(r["family"] for r in rows))
    parts = []
    for family in families:
        parts.append(f"#### {family}\n\n" + markdown_table([r for r in rows if r["family"] == family]))
    return "\n\n".join(parts) + "\n"


def write_tables(judges_json: str, score_files: list[str], out_dir: str) -> list[dict]:
    judges = json.loads(judges_json)
    rows = result_rows(judges, score_files)
    out = Path(out_dir)
    with atomic_path(out / "results.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(markdown_by_family(rows), encoding="utf-8")
    return rows


def replace_between_markers(text: str, body: str) -> str:
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README lacks the markers {README_START} ... {README_END}")
    return text[: start + len(README_START)] + "\n" + body.strip("\n") + "\n" + text[end:]


def update_readme(readme: str, tables_md: str) -> bool:
    """Rewrite only the text between the markers; return whether anything changed."""
    path = Path(readme)
    old = path.read_text(encoding="utf-8")
    new = replace_between_markers(old, Path(tables_md).read_text(encoding="utf-8"))
    if new == old:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(new, encoding="utf-8")
    return True
