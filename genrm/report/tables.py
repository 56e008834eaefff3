"""Results tables (layer 3): ``results.csv``, one table per family in the published layout,
the published-vs-reproduced comparison, the published reference itself, what was judged,
the judges' diagnostics, the SFT rows per method, and the README block that shows them.

Every table is a :class:`Table`: a pandas DataFrame of cells already formatted as
printed ("88.76", "+1.23", "–"), which rows are ours (bold), and its title and
notes. pandas renders it: ``DataFrame.to_markdown`` (tabulate, pipe tables with
centred columns) for Markdown and ``DataFrame.to_html`` for HTML, so the two never
disagree. HTML pages are self-contained (the Snakemake report shows them in a frame).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from genrm import published as pub
from genrm.evaluate import BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED
from genrm.io import atomic_path, read_json, write_text
from genrm.protocol import SECTION_LABELS, SECTIONS, SUBSET_SECTION, SUBSETS

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
PUBLISHED_COLUMNS = ["published_model", "published_method", "published_score",
                     *(f"published_{s}" for s in SECTIONS)]
DIFF_COLUMNS = ["diff_score", *(f"diff_{s}" for s in SECTIONS)]
# How each row's verdicts were produced (scores.json "protocol", from the judging job's judging.json).
PROTOCOL_COLUMNS = ["protocol", "backend", "context", "max_new_tokens", "shortened", "agreement_with_greedy",
                    "protocol_deviations"]
CSV_COLUMNS = ["family", "model", "method", "score", *SECTIONS, "judge", "ours", "examples", "unparsed_verdicts",
               *PROTOCOL_COLUMNS, *PUBLISHED_COLUMNS, *DIFF_COLUMNS, "published_flag"]
METRICS = ("score", *SECTIONS)
HEADER = ["Model", "Method", "Score", *(SECTION_LABELS[s] for s in SECTIONS)]
COMPARISON_HEADER = ["Model", "Method", "Figures", "Score", *(SECTION_LABELS[s] for s in SECTIONS)]
FLAG_MARK = "†"
DASH = "–"
# Marks on the Method cell of a row judged otherwise than the original evaluation script
# (genrm.published.PUBLISHED_JUDGING), each explained in a note under the table.
PROTOCOL_MARKS = {"logprob": "‡", "max_new_tokens": "¶", "shortened": "§"}

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


# --- the result rows (results.csv) ----------------------------------------------------

def percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def difference(ours: float | None, published: float | None) -> float | None:
    if ours is None or published is None:
        return None
    return round(ours - published, 2)


def result_rows(judges: list[dict], score_files: list[str],
                published: list[pub.PublishedRow] | None = None) -> list[dict]:
    """One row per judge: its identity, Score and sections (x100, two decimals), and the
    published figures it is compared with (None where it has no published counterpart)."""
    if len(judges) != len(score_files):
        raise ValueError(f"{len(judges)} judges but {len(score_files)} score files")
    index = pub.by_key(pub.load_published() if published is None else published)
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
            **protocol_columns(scores),
        }
        match = pub.match(judge, index)
        row["published_model"] = match.model if match else None
        row["published_method"] = match.method if match else None
        for m in METRICS:
            row[f"published_{m}"] = getattr(match, m) if match else None
            row[f"diff_{m}"] = difference(row[m], row[f"published_{m}"])
        row["published_flag"] = match.flag if match else ""
        rows.append(row)
    return rows


def protocol_deviations(protocol: dict | None) -> list[str]:
    """How a judging job departed from the original evaluation script (keys of PROTOCOL_MARKS):
    verdicts read in logprob mode, another generation cap, examples shortened to fit the context.
    A smaller context that shortened nothing gives the same verdicts: not a deviation."""
    if not protocol:
        return []
    found = []
    if protocol["mode"] == "logprob":
        found.append("logprob")
    if protocol["mode"] == "generate" and protocol["max_new_tokens"] != pub.PUBLISHED_JUDGING["max_new_tokens"]:
        found.append("max_new_tokens")
    if protocol["shortened"]:
        found.append("shortened")
    return found


def protocol_columns(scores: dict) -> dict:
    """The PROTOCOL_COLUMNS of one judge from its scores.json (empty when it has no protocol record)."""
    protocol = scores.get("protocol")
    if not protocol:
        return dict.fromkeys(PROTOCOL_COLUMNS)
    agreement = scores["diagnostics"].get("agreement_with_greedy")
    share = agreement["share"] if agreement else None
    return {
        "protocol": protocol["mode"],
        "backend": protocol["backend"],
        "context": protocol["max_model_len"],
        "max_new_tokens": protocol["max_new_tokens"],
        "shortened": protocol["shortened"],
        "agreement_with_greedy": None if share is None else round(share, 4),
        "protocol_deviations": "; ".join(protocol_deviations(protocol)),
        # for the notes under the tables, not a column
        "_agreement": agreement,
    }


def results_frame(rows: list[dict]) -> pd.DataFrame:
    """The result rows as results.csv holds them (missing figures empty)."""
    return pd.DataFrame(rows, columns=CSV_COLUMNS).astype({"context": "Int64", "max_new_tokens": "Int64",
                                                           "shortened": "Int64"})


# --- a table, rendered by pandas as Markdown or HTML ------------------------------------

@dataclass
class Table:
    frame: pd.DataFrame  # cells as printed, one column per header cell
    bold: list[bool]  # per row: a model trained by this run (printed in bold)
    title: str = ""
    notes: list[str] = field(default_factory=list)
    intro: str = ""
    align: tuple[str, ...] | None = None  # per column; centred when None

    @classmethod
    def of(cls, header: list[str], rows: list[tuple[list[str], bool]], title: str = "", **kw) -> Table:
        frame = pd.DataFrame([cells for cells, _ in rows], columns=header, dtype=object)
        return cls(frame, [bold for _, bold in rows], title, **kw)


def _cell(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return DASH if value is None else f"{value:+.2f}"


def _emphasise(table: Table, mark) -> pd.DataFrame:
    """The frame with every non-empty cell of a bold row passed through ``mark``."""
    frame = table.frame.copy()
    for i, bold in enumerate(table.bold):
        if bold:
            frame.iloc[i] = [mark(c) if c else c for c in frame.iloc[i]]
    return frame


def markdown_table(table: Table) -> str:
    """A pipe table: header, alignment row (``:---:`` centred), bold rows as ``**cell**``."""
    align = table.align or ("center",) * table.frame.shape[1]
    return _emphasise(table, lambda c: f"**{c}**").to_markdown(
        index=False, tablefmt="pipe", colalign=align, disable_numparse=True)


def render_markdown(tables: list[Table], heading: str = "####") -> str:
    parts = []
    for t in tables:
        block = [f"{heading} {t.title}"] if t.title else []
        if t.intro:
            block.append(t.intro)
        block.append(markdown_table(t))
        block.extend(t.notes)
        parts.append("\n\n".join(block))
    return "\n\n".join(parts) + "\n"


HTML_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #1f2328; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0 0.8em 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: center; }
th { background: #f6f8fa; }
tbody tr:has(> td:first-child:empty) td { color: #57606a; }
p.note { font-size: 0.9em; color: #57606a; margin: 0.2em 0; }
"""


