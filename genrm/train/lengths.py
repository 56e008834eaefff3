"""The max_len guard: how many training rows would a training job not take whole?

OpenRLHF's SFTDataset drops a row without a word when its prompt has
``max_len - 2`` tokens or more, and cuts a row longer than ``max_len`` (the end
is lost; for a judge row that is the verdict). Its RewardDataset cuts each side
of a Bradley-Terry row (method bt) to ``max_len`` and writes EOS over the last
token kept (the end of the answer, where the two sides differ, is lost); TRL's
RewardTrainer drops such a row. This module counts all of these, with the
model's own tokenizer and chat template and the same text OpenRLHF builds, and
stops the run when more than a set fraction of the rows is affected.

``python -m genrm check-lengths --rows R --model M --max-len N --max-fraction F --out report.json``
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from genrm.io import iter_jsonl, write_json
from genrm.protocol import reward_text

log = logging.getLogger(__name__)

BATCH = 512


class LengthError(ValueError):
    pass


# What each trainer does, without a word, with the rows the guard counts (TRL 1.16 cuts a row to
# max_length and drops it when its prompt alone fills max_length: the same rows within 2 tokens).
WHAT_TRAINERS_DO = {
    ("openrlhf", "sft"): "OpenRLHF's SFTDataset would silently drop {dropped} (prompt too long) and cut the end "
                         "off {truncated}",
    ("openrlhf", "bt"): "OpenRLHF's RewardDataset would silently cut the end off {truncated}",
    ("trl", "sft"): "TRL's SFTTrainer would silently drop {dropped} (prompt too long) and cut the end off {truncated}",
    ("trl", "bt"): "TRL's RewardTrainer would drop {truncated}",
}


def render(tokenizer, row: dict) -> tuple[str, str] | None:
    """Prompt and full text of a row as OpenRLHF's SFTDataset builds them
    (``apply_chat_template``, input key ``prompt``, output key ``response``);
    None when the template does not render the prompt as the start of the row."""
    prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(row["prompt"] + row["response"], tokenize=False)
    if not full.startswith(prompt):
        return None
    text = full.rstrip("\n")
    if not text.endswith(tokenizer.eos_token):
        text += " " + tokenizer.eos_token
    return prompt, text


def _batches(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def is_bt_row(row: dict) -> bool:
    """A Bradley-Terry row (``chosen``/``rejected`` conversations) rather than an SFT row."""
    return "chosen" in row


def _measure_bt(batch: list[dict], tokenizer, max_len: int, counts: dict, lengths: list[int]) -> None:
    """Bradley-Terry rows: a row is cut when either side is longer than ``max_len``."""
    texts = [reward_text(tokenizer, row[side]) for row in batch for side in ("chosen", "rejected")]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for k in range(len(batch)):
        longer = max(len(ids[2 * k]), len(ids[2 * k + 1]))
        lengths.append(longer)
        counts["truncated"] += longer > max_len


def measure(rows: Iterable[dict], tokenizer, max_len: int) -> dict:
    """Count the rows that OpenRLHF would drop (prompt too long), cut (row too long),
    or misread (a chat template whose prompt is not a prefix of the whole row). A
    Bradley-Terry row counts as cut when either of its two sequences is too long; its
    length is that of the longer one."""
    counts = {"rows": 0, "dropped": 0, "truncated": 0, "template_mismatch": 0}
    lengths: list[int] = []
    kind = "sft"
    for batch in _batches(rows, BATCH):
        if is_bt_row(batch[0]):
            kind = "bt"
            counts["rows"] += len(batch)
            _measure_bt(batch, tokenizer, max_len, counts, lengths)
            continue
        rendered = [render(tokenizer, row) for row in batch]
        counts["rows"] += len(batch)
        counts["template_mismatch"] += sum(r is None for r in rendered)
        ok = [r for r in rendered if r is not None]
        if not ok:
            continue
        prompts = tokenizer([p for p, _ in ok], add_special_tokens=False)["input_ids"]
        texts = tokenizer([t for _, t in ok], add_special_tokens=False)["input_ids"]
        for p_ids, t_ids in zip(prompts, texts):
            lengths.append(len(t_ids))
            if len(p_ids) >= max_len - 2:
                counts["dropped"] += 1
            elif len(t_ids) > max_len:
                counts["truncated"] += 1
    lengths.sort()
    exceeding = counts["dropped"] + counts["truncated"] + counts["template_mismatch"]

    def pct(q: float) -> int | None:
        return lengths[min(len(lengths) - 1, int(q * len(lengths)))] if lengths else None

    return {
        "row_kind": kind,
        **counts,
        "max_len": max_len,
        "exceeding": exceeding,
        "fraction_exceeding": exceeding / counts["rows"] if counts["rows"] else 0.0,
        "tokens": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": lengths[-1] if lengths else None},
    }


def check_lengths(rows: str, model_dir: str, max_len: int, max_fraction: float, out: str | None = None,
                  name: str | None = None, trainer: str = "openrlhf") -> dict:
    """Measure ``rows`` with the tokenizer of ``model_dir``; write the report to ``out``;
    raise LengthError when more than ``max_fraction`` of the rows exceed ``max_len`` (``trainer``,
    the job's backend, names what would happen to them)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not getattr(tokenizer, "chat_template", None):
        raise LengthError(f"{model_dir}: the tokenizer has no chat template; training applies it "
                          "(--data.apply_chat_template) and would fail")
    report = {"model": name or Path(model_dir).name, "rows_file": str(rows), "trainer": trainer,
              "max_fraction": max_fraction, **measure(iter_jsonl(rows), tokenizer, max_len)}
    report["ok"] = report["fraction_exceeding"] <= max_fraction
    print(json.dumps(report, indent=2))
    if not report["ok"]:
        raise LengthError(
            f"{report['model']}: {report['exceeding']} of {report['rows']} rows of {rows} "
            f"({report['fraction_exceeding']:.2%}) do not fit max_len={max_len} tokens with this model's "
            f"tokenizer and chat template, above the allowed {max_fraction:.2%}: "
            + WHAT_TRAINERS_DO[trainer, report["row_kind"]].format(**report)
            + (f"; {report['template_mismatch']} rows render differently with and without the answer"
               if report["template_mismatch"] else "")
            + f". Longest row: {report['tokens']['max']} tokens, 99th percentile: {report['tokens']['p99']}. "
            "Raise max_len (train.openrlhf.presets.<size>.max_len or train.openrlhf.models.<model>.max_len; "
            "train.trl.max_length for trl) or allow more with train.length_guard.max_fraction."
        )
    if out:
        write_json(out, report)
    return report
