"""The published RewardBench figures (layer 0) of the original GenRM implementation, and how
reproduced judges are matched to them.

The figures live in ``genrm/resources/published_rewardbench.yaml`` exactly as
printed. Nothing is corrected: a row whose Score is not the mean of its four
sections is *flagged* (see :attr:`PublishedRow.consistent`), and differences
are computed against the printed figures.

Matching a judge of this run to a published row: by default on (table label,
method), e.g. ``LLaMA3.1-8B-GenRM`` / ``Verify Only``; the production config's
labels are the published ones. ``report.published`` in the config overrides
that per judge name: ``{model: ..., method: ...}`` names the published row, and
``null`` says the judge has none. Judges without a counterpart (the demo's tiny
models) simply get no published figures; the tables stay complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from genrm.protocol import SECTIONS

RESOURCE = "resources/published_rewardbench.yaml"

# How the original evaluation script judged (docs/fidelity.md): greedy decoding (temperature 0)
# of at most 1024 new tokens, the verdict the last [[A]]/[[B]] of the text, on a vLLM server with
# a context of 32768 tokens that refused a longer prompt (nothing was ever shortened). Rows of the
# results tables produced otherwise are marked.
PUBLISHED_JUDGING = {"mode": "generate", "max_new_tokens": 1024, "max_model_len": 32768}
# Published figures have two decimals: a mean of sections that rounds to the printed
# Score differs from it by at most half a unit in the last place.
TOLERANCE = 0.005 + 1e-9


@dataclass(frozen=True)
class PublishedRow:
    family: str
    model: str
    method: str
    score: float
    chat: float
    chat_hard: float
    safety: float
    reasoning: float
    ours: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.method)

    @property
    def sections(self) -> dict[str, float]:
        return {s: getattr(self, s) for s in SECTIONS}

    @property
    def section_mean(self) -> float:
        """The mean of the four printed sections (what Score should be)."""
        return sum(self.sections.values()) / len(SECTIONS)

    @property
    def consistent(self) -> bool:
        """Whether the printed Score is the mean of the printed sections, up to rounding."""
        return abs(self.score - self.section_mean) <= TOLERANCE

    @property
    def flag(self) -> str:
        """A reader-facing note for an inconsistent row; empty when consistent."""
        if self.consistent:
            return ""
        return (f"published Score {self.score:.2f} is not the mean of its sections "
                f"({self.section_mean:.3f}); shown as printed, not corrected")

    def as_dict(self) -> dict:
        return {"family": self.family, "model": self.model, "method": self.method, "score": self.score,
                **self.sections, "ours": self.ours}


def load_published(path: str | Path | None = None) -> list[PublishedRow]:
    """Every published row, in the published order (families, then rows)."""
    if path is None:
        text = resources.files("genrm").joinpath(RESOURCE).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    rows = []
    for family, entries in data["families"].items():
        for e in entries:
            rows.append(PublishedRow(family=family, model=e["model"], method=e["method"],
                                     score=float(e["score"]), ours=bool(e.get("ours", False)),
                                     **{s: float(e[s]) for s in SECTIONS}))
    keys = [r.key for r in rows]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"published rows are not unique by (model, method): {duplicates}")
    return rows


def inconsistent(rows: list[PublishedRow]) -> list[PublishedRow]:
    return [r for r in rows if not r.consistent]


def by_key(rows: list[PublishedRow]) -> dict[tuple[str, str], PublishedRow]:
    return {r.key: r for r in rows}


# --- matching judges of a run to published rows -------------------------------

def match(table_row: dict, index: dict[tuple[str, str], PublishedRow]) -> PublishedRow | None:
    """The published row of one results-table row. A row carrying a ``published`` key
    (set by the tables rule from the config) uses it, None meaning "no counterpart";
    otherwise the row is matched on (model label, method)."""
    if "published" in table_row:
        target = table_row["published"]
        if target is None:
            return None
        key = (target["model"], target["method"])
    else:
        key = (table_row["model"], table_row["method"])
    return index.get(key)