def html_table(table: Table) -> str:
    """The table as HTML: cells escaped, bold rows' cells in ``<strong>``."""
    frame = table.frame.map(lambda c: html.escape(str(c)))
    frame.columns = [html.escape(str(c)) for c in frame.columns]
    escaped = Table(frame, table.bold)
    return _emphasise(escaped, lambda c: f"<strong>{c}</strong>").to_html(
        index=False, escape=False, border=0, justify="center")


def render_fragment(tables: list[Table]) -> str:
    """Tables as an HTML fragment without page styles (embedded in the report's front page)."""
    parts = ['<div class="genrm-tables">']
    for t in tables:
        if t.title:
            parts.append(f"<h3>{html.escape(t.title)}</h3>")
        # no style sheet here: the cells are centred by the table's own attribute
        parts.append(html_table(t).replace("<table", '<table style="text-align:center"', 1))
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


def marked_method(row: dict) -> str:
    """The Method cell: the method, then the marks of the row's protocol deviations."""
    deviations = [d for d in (row.get("protocol_deviations") or "").split("; ") if d]
    marks = "".join(PROTOCOL_MARKS[d] for d in PROTOCOL_MARKS if d in deviations)
    return f"{row['method']} {marks}" if marks else row["method"]


def _who(row: dict) -> str:
    return f"{row['model']} ({row['method']})"


