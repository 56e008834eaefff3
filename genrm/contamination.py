"""Contamination check: do RewardBench prompts occur in the training prompts?

Two tests per (training row, RewardBench prompt):

- **exact**: the prompt equals a user turn of the training conversation, or the
  rendered question (``genrm.protocol.render_question``), after normalisation
  (Unicode NFKC, case folding, punctuation and whitespace dropped: the text is
  its sequence of alphanumeric words);
- **n-gram**: the two share at least ``min_shared_ngrams`` distinct word
  n-grams (default 13-grams, the usual long-overlap test) of the normalised
  text. Every message before the final answer is scanned, each on its own (no
  n-gram spans two messages). A RewardBench prompt shorter than n words can
  only match exactly.

Speed (the 80K-row training set in seconds, see ``benchmarks/contamination.py``):
words are mapped to integers through the RewardBench vocabulary (a word outside
it can never be part of a shared n-gram, so it breaks windows), the n-grams of a
chunk of rows are hashed at once with a polynomial hash in numpy, and
looked up in the sorted hashes of the RewardBench n-grams. Every hit is then
verified word by word, so a hash collision cannot create a match.

Outputs: a per-subset report (Markdown, HTML, CSV), a JSON summary, and one JSON
line per match; ``decontaminate`` drops the matched training rows and records
how many. ``python -m genrm contamination check|decontaminate`` is what the
rules call.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import time
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from genrm.io import atomic_path, iter_jsonl, read_json, write_json, write_jsonl
from genrm.protocol import SUBSET_SECTION, SUBSETS, render_question

TOKEN_RE = re.compile(r"[^\W_]+")
HASH_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier (arithmetic wraps mod 2**64)
CHUNK_ROWS = 20_000
FILTER_BITS = 24
FILTER_SHIFT = np.uint64(64 - FILTER_BITS)
DEFAULT_N = 13


# ASCII fast path (most text): lower-case letters and digits kept, every other byte a space.
_ASCII_TABLE = bytes(c if (48 <= c <= 57 or 97 <= c <= 122) else (c + 32 if 65 <= c <= 90 else 32)
                     for c in range(256))


def tokens(text: str) -> list[str]:
    """The normalised words of a text: NFKC, case-folded, alphanumeric runs only."""
    if text.isascii():  # NFKC and casefold are the identity and lower() here: same result, 5x faster
        return text.encode("ascii").translate(_ASCII_TABLE).decode("ascii").split()
    return TOKEN_RE.findall(unicodedata.normalize("NFKC", text).casefold())


def normalise(text: str) -> str:
    return " ".join(tokens(text))


# --- what a training row asks -------------------------------------------------------

def _conversation(row: dict) -> list[dict]:
    for key in ("chosen", "rejected"):
        conv = row.get(key)
        if isinstance(conv, list):
            msgs = [m for m in conv if isinstance(m, dict) and isinstance(m.get("content"), str)]
            if msgs:
                return msgs
    return []


def training_prompts(row: dict) -> tuple[list[dict], str | None]:
    """(prompt messages, rendered question or None) of one preference row.

    The prompt is the conversation before the final answer (malformed rows are read
    as far as they can be: the format step drops them later, with its own counts).
    Every prompt message is scanned for n-grams; every user turn, and the rendered
    question of a prompt of several messages, is compared exactly.
    """
    msgs = _conversation(row)
    context = msgs[:-1] if msgs and msgs[-1].get("role") == "assistant" else msgs
    rendered = None
    if len(context) > 1 and all(isinstance(m.get("role"), str) for m in context):
        rendered = render_question(context)
    return context, rendered


# --- the RewardBench side -----------------------------------------------------------------

def _window_hashes(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling hashes of every window of n ids, and whether the window is free of 0
    (0 = separator or a word outside the RewardBench vocabulary)."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
    h = np.zeros(count, dtype=np.uint64)
    for k in range(n):
        h *= HASH_BASE
        h += ids[k:k + count]
    zeros = np.concatenate(([0], np.cumsum(ids == 0, dtype=np.int64)))
    valid = (zeros[n:] - zeros[:count]) == 0
    return h, valid


@dataclass
class Benchmark:
    """RewardBench prompts indexed for both tests."""

    n: int
    ids: list  # RewardBench id per prompt
    subsets: list[str]
    vocab: dict[str, int]
    exact: dict[str, list[int]]  # normalised prompt -> prompt indices
    token_ids: list[np.ndarray]  # per prompt
    hashes: np.ndarray = field(repr=False)  # sorted n-gram hashes (with repeats)
    owner: np.ndarray = field(repr=False)  # prompt index of each hash
    start: np.ndarray = field(repr=False)  # position of the n-gram in its prompt
    prefilter: np.ndarray = field(init=False, repr=False)  # top hash bits present

    def __post_init__(self):
        self.prefilter = np.zeros(1 << FILTER_BITS, dtype=bool)
        self.prefilter[self.hashes >> FILTER_SHIFT] = True

    @classmethod
    def build(cls, rows: Iterable[dict], n: int = DEFAULT_N) -> Benchmark:
        vocab: dict[str, int] = {}
        ids, subsets, token_ids = [], [], []
        exact: dict[str, list[int]] = defaultdict(list)
        all_h, all_owner, all_start = [], [], []
        for i, row in enumerate(rows):
            toks = tokens(row["prompt"])
            ids.append(row["id"])
            subsets.append(row["subset"])
            if toks:
                exact[" ".join(toks)].append(i)
            arr = np.fromiter((vocab.setdefault(t, len(vocab) + 1) for t in toks), dtype=np.uint64,
                              count=len(toks))
            token_ids.append(arr)
            h, _ = _window_hashes(arr, n)
            all_h.append(h)
            all_owner.append(np.full(len(h), i, dtype=np.int32))
            all_start.append(np.arange(len(h), dtype=np.int32))
        hashes = np.concatenate(all_h) if all_h else np.zeros(0, dtype=np.uint64)
        order = np.argsort(hashes, kind="stable")
        return cls(n, ids, subsets, vocab, dict(exact), token_ids, hashes[order],
                   (np.concatenate(all_owner) if all_owner else np.zeros(0, np.int32))[order],
                   (np.concatenate(all_start) if all_start else np.zeros(0, np.int32))[order])


# --- scanning the training rows -------------------------------------------------------------

@dataclass
class Match:
    row: int  # index of the training row (its line among the non-empty lines)
    prompt: int  # index of the RewardBench prompt
    exact: bool = False
    shared_ngrams: int = 0


def _scan_chunk(bench: Benchmark, first_row: int, rows: list[dict], min_shared: int,
                matches: dict[tuple[int, int], Match]) -> None:
    n = bench.n
    get = bench.vocab.get
    exact = bench.exact
    ids: list[int] = []
    row_start = np.zeros(len(rows), dtype=np.int64)
    for k, row in enumerate(rows):
        row_start[k] = len(ids)
        context, rendered = training_prompts(row)
        found: list[int] = []
        for m in context:
            toks = tokens(m["content"])
            if m.get("role") == "user" and toks:
                found.extend(exact.get(" ".join(toks), ()))
            if len(toks) >= n:
                ids.extend(map(get, toks, itertools.repeat(0)))
                ids.append(0)
        if rendered is not None:
            found.extend(exact.get(normalise(rendered), ()))
        for p in found:
            matches.setdefault((first_row + k, p), Match(first_row + k, p)).exact = True
    if len(ids) < n or len(bench.hashes) == 0:
        return
    arr = np.array(ids, dtype=np.uint64)
    h, valid = _window_hashes(arr, n)
    # A bitmap of the top hash bits rules out nearly every window at one memory access;
    # only the few that pass are searched among the sorted hashes.
    cand = np.flatnonzero(valid & bench.prefilter[h >> FILTER_SHIFT])
    pos = np.minimum(np.searchsorted(bench.hashes, h[cand]), len(bench.hashes) - 1)
    hits = cand[bench.hashes[pos] == h[cand]]
    if not len(hits):
        return
    keys = h[hits]
    lo = np.searchsorted(bench.hashes, keys, side="left")
    hi = np.searchsorted(bench.hashes, keys, side="right")
    hit_rows = first_row + np.searchsorted(row_start, hits, side="right") - 1
    shared: dict[tuple[int, int], set] = defaultdict(set)
    for p, key, a, b, row in zip(hits.tolist(), keys.tolist(), lo.tolist(), hi.tolist(), hit_rows.tolist()):
        window = arr[p:p + n]
        for j in range(a, b):
            prompt, s = int(bench.owner[j]), int(bench.start[j])
            if np.array_equal(bench.token_ids[prompt][s:s + n], window):  # no hash collision
                shared[(row, prompt)].add(key)
    for (row, prompt), found_keys in shared.items():
        if len(found_keys) >= min_shared:
            matches.setdefault((row, prompt), Match(row, prompt)).shared_ngrams = len(found_keys)


def scan(bench: Benchmark, rows: Iterable[dict], min_shared: int = 1,
         chunk_rows: int = CHUNK_ROWS) -> tuple[int, list[Match]]:
    """(number of training rows scanned, matches sorted by row then prompt)."""
    matches: dict[tuple[int, int], Match] = {}
    total = 0
    it = iter(rows)
    while True:
        chunk = list(itertools.islice(it, chunk_rows))
        if not chunk:
            break
        _scan_chunk(bench, total, chunk, min_shared, matches)
        total += len(chunk)
    return total, [matches[k] for k in sorted(matches)]


# --- the report -----------------------------------------------------------------------------

REPORT_COLUMNS = ["subset", "section", "prompts", "short_prompts", "exact", "ngram", "contaminated",
                  "contaminated_pct", "training_rows"]


def per_subset(bench: Benchmark, matches: list[Match]) -> list[dict]:
    """One row per RewardBench subset present, in section order, then a total row."""
    exact_p = {m.prompt for m in matches if m.exact}
    ngram_p = {m.prompt for m in matches if m.shared_ngrams}
    rows_of: dict[str, set] = defaultdict(set)
    for m in matches:
        rows_of[bench.subsets[m.prompt]].add(m.row)
    present = [s for s in SUBSETS if s in set(bench.subsets)] + sorted(set(bench.subsets) - set(SUBSETS))

    def line(name, section, prompts, rows):
        prompts = list(prompts)
        contaminated = sum(1 for p in prompts if p in exact_p or p in ngram_p)
        return {
            "subset": name, "section": section, "prompts": len(prompts),
            "short_prompts": sum(1 for p in prompts if len(bench.token_ids[p]) < bench.n),
            "exact": sum(1 for p in prompts if p in exact_p),
            "ngram": sum(1 for p in prompts if p in ngram_p),
            "contaminated": contaminated,
            "contaminated_pct": round(100 * contaminated / len(prompts), 2) if prompts else 0.0,
            "training_rows": len(rows),
        }

    out = [line(s, SUBSET_SECTION.get(s, "?"), [i for i, x in enumerate(bench.subsets) if x == s], rows_of[s])
           for s in present]
    out.append(line("total", "", range(len(bench.subsets)), {m.row for m in matches}))
    return out


REPORT_TITLE = "Contamination: RewardBench prompts in the training data"
REPORT_STYLE = ("body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1f2328; } "
                "table { border-collapse: collapse; margin: 0.5em 0; } "
                "th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: center; } "
                "th { background: #f6f8fa; }")


def report_tables(summary: dict, rows: list[dict]) -> dict[str, str]:
    """report.md and report.html: what was scanned, then one row per subset and the total
    (in bold). The table is a pandas DataFrame of the cells as printed."""
    import html

    import pandas as pd

    header = ["Subset", "Section", "Prompts", f"Shorter than {summary['n']} words", "Exact match",
              f"Shares {summary['n']}-grams", "Contaminated", "Contaminated %", "Training rows matching"]
    cells = pd.DataFrame([[str(r[c]) if c != "contaminated_pct" else f"{r[c]:.2f}" for c in REPORT_COLUMNS]
                          for r in rows], columns=header, dtype=object)
    total = [r["subset"] == "total" for r in rows]
    kept = "dropped before SFT" if summary["drop"] else "kept (switch contamination.drop is off)"
    intro = (f"{summary['training_rows']} training rows scanned against {summary['benchmark_prompts']} "
             f"RewardBench prompts: exact match after normalisation, or at least "
             f"{summary['min_shared_ngrams']} shared {summary['n']}-gram(s). "
             f"{summary['contaminated_training_rows']} training rows match "
             f"({summary['exact_training_rows']} exactly, {summary['ngram_training_rows']} by n-grams); "
             f"they are {kept}. Scan time {summary['seconds']:.1f} s.")

    def emphasised(frame: pd.DataFrame, mark) -> pd.DataFrame:
        return frame.apply(lambda row: row.map(mark) if total[row.name] else row, axis=1)

    markdown = emphasised(cells, lambda c: f"**{c}**" if c else c).to_markdown(
        index=False, tablefmt="pipe", colalign=("center",) * len(header), disable_numparse=True)
    escaped = cells.map(html.escape).rename(columns=html.escape)
    table = emphasised(escaped, lambda c: f"<strong>{c}</strong>" if c else c).to_html(
        index=False, escape=False, border=0, justify="center")
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(REPORT_TITLE)}</title>\n<style>{REPORT_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(REPORT_TITLE)}</h1>\n<p>{html.escape(intro)}</p>\n{table}\n</body>\n</html>\n")
    return {"report.md": f"{intro}\n\n{markdown}\n", "report.html": page}


def check(preferences: str, rewardbench: str, out_dir: str, n: int = DEFAULT_N, min_shared: int = 1,
          drop: bool = False) -> dict:
    """Scan, then write report.{md,html,csv}, summary.json and matches.jsonl under out_dir."""
    from pathlib import Path

    t0 = time.perf_counter()
    bench = Benchmark.build(iter_jsonl(rewardbench), n)
    scanned, matches = scan(bench, iter_jsonl(preferences), min_shared)
    seconds = time.perf_counter() - t0
    rows = per_subset(bench, matches)
    contaminated_rows = {m.row for m in matches}
    summary = {
        "n": n, "min_shared_ngrams": min_shared, "drop": drop,
        "training_rows": scanned, "benchmark_prompts": len(bench.ids),
        "contaminated_training_rows": len(contaminated_rows),
        "exact_training_rows": len({m.row for m in matches if m.exact}),
        "ngram_training_rows": len({m.row for m in matches if m.shared_ngrams}),
        "contaminated_prompts": rows[-1]["contaminated"],
        "matches": len(matches),
        "seconds": round(seconds, 3),
        "per_subset": rows,
    }
    out = Path(out_dir)
    write_jsonl(out / "matches.jsonl", ({"row": m.row, "rewardbench_id": bench.ids[m.prompt],
                                         "subset": bench.subsets[m.prompt], "exact": m.exact,
                                         "shared_ngrams": m.shared_ngrams} for m in matches))
    write_json(out / "summary.json", summary)
    with atomic_path(out / "report.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    for name, text in report_tables(summary, rows).items():
        with atomic_path(out / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return summary


def decontaminate(preferences: str, matches: str, summary: str, out: str, stats_out: str) -> dict:
    """Copy the preference rows minus the matched ones; record how many were dropped.
    Nothing is written when the rows are not the ones the check scanned."""
    bad = {m["row"] for m in iter_jsonl(matches)}
    checked = read_json(summary)
    rows_in = dropped = written = 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i, row in enumerate(iter_jsonl(preferences)):
            rows_in += 1
            if i in bad:
                dropped += 1
                continue
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
        if rows_in != checked["training_rows"]:  # inside the block: no output is left behind
            raise ValueError(f"{preferences} has {rows_in} rows but the check scanned {checked['training_rows']}")
    stats = {"rows_in": rows_in, "dropped": dropped, "rows_out": written,
             "settings": {k: checked[k] for k in ("n", "min_shared_ngrams")}}
    write_json(stats_out, stats)
    return stats
