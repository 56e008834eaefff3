"""Results tables: ``results.csv``, one Markdown table per family in the published
layout, the published-vs-reproduced comparison, the published reference itself,
the judges' diagnostics, HTML versions of those for the Snakemake report, and the
README section that shows them.

Every table is built once as a :class:`Table` (cells already formatted) and
rendered to Markdown or HTML, so the two never disagree.
"""

from __future__ import annotations

import csv
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from genrm import reference
from genrm.io import atomic_path, read_json
from genrm.scoring import SECTION_LABELS, SECTIONS, SUBSETS

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
PUBLISHED_COLUMNS = ["published_model", "published_method", "published_score",
                     *(f"published_{s}" for s in SECTIONS)]
DIFF_COLUMNS = ["diff_score", *(f"diff_{s}" for s in SECTIONS)]
CSV_COLUMNS = ["family", "model", "method", "score", *SECTIONS, "judge", "ours", "examples", "unparsed_verdicts",
               *PUBLISHED_COLUMNS, *DIFF_COLUMNS, "published_flag"]
METRICS = ("score", *SECTIONS)
HEADER = ["Model", "Method", "Score", *(SECTION_LABELS[s] for s in SECTIONS)]
COMPARISON_HEADER = ["Model", "Method", "Figures", "Score", *(SECTION_LABELS[s] for s in SECTIONS)]
FLAG_MARK = "†"
DASH = "–"

# Files written by write_tables, by role (the tables rule lists the same names).
OUTPUTS = {
    "csv": "results.csv",
    "md": "results.md",
    "html": "results.html",
    "comparison_md": "comparison.md",
    "comparison_html": "comparison.html",
    "comparison_fragment": "comparison.fragment.html",
    "published_md": "published.md",
    "published_html": "published.html",
    "coverage_md": "coverage.md",
    "coverage_html": "coverage.html",
    "readme": "readme.md",
}


def percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def difference(ours: float | None, published: float | None) -> float | None:
    if ours is None or published is None:
        return None
    return round(ours - published, 2)


def result_rows(judges: list[dict], score_files: list[str],
                published: list[reference.PublishedRow] | None = None) -> list[dict]:
    """One row per judge: its identity, Score and sections (x100, two decimals), and the
    published figures it is compared with (None where it has no published counterpart)."""
    if len(judges) != len(score_files):
        raise ValueError(f"{len(judges)} judges but {len(score_files)} score files")
    index = reference.by_key(reference.load_published() if published is None else published)
    rows = []
    for judge, path in zip(judges, score_files):
        scores = read_json(path)
        row = {
            "family": judge["family"],
            "model": judge["model"],
            "method": judge["method"],
            "score": percent(scores["score"]),
            **{s: percent(scores["sections"][s]) for s in SECTIONS},
            "judge": judge["judge"],
            "ours": judge["ours"],
            "examples": scores["counts"]["examples"],
            "unparsed_verdicts": scores["counts"]["unparsed_verdicts"],
        }
        pub = reference.match(judge, index)
        row["published_model"] = pub.model if pub else None
        row["published_method"] = pub.method if pub else None
        for m in METRICS:
            row[f"published_{m}"] = getattr(pub, m) if pub else None
            row[f"diff_{m}"] = difference(row[m], row[f"published_{m}"])
        row["published_flag"] = pub.flag if pub else ""
        rows.append(row)
    return rows


# --- a table, rendered as Markdown or HTML ---------------------------------------

@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[tuple[list[str], bool]]  # (cells, bold)
    notes: list[str] = field(default_factory=list)
    intro: str = ""