def _agreement_text(agreement: dict | None) -> str:
    if not agreement or agreement["share"] is None:
        return "not measured"
    return (f"{100 * agreement['share']:.2f}% of {agreement['compared']} greedy verdicts "
            f"({agreement['unparsed_greedy']} unparsed)")


def protocol_notes(rows: list[dict]) -> list[str]:
    """One note per mark used by ``rows``: what it means, and for whom (with the figures)."""
    def having(key):
        return [r for r in rows if key in (r.get("protocol_deviations") or "").split("; ")]

    notes = []
    if logprob := having("logprob"):
        notes.append(f"{PROTOCOL_MARKS['logprob']} judged in logprob mode (verdict read after `[[`), not by greedy "
                     "decoding; agreement with greedy decoding on a seeded sample (both orders): "
                     + "; ".join(f"{_who(r)} {_agreement_text(r.get('_agreement'))}" for r in logprob)
                     + "; see diagnostics.")
    if capped := having("max_new_tokens"):
        notes.append(f"{PROTOCOL_MARKS['max_new_tokens']} a generation cap other than the published "
                     f"{pub.PUBLISHED_JUDGING['max_new_tokens']} new tokens: "
                     + "; ".join(f"{_who(r)} {r['max_new_tokens']}" for r in capped) + ".")
    if shortened := having("shortened"):
        notes.append(f"{PROTOCOL_MARKS['shortened']} examples shortened to fit the context (the original never "
                     "shortened a prompt): "
                     + "; ".join(f"{_who(r)} {r['shortened']} of {r['examples']} at {r['context']} tokens"
                                 for r in shortened) + ".")
    return notes


def results_table(rows: list[dict], title: str = "") -> Table:
    """The published layout: Model, Method, Score, sections; the models trained here in bold; a row judged
    otherwise than the original evaluation script is marked on its Method cell and explained below."""
    return Table.of(HEADER, [([r["model"], marked_method(r), *(_cell(r[m]) for m in METRICS)], bool(r["ours"]))
                             for r in rows], title, notes=protocol_notes(rows))


def results_tables(rows: list[dict]) -> list[Table]:
    return [results_table([r for r in rows if r["family"] == f], f) for f in _families(rows)]


def _flag_note(model: str, method: str, flag: str) -> str:
    return f"{FLAG_MARK} {model} ({method}): {flag}."


def comparison_table(rows: list[dict], title: str = "", with_protocol_notes: bool = True) -> Table:
    """Per judge: the reproduced row, then (where a published row matches) the published
    figures and the difference reproduced minus published. Protocol marks as in the results table."""
    out: list[tuple[list[str], bool]] = []
    notes = protocol_notes(rows) if with_protocol_notes else []
    for r in rows:
        reproduced = [_cell(r[m]) for m in METRICS]
        if r["published_model"] is None:
            out.append(([r["model"], marked_method(r), "reproduced (no published row)", *reproduced],
                        bool(r["ours"])))
            continue
        out.append(([r["model"], marked_method(r), "reproduced", *reproduced], bool(r["ours"])))
        published = [_cell(r[f"published_{m}"]) for m in METRICS]
        label = "published"
        if r["published_flag"]:
            published[0] += f" {FLAG_MARK}"
            notes.append(_flag_note(r["published_model"], r["published_method"], r["published_flag"]))
        if (r["published_model"], r["published_method"]) != (r["model"], r["method"]):
            label = f"published ({r['published_model']}, {r['published_method']})"
        out.append((["", "", label, *published], False))
        out.append((["", "", "difference", *(_signed(r[f"diff_{m}"]) for m in METRICS)], False))
    return Table.of(COMPARISON_HEADER, out, title, notes=notes)


