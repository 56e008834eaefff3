"""Training on CPU with TRL: a GenRM with SFTTrainer on the SFT rows (loss on the response
only), a Bradley-Terry reward model with RewardTrainer on the Bradley-Terry rows.

What the demo and the tests train with; GPU clusters train with OpenRLHF
(``genrm.train.openrlhf``). Both record their settings and seed in the model's
``genrm_training.json``.

The Bradley-Terry model sees what OpenRLHF's RewardDataset would give it: each
side of a pair is rendered by ``genrm.protocol.reward_text`` (the chat template,
ending with EOS) and tokenized without special tokens; RewardTrainer gets the
token ids (``chosen_ids``/``rejected_ids``: it neither re-renders nor appends
anything) and reads the reward at the last token, the EOS. The judge scores the
same text (judge mode ``bt``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from genrm.config import TrlSettings
from genrm.io import atomic_path, remove_path, write_json
from genrm.protocol import reward_text


def to_prompt_completion(row: dict) -> dict:
    """OpenRLHF's ``prompt``/``response`` row as TRL's conversational prompt-completion row."""
    return {"prompt": row["prompt"], "completion": row["response"]}


def trainer_args(settings: TrlSettings, work: Path, seed: int) -> dict:
    """The arguments SFT and reward-model training share (TRL's SFTConfig and RewardConfig):
    the settings, the seed, CPU or bf16 on a GPU, no checkpoints, plain loss lines in the log."""
    import torch

    return {
        "output_dir": str(work / ".trainer"),
        "num_train_epochs": settings.epochs,
        "learning_rate": settings.learning_rate,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "warmup_steps": settings.warmup_ratio,  # a float below 1 is a ratio of the steps
        "lr_scheduler_type": "cosine",
        "max_length": settings.max_length,
        "seed": seed,
        "data_seed": seed,
        "logging_steps": 10,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": not torch.cuda.is_available(),
        "bf16": torch.cuda.is_available(),
        "dataloader_num_workers": 0,
        "disable_tqdm": True,  # plain loss lines in the job log
    }


def train_trl(model_dir: str, rows: str, out: str, settings: TrlSettings, seed: int) -> None:
    """SFT with TRL; only completion tokens carry loss. The model is written to a
    temporary directory and renamed onto ``out`` when training has finished."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(settings.threads)
    ds = datasets.load_dataset("json", data_files=rows, split="train").map(
        to_prompt_completion, remove_columns=["prompt", "response"]
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with atomic_path(out, directory=True) as work:
        args = SFTConfig(**trainer_args(settings, work, seed), completion_only_loss=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
        result = trainer.train()
        remove_path(work / ".trainer")  # nothing of the trainer's own belongs in the model
        trainer.save_model(str(work))
        tokenizer.save_pretrained(str(work))
        write_json(work / "genrm_training.json",
                   {"backend": "trl", "objective": "sft", "rows": len(ds), "rows_trained": len(trainer.train_dataset),
                    "settings": dataclasses.asdict(settings),
                    "seed": seed, "train_loss": result.training_loss})


def bt_token_ids(tokenizer, row: dict) -> dict:
    """A Bradley-Terry row as RewardTrainer's pre-tokenized row: the token ids of both sides."""
    texts = [reward_text(tokenizer, row["chosen"]), reward_text(tokenizer, row["rejected"])]
    chosen, rejected = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return {"chosen_ids": chosen, "rejected_ids": rejected}


def train_trl_bt(model_dir: str, rows: str, out: str, settings: TrlSettings, seed: int) -> None:
    """A Bradley-Terry reward model with TRL's RewardTrainer: the base model with a scalar head
    (``AutoModelForSequenceClassification``, one label), loss -log sigmoid(r_chosen - r_rejected).
    Written to a temporary directory and renamed onto ``out`` when training has finished."""
    import datasets
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from trl import RewardConfig, RewardTrainer

    torch.set_num_threads(settings.threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        # transformers' sequence classifiers read the reward at the last token that is not padding:
        # with padding = EOS that is the token before the final EOS, not the one OpenRLHF trains
        raise ValueError(f"{model_dir}: the tokenizer needs a padding token other than EOS for TRL's "
                         "RewardTrainer (the reward is read at the final EOS)")
    ds = datasets.load_dataset("json", data_files=rows, split="train")
    ds = ds.map(lambda row: bt_token_ids(tokenizer, row), remove_columns=ds.column_names)
    set_seed(seed)  # the reward head is initialised at random
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    with atomic_path(out, directory=True) as work:
        args = RewardConfig(**trainer_args(settings, work, seed))
        trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
        result = trainer.train()
        remove_path(work / ".trainer")
        trainer.save_model(str(work))
        tokenizer.save_pretrained(str(work))
        write_json(work / "genrm_training.json",
                   {"backend": "trl", "objective": "bt", "rows": len(ds), "rows_trained": len(trainer.train_dataset),
                    "settings": dataclasses.asdict(settings), "seed": seed, "train_loss": result.training_loss})
