"""Getting model weights onto disk: a Hugging Face snapshot, a local directory, or a
tiny model built from a config with a tokenizer trained on the run's own data.

Compute nodes of many clusters have no internet, so the fetch runs as a local
rule on the login node and every later job loads from ``resources/models/``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from genrm.io import atomic_path, iter_jsonl, partial_name, replace_path
from genrm.protocol import PROMPT_TEMPLATE

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|end|>", "<|unk|>"]
# A ChatML-like template for the tiny models: the same shape as the real ones
# (role headers, an end-of-turn token, a generation prompt).
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


# What loading a model for training or judging needs from a Hub repository: weights in
# safetensors, the configs, the tokenizer and the chat template. Nothing else is fetched
# (Llama 3.1 repositories also hold a 16 GB consolidated checkpoint under original/).
HUB_FILES = ["*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json",
             "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
             "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json"]
HUB_SKIP = ["original/*"]


class ModelSourceError(ValueError):
    """A model that cannot be fetched; the message says what to do."""


def fetch_model(spec: dict, out: str, corpus: str | None = None, classifier: bool = False) -> None:
    """Make ``out`` a directory that ``from_pretrained`` can load: a link to a local
    directory, a tiny model built from ``spec['tiny']``, or a Hub snapshot."""
    source = spec["source"]
    if source == "tiny":
        if not corpus:
            raise ValueError("a tiny model needs --corpus to train its tokenizer on")
        with atomic_path(out, directory=True) as tmp:
            build_tiny_model(spec["tiny"], corpus, tmp, classifier=classifier)
    elif Path(source).is_dir():
        link = partial_name(Path(out))
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(Path(source).resolve(), link)
        replace_path(link, out)
    elif Path(source).is_absolute() or source.startswith("."):
        raise ModelSourceError(f"model source {source} is not a directory")
    else:
        with atomic_path(out, directory=True) as tmp:
            download_snapshot(source, tmp)


def download_snapshot(repo_id: str, into: Path) -> None:
    """The files of ``HUB_FILES`` of a Hub model; a clear error when it is gated, missing or unreachable."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    advice = ("Ask for access on the model's Hub page, then log in (`hf auth login`) or set HF_TOKEN in the "
              "environment of the run; or download it elsewhere and give its local directory as the source")
    try:
        snapshot_download(repo_id=repo_id, local_dir=into, allow_patterns=HUB_FILES, ignore_patterns=HUB_SKIP)
    except GatedRepoError:
        raise ModelSourceError(f"model {repo_id} is gated and this account has no access to it. {advice}.") from None
    except RepositoryNotFoundError:
        raise ModelSourceError(f"model {repo_id} was not found on the Hub, or it is private and no token with "
                               f"access was given. Check the id. {advice}.") from None
    except HfHubHTTPError as error:
        raise ModelSourceError(f"model {repo_id} could not be downloaded (HTTP "
                               f"{getattr(error.response, 'status_code', '?')}). {advice}.") from None
    if not any(into.glob("*.safetensors")):
        raise ModelSourceError(f"model {repo_id} has no safetensors weights; convert it and give its local "
                               "directory as the source")


def corpus_texts(path: str) -> Iterator[str]:
    """What a tiny tokenizer learns from: the chat turns of the preference data."""
    for row in iter_jsonl(path):
        for side in ("chosen", "rejected"):
            messages = row.get(side)
            if isinstance(messages, list):
                for m in messages:
                    if isinstance(m, dict) and isinstance(m.get("content"), str):
                        yield m["content"]


def template_pieces() -> list[str]:
    """The fixed text of the judge template between its placeholders."""
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
        **({"initializer_range": arch["init_std"]} if "init_std" in arch else {}),
    )
    model = (LlamaForSequenceClassification if classifier else LlamaForCausalLM)(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "genrm_tiny.json").write_text(json.dumps({"architecture": arch, "classifier": classifier}, indent=2))
    log.info("built tiny %s with %d parameters, vocab %d", "classifier" if classifier else "causal LM",
             sum(p.numel() for p in model.parameters()), len(tokenizer))