def comparison_tables(rows: list[dict]) -> list[Table]:
    return [comparison_table([r for r in rows if r["family"] == f], f) for f in _families(rows)]


def published_tables(published: list[pub.PublishedRow]) -> list[Table]:
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
        tables.append(Table.of(HEADER, out, family, notes=notes))
    return tables


# --- coverage: what scores.json says was judged ------------------------------------

COVERAGE_HEADER = ["Judge", "Model", "Method", "Examples", *(f"{SECTION_LABELS[s]} examples" for s in SECTIONS),
                   "Subsets judged", "Missing subsets", "Unparsed verdicts"]


def coverage_table(judges: list[dict], score_files: list[str]) -> Table:
    """Per judge: how many examples of each section were judged, which subsets are missing
    (a section without some subsets is computed from the others), unparsed verdicts. The
    position-bias diagnostics are their own table (results/tables/diagnostics.md)."""
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
    return Table.of(COVERAGE_HEADER, rows,
                    notes=["Unparsed verdicts: judge calls (two per example) whose output held no verdict; "
                           "each counts 0.5."])


# --- the judges' diagnostics (scores.json "diagnostics") ---------------------------

DIAGNOSTICS_COLUMNS = ["Judge", "Mode", "Score", "95% CI", "Unparsed", "Acc. chosen=A", "Acc. chosen=B",
                       "Consistency", "Prefers A", "Shortened", "Context", "Agrees with greedy"]
DIAGNOSTICS_TITLE = "Judge diagnostics"
DIAGNOSTICS_NOTE = (
    "Percentages. Score and its bootstrap 95% interval (examples resampled within subsets, "
    f"{BOOTSTRAP_SAMPLES} samples, seed {BOOTSTRAP_SEED}); Unparsed: judge calls without a verdict; "
    "Acc. chosen=A/B: accuracy when the chosen answer is shown first/second; Consistency: same winner "
    "in both orders; Prefers A: share of verdicts for position A (50 = no position bias); "
    "Shortened: examples cut to fit the context (count); Context: the context the judge used, in tokens "
    "(the configured one, lowered to the model's own limit where that is smaller); Agrees with greedy: "
    "judges in logprob mode, the share of the greedy verdicts (the published protocol: greedy decoding, "
    "the last verdict of the text) on a seeded sample, both orders, that equal the logprob verdict "
    "(agreeing / parsed greedy verdicts; unparsed greedy verdicts).")


def _pct(value) -> str:
    return DASH if value is None else f"{100 * value:.2f}"


def diagnostics_cells(name: str, scores: dict) -> list[str]:
    """One row of the diagnostics table from a scores.json payload (percentages)."""
    d = scores.get("diagnostics", {})
    ci = d.get("score_ci95")
    protocol = scores.get("protocol") or {}
    agreement = d.get("agreement_with_greedy")
    agrees = DASH
    if agreement:
        agrees = (f"{_pct(agreement['share'])} ({agreement['agree']}/{agreement['compared']}; "
                  f"{agreement['unparsed_greedy']} unparsed)")
    return [name, d.get("mode") or DASH, _pct(scores.get("score")),
            DASH if not ci else f"{100 * ci[0]:.2f} – {100 * ci[1]:.2f}",
            _pct(d.get("unparsed_rate")), _pct(d.get("accuracy_chosen_a")), _pct(d.get("accuracy_chosen_b")),
            _pct(d.get("position_consistency")), _pct(d.get("prefer_a")), str(d.get("shortened", DASH)),
            str(protocol.get("max_model_len", DASH)), agrees]


