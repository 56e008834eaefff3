"""Plots of the RewardBench results (matplotlib, Agg backend, PNG).

- ``sections``: Score and the four section scores of every judge, one panel per
  family, with the published figure of a judge marked where there is one;
- ``heatmap``: accuracy per RewardBench subset (columns, grouped by section) for
  every judge (rows);
- ``genrm-vs-base``: one GenRM against the base model it was trained from, and the
  Bradley-Terry model of the same base when the run trains one: the sections side
  by side, and every subset as a point (base on x, GenRM and Bradley-Terry on y).

Each plot is a pure function of the judges' table rows and their ``scores.json``
(plus the published reference), returning the figure's data for tests;
``python -m genrm plots <plot> ...`` is what the rules call.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from genrm.io import atomic_path  # noqa: E402
from genrm.protocol import SECTION_LABELS, SECTION_WEIGHTS, SECTIONS, SUBSET_SECTION, SUBSETS  # noqa: E402
from genrm.published import PublishedRow, by_key, load_published, match  # noqa: E402

METRICS = ("score", *SECTIONS)
METRIC_LABELS = {"score": "Score", **SECTION_LABELS}
SECTION_COLOURS = {"chat": "#4c72b0", "chat_hard": "#dd8452", "safety": "#55a868", "reasoning": "#c44e52"}
DPI = 110
# No software version or date in the PNG: the same data gives the same bytes.
PNG_METADATA = {"Software": None}


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _save(fig, out: str) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata=PNG_METADATA, bbox_inches="tight")
    plt.close(fig)


def judge_label(judge: dict) -> str:
    return f"{judge['model']} ({judge['method']})"


# --- section scores per judge, grouped by family ----------------------------------

def section_data(judges: list[dict], scores: list[dict],
                 published: list[PublishedRow] | None = None) -> dict[str, list[dict]]:
    """family -> [{label, ours, values: {metric: x100}, published: {metric: x100} | None}]"""
    index = by_key(load_published() if published is None else published)
    out: dict[str, list[dict]] = {}
    for judge, s in zip(judges, scores):
        pub = match(judge, index)
        values = {"score": _pct(s["score"]), **{sec: _pct(s["sections"][sec]) for sec in SECTIONS}}
        out.setdefault(judge["family"], []).append({
            "label": judge_label(judge),
            "ours": bool(judge["ours"]),
            "values": values,
            "published": {m: getattr(pub, m) for m in METRICS} if pub else None,
        })
    return out


def plot_sections(judges: list[dict], scores: list[dict], out: str,
                  published: list[PublishedRow] | None = None) -> dict[str, list[dict]]:
    data = section_data(judges, scores, published)
    families = list(data)
    fig, axes = plt.subplots(len(families), 1, figsize=(10, 3.6 * len(families)), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, family in zip(axes[:, 0], families):
        entries = data[family]
        width = 0.8 / max(len(entries), 1)
        any_published = False
        for i, entry in enumerate(entries):
            xs = [k + (i - (len(entries) - 1) / 2) * width for k in range(len(METRICS))]
            ys = [entry["values"][m] if entry["values"][m] is not None else 0 for m in METRICS]
            ax.bar(xs, ys, width * 0.95, color=cmap(i % 10), label=entry["label"],
                   edgecolor="black" if entry["ours"] else "none", linewidth=0.8)
            if entry["published"]:
                any_published = True
                ax.scatter(xs, [entry["published"][m] for m in METRICS], marker="_", s=220, color="black",
                           linewidths=2, zorder=3)
        if any_published:
            ax.scatter([], [], marker="_", s=220, color="black", linewidths=2, label="published figure")
        ax.axhline(50, color="grey", linestyle=":", linewidth=1)
        ax.set_xticks(range(len(METRICS)), [METRIC_LABELS[m] for m in METRICS])
        ax.set_ylim(0, 105)
        ax.set_ylabel("accuracy x100")
        ax.set_title(f"{family}: RewardBench Score and sections (dotted: chance)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    _save(fig, out)
    return data


# --- per-subset heatmap ---------------------------------------------------------------

def heatmap_data(judges: list[dict], scores: list[dict]) -> tuple[list[str], list[str], list[list[float | None]]]:
    """(row labels, subsets in section order, matrix x100 with None where a subset is missing)."""
    labels = [f"{j['family']}: {judge_label(j)}" for j in judges]
    matrix = [[_pct(s["subsets"].get(sub)) for sub in SUBSETS] for s in scores]
    return labels, list(SUBSETS), matrix


def plot_heatmap(judges: list[dict], scores: list[dict], out: str):
    import numpy as np

    labels, subsets, matrix = heatmap_data(judges, scores)
    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    fig, ax = plt.subplots(figsize=(2.0 + 0.55 * len(subsets), 1.6 + 0.42 * len(labels)))
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for i in range(len(labels)):
        for k in range(len(subsets)):
            v = values[i, k]
            ax.text(k, i, "–" if np.isnan(v) else f"{v:.0f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(subsets)), subsets, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    start = 0
    for section, weights in SECTION_WEIGHTS.items():
        end = start + len(weights)
        if end < len(subsets):
            ax.axvline(end - 0.5, color="black", linewidth=1.5)
        ax.text((start + end - 1) / 2, -0.7, SECTION_LABELS[section], ha="center", va="bottom", fontsize=9,
                fontweight="bold")
        start = end
    fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01, label="accuracy x100")
    ax.set_title("Accuracy per RewardBench subset", pad=22)
    fig.tight_layout()
    _save(fig, out)
    return labels, subsets, matrix


# --- a GenRM against its base model ------------------------------------------------------

def _metric(scores: dict, m: str) -> float | None:
    return _pct(scores["score"] if m == "score" else scores["sections"][m])


def genrm_vs_base_data(base: dict, genrm: dict, bt: dict | None = None) -> dict:
    """metrics: (base, GenRM) per metric; subsets: (base, GenRM) per subset both judged; with a
    Bradley-Terry model, ``bt``: its metrics and subsets (None where it did not judge one)."""
    metrics = {m: (_metric(base, m), _metric(genrm, m)) for m in METRICS}
    subsets = {sub: (_pct(base["subsets"].get(sub)), _pct(genrm["subsets"].get(sub))) for sub in SUBSETS
               if sub in base["subsets"] and sub in genrm["subsets"]}
    data = {"metrics": metrics, "subsets": subsets}
    if bt is not None:
        data["bt"] = {"metrics": {m: _metric(bt, m) for m in METRICS},
                      "subsets": {sub: _pct(bt["subsets"].get(sub)) for sub in subsets}}
    return data


def plot_genrm_vs_base(base_judge: dict, base: dict, genrm_judge: dict, genrm: dict, out: str,
                       bt_judge: dict | None = None, bt: dict | None = None) -> dict:

    data = genrm_vs_base_data(base, genrm, bt)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [1.4, 1]})
    xs = range(len(METRICS))
    width = 0.27 if bt is not None else 0.4
    offsets = (-width, 0.0, width) if bt is not None else (-width / 2, width / 2)
    bars = [([data["metrics"][m][0] or 0 for m in METRICS], "#9aa5b1", f"base: {judge_label(base_judge)}"),
            ([data["metrics"][m][1] or 0 for m in METRICS], "#2b6cb0", f"GenRM: {judge_label(genrm_judge)}")]
    if bt is not None:
        bars.append(([data["bt"]["metrics"][m] or 0 for m in METRICS], "#d69e2e",
                     f"Bradley-Terry: {judge_label(bt_judge)}"))
    for offset, (values, colour, label) in zip(offsets, bars):
        left.bar([x + offset for x in xs], values, width, color=colour, label=label)
    for x, m in zip(xs, METRICS):
        bv, gv = data["metrics"][m]
        if bv is not None and gv is not None:
            text = f"{gv - bv:+.1f}"
            tv = data["bt"]["metrics"][m] if bt is not None else None
            if tv is not None:
                text += f"\nvs BT {gv - tv:+.1f}"
            left.text(x, max(bv, gv, tv or 0) + 2, text, ha="center", fontsize=8 if bt is not None else 9)
    left.axhline(50, color="grey", linestyle=":", linewidth=1)
    left.set_xticks(list(xs), [METRIC_LABELS[m] for m in METRICS])
    left.set_ylim(0, 118 if bt is not None else 112)
    left.set_ylabel("accuracy x100")
    left.set_title("Score and sections (label: GenRM - base" + ("; GenRM - Bradley-Terry)" if bt is not None
                                                                 else ")"))
    left.legend(fontsize=8, loc="lower left")
    for section in SECTIONS:
        subs = [sub for sub in data["subsets"] if SUBSET_SECTION[sub] == section]
        if not subs:
            continue
        right.scatter([data["subsets"][s][0] for s in subs], [data["subsets"][s][1] for s in subs],
                      color=SECTION_COLOURS[section], label=SECTION_LABELS[section], s=28)
        if bt is not None:
            pts = [(data["subsets"][s][0], data["bt"]["subsets"][s]) for s in subs
                   if data["bt"]["subsets"][s] is not None]
            right.scatter([p[0] for p in pts], [p[1] for p in pts], facecolors="none",
                          edgecolors=SECTION_COLOURS[section], s=40, linewidths=1.2)
    if bt is not None:
        right.scatter([], [], facecolors="none", edgecolors="black", s=40, label="Bradley-Terry (hollow)")
    right.plot([0, 100], [0, 100], color="grey", linestyle="--", linewidth=1)
    right.set_xlim(-2, 102)
    right.set_ylim(-2, 102)
    right.set_xlabel("base model accuracy x100")
    right.set_ylabel("GenRM accuracy x100" + (" (hollow: Bradley-Terry)" if bt is not None else ""))
    right.set_title("Per subset (above the diagonal: better than the base)")
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{genrm_judge['model']} ({genrm_judge['method']}) vs its base {base_judge['model']}"
                 + (f" and {judge_label(bt_judge)}" if bt is not None else ""))
    fig.tight_layout()
    _save(fig, out)
    return data
