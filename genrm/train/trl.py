"""Training a GenRM on CPU: TRL's SFTTrainer on the SFT rows, loss on the response only.

What the demo and the tests train with; GPU clusters train with OpenRLHF
(``genrm.train.openrlhf``). Both record their settings and seed in the model's
``genrm_training.json``.
"""

from __future__ import annotations

import dataclasses

from genrm.config import TrlSettings
from genrm.io import atomic_path, remove_path, write_json


def to_prompt_completion(row: dict) -> dict:
    """OpenRLHF's ``prompt``/``response`` row as TRL's conversational prompt-completion row."""
    return {"prompt": row["prompt"], "completion": row["response"]}


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
        args = SFTConfig(
            output_dir=str(work / ".trainer"),
            num_train_epochs=settings.epochs,
            learning_rate=settings.learning_rate,
            per_device_train_batch_size=settings.batch_size,
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of the steps
            lr_scheduler_type="cosine",
            max_length=settings.max_length,
            completion_only_loss=True,
            seed=seed,
            data_seed=seed,
            logging_steps=10,
            save_strategy="no",
            report_to=[],
            use_cpu=not torch.cuda.is_available(),
            bf16=torch.cuda.is_available(),
            dataloader_num_workers=0,
            disable_tqdm=True,  # plain loss lines in the job log
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
        result = trainer.train()
        remove_path(work / ".trainer")  # nothing of the trainer's own belongs in the model
        trainer.save_model(str(work))
        tokenizer.save_pretrained(str(work))
        write_json(work / "genrm_training.json",
                   {"backend": "trl", "rows": len(ds), "settings": dataclasses.asdict(settings), "seed": seed,
                    "train_loss": result.training_loss})