def _judge_name(judge: dict) -> str:
    return f"{judge['model']} ({judge.get('method', '')})" if judge.get("model") else judge["judge"]


def diagnostics_table(judges: list[dict], score_files: list[str]) -> Table:
    """One row per judge, in the judges' order; our GenRMs in bold."""
    if len(judges) != len(score_files):
        raise ValueError(f"{len(judges)} judges but {len(score_files)} score files")
    rows = [(diagnostics_cells(_judge_name(j), read_json(p)), bool(j.get("ours")))
            for j, p in zip(judges, score_files)]
    return Table.of(DIAGNOSTICS_COLUMNS, rows, DIAGNOSTICS_TITLE, notes=[DIAGNOSTICS_NOTE],
                    align=("left",) + ("center",) * (len(DIAGNOSTICS_COLUMNS) - 1))


def write_diagnostics_table(judges: list[dict], score_files: list[str], out_md: str, out_html: str) -> str:
    """Write the diagnostics table of all judges as Markdown and as an HTML page; return the Markdown."""
    table = diagnostics_table(judges, score_files)
    text = render_markdown([table], heading="##")
    page = Table(table.frame, table.bold, notes=table.notes, align=table.align)  # the page's <h1> is the title
    write_text(out_md, text)
    write_text(out_html, render_html([page], DIAGNOSTICS_TITLE))
    return text


# --- GenRM vs the Bradley-Terry model of the same base, trained on the same pairs --------

BT_TITLE = "GenRM vs Bradley-Terry, same base model and pairs"
BT_NOTE = ("Score and sections x100. Each Bradley-Terry model is trained on the same valid pairs as the "
           "GenRMs of its base model; difference = GenRM - Bradley-Terry, in points.")


def bt_comparison_tables(judges: list[dict], score_files: list[str]) -> list[Table]:
    """Per base model with a Bradley-Terry model (judge kind ``bt``): that model, each GenRM of
    the same base (kind ``genrm``), and the difference GenRM - Bradley-Terry per section."""
    if len(judges) != len(score_files):
        raise ValueError(f"{len(judges)} judges but {len(score_files)} score files")
    values = {}
    for judge, path in zip(judges, score_files):
        scores = read_json(path)
        values[judge["judge"]] = {"score": percent(scores["score"]),
                                  **{sec: percent(scores["sections"][sec]) for sec in SECTIONS}}
    tables = []
    for bt in (j for j in judges if j["kind"] == "bt"):
        siblings = [j for j in judges if j["kind"] == "genrm" and j["base"] == bt["base"]]
        ref = values[bt["judge"]]
        rows = [([bt["model"], bt["method"], *(_cell(ref[m]) for m in METRICS)], False)]
        for g in siblings:
            mine = values[g["judge"]]
            rows.append(([g["model"], g["method"], *(_cell(mine[m]) for m in METRICS)], True))
            rows.append((["", f"difference ({g['method']} - Bradley-Terry)",
                          *(_signed(difference(mine[m], ref[m])) for m in METRICS)], False))
        tables.append(Table.of(HEADER, rows, f"{bt['family']}: {bt['model']}"))
    return tables


def write_bt_comparison(judges: list[dict], score_files: list[str], out_md: str, out_html: str) -> str:
    """Write the GenRM vs Bradley-Terry tables as Markdown and as an HTML page; return the Markdown."""
    tables = bt_comparison_tables(judges, score_files)
    text = f"## {BT_TITLE}\n\n{BT_NOTE}\n\n" + render_markdown(tables, heading="####")
    write_text(out_md, text)
    write_text(out_html, render_html(tables, BT_TITLE, BT_NOTE))
    return text


