"""Classifier judges (Bradley-Terry reward models) on transformers: the reward of
(question, answer) for each answer; the higher wins, equal rewards count 0.5."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from genrm.config import JudgeSettings
from genrm.judge.device import torch_device, torch_dtype
from genrm.judge.examples import Example, classifier_length, classifier_messages, shorten_example, token_batches
from genrm.protocol import ClassifierRow, classifier_row


class ClassifierJudge:
    """The model and tokenizer loaded once per job; called per shard."""

    def __init__(self, model_dir: str, examples: list[Example], settings: JudgeSettings, dtype: str):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(settings.threads)
        self.examples, self.settings, self.device = examples, settings, torch_device()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="right")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, dtype=torch_dtype(dtype)).to(self.device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def rewards(self, texts: list[str]) -> list[float]:
        """The reward of each text, batched by length under the token budget."""
        import torch

        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        rewards = [0.0] * len(ids)
        with torch.inference_mode():
            for batch in token_batches([len(ids[i]) for i in order], self.settings.token_budget,
                                       self.settings.batch_size):
                idx = [order[i] for i in batch]
                enc = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(self.device)
                for i, r in zip(idx, self.model(**enc).logits[:, 0].float().tolist()):
                    rewards[i] = r
        return rewards

    def __call__(self, indices: Sequence[int], progress: Callable[[int], None] = lambda n: None) -> list[ClassifierRow]:
        budget = self.settings.max_model_len
        examples = [shorten_example(self.tokenizer, self.examples[i], budget, length=classifier_length)
                    for i in indices]
        texts = [self.tokenizer.apply_chat_template(classifier_messages(ex.question, answer), tokenize=False)
                 for ex in examples for answer in (ex.chosen, ex.rejected)]
        rewards = self.rewards(texts)
        progress(len(examples))
        return [classifier_row(ex.id, ex.subset, rewards[2 * k], rewards[2 * k + 1], ex.shortened)
                for k, ex in enumerate(examples)]
