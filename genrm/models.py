"""Getting model weights onto disk: a Hugging Face snapshot, a local directory, or a
tiny model built from a config with a tokenizer trained on the run's own data.

Compute nodes of many clusters have no internet, so the fetch runs as a local
rule on the login node and every later job loads from ``resources/models/``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|end|>", "<|unk|>"]
# A ChatML-like template for the tiny models: the same shape as the real ones
# (role headers, an end-of-turn token, a generation prompt).
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def fetch_model(spec: dict, out: str, corpus: str | None = None, classifier: bool = False) -> None:
    """Make ``out`` a directory that ``from_pretrained`` can load."""
    out_path = Path(out)
    tmp = out_path.with_name(out_path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    source = spec["source"]
    if source == "tiny":
        if not corpus:
            raise ValueError("a tiny model needs --corpus to train its tokenizer on")
        build_tiny_model(spec["tiny"], corpus, tmp, classifier=classifier)
    elif Path(source).is_dir():
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if out_path.is_symlink() or out_path.exists():
            out_path.unlink()
        os.symlink(Path(source).resolve(), out_path)
        return
    else:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id=source, local_dir=tmp)
    shutil.rmtree(out_path, ignore_errors=True)
    os.replace(tmp, out_path)


def corpus_texts(path: str) -> Iterator[str]:
    """What a tiny tokenizer learns from: the chat turns of the preference data."""
    from genrm.io import iter_jsonl
    for row in iter_jsonl(path):
        for side in ("chosen", "rejected"):
            messages = row.get(side)
            if isinstance(messages, list):
                for m in messages:
                    if isinstance(m, dict) and isinstance(m.get("content"), str):
                        yield m["content"]


def template_pieces() -> list[str]:
    """The fixed text of the judge template between its placeholders."""
    import re

    from genrm.protocol import PROMPT_TEMPLATE

    return [p for p in re.split(r"\{(?:question|response_a|response_b)\}", PROMPT_TEMPLATE) if p]


def train_tokenizer(texts, vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts``, wrapped for transformers.

    Words are split as GPT-2 does, so any text encodes and a word is a token or
    a few. The fixed pieces of the judge template are added tokens: the tiny
    demo models then train on short sequences (about 30 tokens a judge prompt
    instead of 250), which is what makes the demo take minutes on a CPU.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    roles = [f"<|{r}|>" for r in ("system", "user", "assistant")]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + roles,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(p, normalized=False) for p in template_pieces()])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|end|>",
        unk_token="<|unk|>",
        additional_special_tokens=roles,
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def build_tiny_model(arch: dict, corpus: str, out: Path, classifier: bool = False) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    tokenizer = train_tokenizer(corpus_texts(corpus), arch["vocab_size"])
    torch.manual_seed(arch["init_seed"])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch["hidden_size"],
        intermediate_size=arch["intermediate_size"],
        num_hidden_layers=arch["num_layers"],
        num_attention_heads=arch["num_heads"],
        num_key_value_heads=arch["num_heads"],
        max_position_embeddings=arch["max_position_embeddings"],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        num_labels=1,
    )
    model = (LlamaForSequenceClassification if classifier else LlamaForCausalLM)(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "genrm_tiny.json").write_text(json.dumps({"architecture": arch, "classifier": classifier}, indent=2))
    log.info("built tiny %s with %d parameters, vocab %d", "classifier" if classifier else "causal LM",
             sum(p.numel() for p in model.parameters()), len(tokenizer))
