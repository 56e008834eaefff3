"""Where and in which dtype a judging job computes: by default bfloat16 on a GPU, float32 on a CPU."""

from __future__ import annotations


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_dtype(configured: str) -> str:
    """The dtype every backend computes in (part of the shard fingerprint): ``judge.dtype``, with
    ``auto`` resolved to bfloat16 on a GPU and float32 on a CPU."""
    if configured != "auto":
        return configured
    return "bfloat16" if torch_device() == "cuda" else "float32"


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)
