"""Training a GenRM: supervised fine-tuning on the SFT rows.

Two backends behind one rule: ``trl`` (TRL's SFTTrainer, loss on the response
only; runs on CPU and is what the demo and the tests use) and ``openrlhf``
(the production GPU path; see ``genrm.openrlhf``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def train(backend: str, model: str, rows: str, out: str, settings: dict, seed: int) -> None:
    if backend == "trl":
        train_trl(model, rows, out, settings, seed)
    elif backend == "openrlhf":
        from genrm.openrlhf import train_openrlhf

        train_openrlhf(model, rows, out, settings, seed)
    else:
        raise ValueError(f"unknown training backend {backend!r}; allowed: trl, openrlhf")


def to_prompt_completion(row: dict) -> dict:
    """OpenRLHF's ``prompt``/``response`` row as TRL's conversational prompt-completion row."""
    return {"prompt": row["prompt"], "completion": row["response"]}


def train_trl(model_dir: str, rows: str, out: str, settings: dict, seed: int) -> None:
    """SFT with TRL; only completion tokens carry loss. The checkpoint is written to a
    temporary directory and renamed into place when training has finished."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(settings.get("threads", 2))
    out_path = Path(out)
    work = out_path.with_name(out_path.name + ".partial")
    ds = datasets.load_dataset("json", data_files=rows, split="train").map(
        to_prompt_completion, remove_columns=["prompt", "response"]
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = SFTConfig(
        output_dir=str(work / "trainer"),
        num_train_epochs=settings["epochs"],
        learning_rate=settings["learning_rate"],
        per_device_train_batch_size=settings["batch_size"],
        gradient_accumulation_steps=settings["gradient_accumulation_steps"],
        warmup_steps=settings["warmup_ratio"],  # a float below 1 is a ratio of the steps
        lr_scheduler_type="cosine",
        max_length=settings["max_length"],
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
    final = work / "model"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    (final / "genrm_training.json").write_text(
        json.dumps({"backend": "trl", "rows": len(ds), "settings": settings,
                    "seed": seed, "train_loss": result.training_loss}, indent=2)
    )
    shutil.rmtree(out_path, ignore_errors=True)
    final.rename(out_path)
    shutil.rmtree(work, ignore_errors=True)
