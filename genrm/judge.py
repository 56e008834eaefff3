"""Judging RewardBench.

Generative judges see every example twice (chosen as A, then chosen as B),
decode greedily and are read by the last verdict in their output.
Classifiers (Bradley-Terry reward models) score both answers; the higher wins.
Prompts that do not fit the context are shortened by ``shorten_example``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from genrm.io import read_jsonl, write_jsonl
from genrm.protocol import bradley_terry_score, example_score, judge_messages, parse_verdict

log = logging.getLogger(__name__)
OMITTED = "\n[... {n} tokens omitted ...]\n"


@dataclass
class Example:
    """One RewardBench example after shortening: the texts both orders share."""

    id: int
    subset: str
    question: str
    chosen: str
    rejected: str
    shortened: bool = False

    def messages(self, chosen_at_a: bool) -> list[dict]:
        a, b = (self.chosen, self.rejected) if chosen_at_a else (self.rejected, self.chosen)
        return judge_messages(self.question, a, b)


def cut_middle(tokenizer, text: str, keep: int) -> str:
    """Keep the first and last ``keep // 2`` tokens of ``text`` with a visible marker between."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= keep:
        return text
    head, tail = keep - keep // 2, keep // 2
    return (tokenizer.decode(ids[:head]) + OMITTED.format(n=len(ids) - keep)
            + (tokenizer.decode(ids[-tail:]) if tail else ""))


def prompt_length(tokenizer, messages: list[dict]) -> int:
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"])


def shorten_example(tokenizer, ex: Example, budget: int) -> Example:
    """Fit an example's judge prompt into ``budget`` tokens, deterministically.

    Policy: while the prompt is too long, the longest of (question, chosen,
    rejected) loses tokens from its middle, replaced by a marker that says how
    many were omitted. Both orders use the same shortened texts, so the
    comparison stays fair. The example is flagged ``shortened``.
    """
    for _ in range(12):
        over = prompt_length(tokenizer, ex.messages(True)) - budget
        if over <= 0:
            return ex
        fields = {f: len(tokenizer.encode(getattr(ex, f), add_special_tokens=False))
                  for f in ("question", "chosen", "rejected")}
        longest = max(fields, key=fields.get)
        keep = max(fields[longest] - over - 16, 0)
        setattr(ex, longest, cut_middle(tokenizer, getattr(ex, longest), keep))
        ex.shortened = True
    raise ValueError(f"example {ex.id} cannot be shortened into {budget} tokens: the template alone is too long")


def load_examples(data: str) -> list[Example]:
    return [Example(r["id"], r["subset"], r["prompt"], r["chosen"], r["rejected"]) for r in read_jsonl(data)]


def judge(judge_type: str, model: str, data: str, out: str, settings: dict) -> None:
    import torch

    torch.set_num_threads(settings.get("threads", 2))
    examples = load_examples(data)
    backend = settings.get("backend", "transformers")
    if judge_type == "classifier":
        rows = judge_classifier(model, examples, settings)
    elif backend == "transformers":
        rows = judge_generative_transformers(model, examples, settings)
    else:
        from genrm.vllm_backend import judge_generative_vllm

        rows = judge_generative_vllm(model, examples, settings)
    write_jsonl(out, rows)


def prediction_row(ex: Example, outputs: tuple[str, str]) -> dict:
    va, vb = parse_verdict(outputs[0]), parse_verdict(outputs[1])
    return {"id": ex.id, "subset": ex.subset, "verdict_chosen_a": va, "verdict_chosen_b": vb,
            "correct": example_score(va, vb), "shortened": ex.shortened,
            "output_chosen_a": outputs[0], "output_chosen_b": outputs[1]}


def _device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def judge_generative_transformers(model_dir: str, examples: list[Example], settings: dict) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = _device()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.bfloat16 if device == "cuda" else torch.float32).to(device).eval()
    budget = settings["max_model_len"] - settings["max_new_tokens"]
    examples = [shorten_example(tokenizer, ex, budget) for ex in examples]
    prompts = [tokenizer.apply_chat_template(ex.messages(order), add_generation_prompt=True, tokenize=False)
               for ex in examples for order in (True, False)]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts = [""] * len(prompts)
    bs = settings["batch_size"]
    with torch.inference_mode():
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
            gen = model.generate(**enc, max_new_tokens=settings["max_new_tokens"], do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            for i, seq in zip(idx, gen[:, enc["input_ids"].shape[1]:]):
                texts[i] = tokenizer.decode(seq, skip_special_tokens=True)
            log.info("judged %d/%d prompts", min(start + bs, len(order)), len(order))
    return [prediction_row(ex, (texts[2 * k], texts[2 * k + 1])) for k, ex in enumerate(examples)]


def judge_classifier(model_dir: str, examples: list[Example], settings: dict) -> list[dict]:
    """Bradley-Terry: the reward of (question, answer) for each answer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = _device()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="right")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, dtype=torch.bfloat16 if device == "cuda" else torch.float32).to(device).eval()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": ex.question},
                                            {"role": "assistant", "content": answer}], tokenize=False)
             for ex in examples for answer in (ex.chosen, ex.rejected)]
    rewards = [0.0] * len(texts)
    bs = settings["batch_size"]
    with torch.inference_mode():
        for start in range(0, len(texts), bs):
            enc = tokenizer(texts[start:start + bs], return_tensors="pt", padding=True, truncation=True,
                            max_length=settings["max_model_len"], add_special_tokens=False).to(device)
            rewards[start:start + bs] = model(**enc).logits[:, 0].float().tolist()
    return [{"id": ex.id, "subset": ex.subset, "reward_chosen": rewards[2 * k], "reward_rejected": rewards[2 * k + 1],
             "correct": bradley_terry_score(rewards[2 * k], rewards[2 * k + 1])}
            for k, ex in enumerate(examples)]
