"""Padding removal and restoration between ``(batch, seqlen, ...)`` and ``(tokens, ...)`` layouts,
in plain PyTorch (the subset of ``flash_attn.bert_padding`` that OpenRLHF imports).

``rearrange`` is einops' own, which flash-attn's module re-exports and OpenRLHF imports from it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

__all__ = ["index_first_axis", "pad_input", "rearrange", "unpad_input"]


def index_first_axis(input: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The rows ``indices`` of ``input`` along its first axis (differentiable: the gradient
    flows back to the chosen rows)."""
    return input[indices]


def unpad_input(hidden_states: torch.Tensor, attention_mask: torch.Tensor, unused_mask: torch.Tensor | None = None):
    """Drop the padded positions of ``hidden_states`` (``batch, seqlen, ...``).

    ``attention_mask`` (``batch, seqlen``) is 1 on the tokens to keep; ``unused_mask``, if given,
    marks further tokens that are kept in the output but not counted as used. Returns the kept
    tokens ``(tokens, ...)``, their flat indices into ``batch * seqlen``, the cumulative sequence
    lengths ``(batch + 1,)`` int32 starting at 0, the longest sequence's length (an int), and
    the used length of each sequence ``(batch,)`` int32: flash-attn 2.7+'s five values.
    """
    keep = attention_mask.bool() if unused_mask is None else (attention_mask.bool() | unused_mask.bool())
    used_lengths = attention_mask.sum(dim=-1, dtype=torch.int32)
    kept_lengths = keep.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(keep.flatten(), as_tuple=False).flatten()
    cu_seqlens = F.pad(torch.cumsum(kept_lengths, dim=0, dtype=torch.int32), (1, 0))
    max_seqlen = int(kept_lengths.max().item()) if kept_lengths.numel() else 0
    flat = hidden_states.reshape(-1, *hidden_states.shape[2:])
    return index_first_axis(flat, indices), indices, cu_seqlens, max_seqlen, used_lengths


def pad_input(hidden_states: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """The inverse of ``unpad_input``: put the ``(tokens, ...)`` rows back at their flat
    ``indices`` of a zero ``(batch, seqlen, ...)`` tensor (differentiable)."""
    out = hidden_states.new_zeros((batch * seqlen, *hidden_states.shape[1:]))
    out = out.index_put((indices,), hidden_states)
    return out.reshape(batch, seqlen, *hidden_states.shape[1:])
