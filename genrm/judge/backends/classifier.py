"""Classifier judges (Bradley-Terry reward models): the reward of (question, answer) for each
answer; the higher wins, equal rewards count 0.5.

Two modes, differing only in the text scored:

- ``classifier`` (external reward models): the conversation through the chat
  template, as published classifiers are used;
- ``bt`` (the Bradley-Terry models this pipeline trains): the text they were
  trained on, ``genrm.protocol.reward_text`` (OpenRLHF's RewardDataset: the chat
  template without trailing newlines, ending with EOS).

``ClassifierTexts`` owns what a classifier scores (the texts, their shortening, the
rows); a backend only turns token ids into rewards: ``ClassifierJudge`` here
(transformers), ``genrm.judge.backends.vllm.VLLMClassifier`` (vLLM's pooling runner).

The reward is read at the last token of each text (the attention mask says where
it is), also when the padding token is the EOS token that ends the text (OpenRLHF
saves Llama tokenizers so): transformers' own pooling, which looks for the last
token that is not padding, would read the token before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from genrm.config import JudgeSettings
from genrm.judge.device import torch_device, torch_dtype
from genrm.judge.examples import Example, classifier_messages, shorten_example, token_batches
from genrm.protocol import ClassifierRow, classifier_row, reward_text

MODES = ("classifier", "bt")


class ClassifierTexts:
    """The tokenizer loaded once per job; called per shard. Subclasses compute ``rewards``."""

    def __init__(self, model_dir: str, examples: list[Example], settings: JudgeSettings):
        from transformers import AutoTokenizer

        if settings.mode not in MODES:
            raise ValueError(f"unknown classifier mode {settings.mode!r}; allowed: {', '.join(MODES)}")
        self.examples, self.settings = examples, settings
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="right")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def text(self, question: str, answer: str) -> str:
        """The text whose reward is the answer's score, in this judge's mode."""
        messages = classifier_messages(question, answer)
        if self.settings.mode == "bt":
            return reward_text(self.tokenizer, messages)
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def length(self, tokenizer, ex: Example) -> int:
        """Tokens of the longer of an example's two texts (what must fit the context)."""
        return max(len(tokenizer(self.text(ex.question, answer), add_special_tokens=False)["input_ids"])
                   for answer in (ex.chosen, ex.rejected))

    def rewards(self, ids: list[list[int]]) -> list[float]:
        """The reward of each tokenized text, read at its last token."""
        raise NotImplementedError

    def __call__(self, indices: Sequence[int], progress: Callable[[int], None] = lambda n: None) -> list[ClassifierRow]:
        budget = self.settings.max_model_len
        examples = [shorten_example(self.tokenizer, self.examples[i], budget, length=self.length) for i in indices]
        texts = [self.text(ex.question, answer) for ex in examples for answer in (ex.chosen, ex.rejected)]
        rewards = self.rewards(self.tokenizer(texts, add_special_tokens=False)["input_ids"]) if texts else []
        progress(len(examples))
        return [classifier_row(ex.id, ex.subset, rewards[2 * k], rewards[2 * k + 1], ex.shortened)
                for k, ex in enumerate(examples)]


class ClassifierJudge(ClassifierTexts):
    """Classifier judging with transformers: the model loaded once per job."""

    def __init__(self, model_dir: str, examples: list[Example], settings: JudgeSettings, dtype: str):
        import torch
        from transformers import AutoModelForSequenceClassification

        super().__init__(model_dir, examples, settings)
        torch.set_num_threads(settings.threads)
        self.device = torch_device()
        # one output: the reward (a model saved by OpenRLHF's train_rm does not say so in its config)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=1, dtype=torch_dtype(dtype)).to(self.device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def forward(self, enc) -> list[float]:
        """Rewards of a right-padded batch, each read at its last attended token."""
        import torch

        last = enc["attention_mask"].sum(dim=-1) - 1
        rows = torch.arange(last.shape[0], device=last.device)
        head = getattr(self.model, "score", None)
        if isinstance(head, torch.nn.Module):  # transformers' decoder classifiers: a body and a `score` head
            body = getattr(self.model, self.model.base_model_prefix)
            hidden = body(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            return head(hidden[rows, last]).float()[:, 0].tolist()
        return self.model(**enc).logits[:, 0].float().tolist()  # an encoder classifier pools on its own

    def rewards(self, ids: list[list[int]]) -> list[float]:
        """The reward of each text, batched by length under the token budget."""
        import torch

        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        rewards = [0.0] * len(ids)
        with torch.inference_mode():
            for batch in token_batches([len(ids[i]) for i in order], self.settings.token_budget,
                                       self.settings.batch_size):
                idx = [order[i] for i in batch]
                enc = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(self.device)
                for i, r in zip(idx, self.forward(enc)):
                    rewards[i] = r
        return rewards