def _cell(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return DASH if value is None else f"{value:+.2f}"


def markdown_rows(table: Table) -> str:
    lines = ["| " + " | ".join(table.header) + " |", "|" + "|".join([":---:"] * len(table.header)) + "|"]
    for cells, bold in table.rows:
        if bold:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(tables: list[Table], heading: str = "####") -> str:
    parts = []
    for t in tables:
        block = [f"{heading} {t.title}"] if t.title else []
        if t.intro:
            block.append(t.intro)
        block.append(markdown_rows(t))
        block.extend(t.notes)
        parts.append("\n\n".join(block))
    return "\n\n".join(parts) + "\n"


HTML_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #1f2328; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0 0.8em 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: center; }
th { background: #f6f8fa; }
tr.ours td { font-weight: bold; }
tr.sub td { color: #57606a; }
p.note { font-size: 0.9em; color: #57606a; margin: 0.2em 0; }
"""


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = []
    for cells, bold in table.rows:
        cls = ' class="ours"' if bold else (' class="sub"' if not cells[0] else "")
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def render_fragment(tables: list[Table]) -> str:
    """Tables as an HTML fragment without page styles (embedded in the report's front page)."""
    parts = ['<div class="genrm-tables">']
    for t in tables:
        if t.title:
            parts.append(f"<h3>{html.escape(t.title)}</h3>")
        parts.append(html_table(t).replace("<table>", '<table style="text-align:center">', 1))
        parts.extend(f"<p><small>{html.escape(n)}</small></p>" for n in t.notes)
    parts.append("</div>\n")
    return "\n".join(parts)


def render_html(tables: list[Table], title: str, intro: str = "") -> str:
    """A self-contained HTML page (the Snakemake report shows it in a frame)."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             f"<title>{html.escape(title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>",
             f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for t in tables:
        if t.title:
            parts.append(f"<h2>{html.escape(t.title)}</h2>")
        if t.intro:
            parts.append(f"<p>{html.escape(t.intro)}</p>")
        parts.append(html_table(t))
        parts.extend(f'<p class="note">{html.escape(n)}</p>' for n in t.notes)
    parts.append("</body>\n</html>\n")
    return "\n".join(parts)


# --- the tables -----------------------------------------------------------------

def _families(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["family"] for r in rows))


def results_table(rows: list[dict], title: str = "") -> Table:
    """The published layout: Model, Method, Score, sections; our GenRM rows in bold."""
    return Table(title, HEADER, [([r["model"], r["method"], *(_cell(r[m]) for m in METRICS)], bool(r["ours"]))
                                 for r in rows])


def results_tables(rows: list[dict]) -> list[Table]:
    return [results_table([r for r in rows if r["family"] == f], f) for f in _families(rows)]


def markdown_by_family(rows: list[dict]) -> str:
    return render_markdown(results_tables(rows))


def _flag_note(model: str, method: str, flag: str) -> str:
    return f"{FLAG_MARK} {model} ({method}): {flag}."


def comparison_table(rows: list[dict], title: str = "") -> Table:
    """Per judge: the reproduced row, then (where a published row matches) the published
    figures and the difference reproduced minus published."""
    out: list[tuple[list[str], bool]] = []
    notes = []
    for r in rows:
        if r["published_model"] is None:
            out.append(([r["model"], r["method"], "reproduced (no published row)",
                         *(_cell(r[m]) for m in METRICS)], bool(r["ours"])))
            continue
        out.append(([r["model"], r["method"], "reproduced", *(_cell(r[m]) for m in METRICS)], bool(r["ours"])))
        published = [_cell(r[f"published_{m}"]) for m in METRICS]
        label = "published"
        if r["published_flag"]:
            published[0] += f" {FLAG_MARK}"
            notes.append(_flag_note(r["published_model"], r["published_method"], r["published_flag"]))
        if (r["published_model"], r["published_method"]) != (r["model"], r["method"]):
            label = f"published ({r['published_model']}, {r['published_method']})"
        out.append((["", "", label, *published], False))
        out.append((["", "", "difference", *(_signed(r[f"diff_{m}"]) for m in METRICS)], False))
    return Table(title, COMPARISON_HEADER, out, notes)


def comparison_tables(rows: list[dict]) -> list[Table]:
    return [comparison_table([r for r in rows if r["family"] == f], f) for f in _families(rows)]


def published_tables(published: list[reference.PublishedRow]) -> list[Table]:
    """The published reference, every figure as printed; inconsistent Scores flagged."""
    tables = []
    for family in dict.fromkeys(p.family for p in published):
        out, notes = [], []
        for p in (p for p in published if p.family == family):
            cells = [p.model, p.method, *(_cell(getattr(p, m)) for m in METRICS)]
            if not p.consistent:
                cells[2] += f" {FLAG_MARK}"
                notes.append(_flag_note(p.model, p.method, p.flag))
            out.append((cells, p.ours))
        tables.append(Table(family, HEADER, out, notes))
    return tables


# --- coverage: what scores.json says was judged ------------------------------------

def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def _format_value(value) -> str:
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


COVERAGE_HEADER = ["Judge", "Model", "Method", "Examples", *(f"{SECTION_LABELS[s]} examples" for s in SECTIONS),
                   "Subsets judged", "Missing subsets", "Unparsed verdicts"]


def coverage_table(judges: list[dict], score_files: list[str]) -> Table:
    """Per judge: how many examples of each section were judged, which subsets are missing
    (a section without some subsets is computed from the others), unparsed verdicts. The
    position-bias diagnostics are the judging step's own table (results/tables/diagnostics.md)."""
    from genrm.scoring import SUBSET_SECTION

    rows = []
    for judge, path in zip(judges, score_files):
        scores = read_json(path)
        counts = scores["counts"]
        per_subset = counts.get("per_subset", {})
        judged = [s for s in SUBSETS if s in scores.get("subsets", {})]
        per_section = {sec: sum(n for sub, n in per_subset.items() if SUBSET_SECTION.get(sub) == sec)
                       for sec in SECTIONS}
        cells = [judge["judge"], judge["model"], judge["method"], str(counts["examples"]),
                 *(str(per_section[sec]) for sec in SECTIONS), f"{len(judged)}/{len(SUBSETS)}",
                 ", ".join(s for s in SUBSETS if s not in judged) or DASH, str(counts["unparsed_verdicts"])]
        rows.append((cells, False))
    return Table("", COVERAGE_HEADER, rows,
                 notes=["Unparsed verdicts: judge calls (two per example) whose output held no verdict; "
                        "each counts 0.5."])


# --- a Markdown file (headings, pipe tables, paragraphs) as an HTML page ------------------

def _split_row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(text: str, title: str) -> str:
    """Enough Markdown for the project's own tables: #-headings, pipe tables (first row the
    header, alignment row skipped, **bold** rows), and paragraphs."""
    body: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            body.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i].strip())
                i += 1
            header = _split_row(block[0])
            rows = []
            for row in block[1:]:
                cells = _split_row(row)
                if all(set(c) <= set(":- ") for c in cells):
                    continue  # the alignment row
                bold = all(c.startswith("**") and c.endswith("**") for c in cells if c)
                rows.append(([c[2:-2] if bold and c else c for c in cells], bold))
            body.append(html_table(Table("", header, rows)))
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(("#", "|")):
                para.append(lines[i].strip())
                i += 1
            body.append(f"<p>{html.escape(' '.join(para))}</p>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


# --- writing ------------------------------------------------------------------------

COMPARISON_INTRO = ("Reproduced figures beside the published ones (difference = reproduced - published, "
                    "in points of x100 accuracy). Published figures are shown as printed.")


def readme_markdown(rows: list[dict]) -> str:
    """The README block: per family, the reproduced table in the published layout, then,
    where any judge of the family has a published counterpart, the comparison."""
    parts = []
    for family in _families(rows):
        family_rows = [r for r in rows if r["family"] == family]
        block = [f"#### {family}", markdown_rows(results_table(family_rows))]
        if any(r["published_model"] for r in family_rows):
            comp = comparison_table(family_rows)
            block.append(f"Against the published figures ({family}): difference = reproduced - published.")
            block.append(markdown_rows(comp))
            block.extend(comp.notes)
        else:
            block.append(f"No published figures to compare with for {family}.")
        parts.append("\n\n".join(block))
    return "\n\n".join(parts) + "\n"


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_tables(judges_json: str, score_files: list[str], out_dir: str,
                 published_path: str | None = None) -> list[dict]:
    """Write every table of OUTPUTS into ``out_dir``; return the result rows."""
    judges = json.loads(judges_json)
    published = reference.load_published(published_path)
    rows = result_rows(judges, score_files, published)
    out = Path(out_dir)
    with atomic_path(out / OUTPUTS["csv"]) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    _write(out / OUTPUTS["md"], markdown_by_family(rows))
    _write(out / OUTPUTS["html"], render_html(results_tables(rows), "RewardBench results (reproduced)",
                                              "Score and sections x100; our GenRM rows in bold."))
    comparison = comparison_tables(rows)
    _write(out / OUTPUTS["comparison_md"], COMPARISON_INTRO + "\n\n" + render_markdown(comparison))
    _write(out / OUTPUTS["comparison_html"],
           render_html(comparison, "Reproduced vs published RewardBench figures", COMPARISON_INTRO))
    _write(out / OUTPUTS["comparison_fragment"], render_fragment(comparison))
    pub_tables = published_tables(published)
    pub_intro = ("RewardBench figures published with the original GenRM implementation, as printed. "
                 f"{FLAG_MARK} marks a Score that is not the mean of its sections.")
    _write(out / OUTPUTS["published_md"], pub_intro + "\n\n" + render_markdown(pub_tables))
    _write(out / OUTPUTS["published_html"], render_html(pub_tables, "Published RewardBench figures", pub_intro))
    coverage = coverage_table(judges, score_files)
    _write(out / OUTPUTS["coverage_md"], render_markdown([coverage]))
    _write(out / OUTPUTS["coverage_html"], render_html([coverage], "What was judged (from scores.json)"))
    _write(out / OUTPUTS["readme"], readme_markdown(rows))
    return rows


def sft_table(stats_files: list[str]) -> Table:
    """One row per SFT method from its stats.json (rows in, dropped by reason, rows out,
    A/B balance, and whatever else the format step records), flattened."""
    keys: list[str] = []
    rows = []
    for path in stats_files:
        flat: dict = {}
        _flatten("", read_json(path), flat)
        rows.append(flat)
        keys += [k for k in flat if k not in keys]
    first = [k for k in ("method", "rows_in") if k in keys]
    keys = first + [k for k in keys if k not in first]
    return Table("", keys, [([_format_value(r.get(k)) for k in keys], False) for r in rows],
                 notes=["dropped.<reason>: preference rows that are not valid pairs, by reason; "
                        "fraction_chosen_at_a: share of judge rows with the preferred answer at A "
                        "(seeded placement; about 0.5)."])


def write_sft_table(stats_files: list[str], out_md: str, out_html: str) -> None:
    table = sft_table(stats_files)
    _write(Path(out_md), render_markdown([table]))
    _write(Path(out_html), render_html([table], "SFT rows per method"))


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


def main(argv: list[str] | None = None) -> int:
    """``python -m genrm.tables sft|html ...``: what ``python -m genrm tables`` does not make."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m genrm.tables")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sft", help="the SFT stats of every method as one table")
    s.add_argument("--stats", nargs="+", required=True)
    s.add_argument("--out-md", required=True)
    s.add_argument("--out-html", required=True)
    s = sub.add_parser("html", help="a Markdown table file as an HTML page (for the Snakemake report)")
    s.add_argument("--md", required=True)
    s.add_argument("--title", required=True)
    s.add_argument("--out", required=True)
    a = p.parse_args(argv)
    try:
        if a.command == "sft":
            write_sft_table(a.stats, a.out_md, a.out_html)
        else:
            _write(Path(a.out), markdown_to_html(Path(a.md).read_text(encoding="utf-8"), a.title))
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