# --- SFT rows per method (stats.json of the format step) ---------------------------

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
    return Table.of(keys, [([_format_value(r.get(k)) for k in keys], False) for r in rows],
                    notes=["dropped.<reason>: preference rows that are not valid pairs, by reason; "
                           "fraction_chosen_at_a: share of judge rows with the preferred answer at A "
                           "(seeded placement; about 0.5); pairs: the Bradley-Terry rows (method bt), "
                           "one per valid pair."])


def write_sft_table(stats_files: list[str], out_md: str, out_html: str) -> None:
    table = sft_table(stats_files)
    write_text(out_md, render_markdown([table]))
    write_text(out_html, render_html([table], "Training rows per method"))


# --- writing ------------------------------------------------------------------------

COMPARISON_INTRO = ("Reproduced figures beside the published ones (difference = reproduced - published, "
                    "in points of x100 accuracy). Published figures are shown as printed.")
PUBLISHED_INTRO = ("RewardBench figures published with the original GenRM implementation, as printed. "
                   f"{FLAG_MARK} marks a Score that is not the mean of its sections.")


def readme_markdown(rows: list[dict]) -> str:
    """The README block: per family, the reproduced table in the published layout, then,
    where any judge of the family has a published counterpart, the comparison."""
    parts = []
    for family in _families(rows):
        family_rows = [r for r in rows if r["family"] == family]
        results = results_table(family_rows)
        block = [f"#### {family}", markdown_table(results), *results.notes]
        if any(r["published_model"] for r in family_rows):
            comp = comparison_table(family_rows, with_protocol_notes=False)  # the same marks, explained above
            block.append(f"Against the published figures ({family}): difference = reproduced - published.")
            block.append(markdown_table(comp))
            block.extend(comp.notes)
        else:
            block.append(f"No published figures to compare with for {family}.")
        parts.append("\n\n".join(block))
    return "\n\n".join(parts) + "\n"


def write_tables(judges: list[dict], score_files: list[str], out_dir: str,
                 published_path: str | None = None) -> list[dict]:
    """Write every file of OUTPUTS into ``out_dir``; return the result rows."""
    published = pub.load_published(published_path)
    rows = result_rows(judges, score_files, published)
    out = Path(out_dir)
    with atomic_path(out / OUTPUTS["csv"]) as tmp:
        results_frame(rows).to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8")
    results = results_tables(rows)
    write_text(out / OUTPUTS["md"], render_markdown(results))
    write_text(out / OUTPUTS["html"], render_html(results, "RewardBench results (reproduced)",
                                                  "Score and sections x100; the models trained by this run "
                                                  "(GenRMs, Bradley-Terry) in bold."))
    comparison = comparison_tables(rows)
    write_text(out / OUTPUTS["comparison_md"], COMPARISON_INTRO + "\n\n" + render_markdown(comparison))
    write_text(out / OUTPUTS["comparison_html"],
               render_html(comparison, "Reproduced vs published RewardBench figures", COMPARISON_INTRO))
    write_text(out / OUTPUTS["comparison_fragment"], render_fragment(comparison))
    reference = published_tables(published)
    write_text(out / OUTPUTS["published_md"], PUBLISHED_INTRO + "\n\n" + render_markdown(reference))
    write_text(out / OUTPUTS["published_html"], render_html(reference, "Published RewardBench figures",
                                                            PUBLISHED_INTRO))
    coverage = coverage_table(judges, score_files)
    write_text(out / OUTPUTS["coverage_md"], render_markdown([coverage]))
    write_text(out / OUTPUTS["coverage_html"], render_html([coverage], "What was judged (from scores.json)"))
    write_text(out / OUTPUTS["readme"], readme_markdown(rows))
    return rows


# --- the README block ------------------------------------------------------------------

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
    write_text(path, new)
    return True
