"""The collective that OpenRLHF imports from ``flash_attn.utils.distributed``, in plain PyTorch."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather as _all_gather_with_grad


def all_gather(input_: torch.Tensor, process_group: dist.ProcessGroup | None) -> torch.Tensor:
    """Every rank's ``input_`` of ``process_group``, concatenated along the first axis in rank
    order (differentiable: each rank's gradient is the sum over ranks of its slice). One process
    (no group, or a group of one) gets ``input_`` back unchanged."""
    if process_group is None or dist.get_world_size(process_group) == 1:
        return input_
    return torch.cat(_all_gather_with_grad(input_.contiguous(), group=process_group), dim=0)
