"""Typed settings of the steps that take many of them: judging, TRL and OpenRLHF training.

Every field is required: the defaults live in the schema alone (``schema.yaml``),
are applied once by ``genrm.config.validate``, and reach a job through the
config's resolved values. A settings object built from a dictionary that lacks a
field, or has one too many, fails with a message naming them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

from genrm.config.schema import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], values: dict, where: str) -> T:
    """``cls(**values)``, or a ConfigError that names the missing and unknown keys."""
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in values]
    unknown = sorted(set(values) - set(names))
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else [])
        raise ConfigError(f"{where}: {'; '.join(parts)}")
    return cls(**values)


def as_dict(settings) -> dict:
    return dataclasses.asdict(settings)


@dataclass(frozen=True)
class JudgeSettings:
    """How one judging job runs (config block ``judge``, resolved for one judge)."""

    backend: str  # vllm | transformers
    mode: str  # generate | logprob | classifier (external) | bt (a Bradley-Terry model trained here)
    dtype: str  # auto | float32 | bfloat16 | float16 (genrm.judge.device.compute_dtype resolves auto)
    max_new_tokens: int
    max_model_len: int
    batch_size: int
    token_budget: int
    max_padding: float
    shard_size: int
    threads: int
    tensor_parallel_size: int
    gpu_memory_utilization: float
    vllm_cpu: dict  # {kv_cache_mb, enforce_eager}: the vLLM engine without a GPU
    seed: int

    # Settings that change a prediction: a shard made under other values is not reused.
    def fingerprint(self) -> dict:
        return {"backend": self.backend, "mode": self.mode, "max_new_tokens": self.max_new_tokens,
                "max_model_len": self.max_model_len, "tensor_parallel_size": self.tensor_parallel_size}


@dataclass(frozen=True)
class TrlSettings:
    """TRL training on CPU: SFTTrainer (``train.trl``) or RewardTrainer (with ``train.bt.trl`` over it)."""

    epochs: float
    learning_rate: float
    batch_size: int
    gradient_accumulation_steps: int
    max_length: int
    warmup_ratio: float
    threads: int
    mem_mb: int
    runtime: int


@dataclass(frozen=True)
class OpenRLHFSettings:
    """One OpenRLHF training job: ``train.openrlhf.common``, then the preset of the model's
    size, then ``train.openrlhf.models.<model>``, plus the job-level keys."""

    device: str
    nodes: int
    gpus_per_node: int
    cpus_per_task: int
    mem_mb: int
    runtime: int
    zero_stage: int
    adam_offload: bool
    ring_attn_size: int
    ring_attn_head_stride: int
    overlap_comm: bool
    micro_batch_size: int
    global_batch_size: int
    learning_rate: float
    epochs: int
    warmup_ratio: float
    lr_scheduler: str
    min_lr_ratio: float
    max_norm: float
    weight_decay: float
    max_samples: int
    max_len: int
    param_dtype: str
    attn_implementation: str
    packing_samples: bool
    gradient_checkpointing: bool
    use_liger_kernel: bool
    save_steps: int
    max_checkpoints: int
    extra_args: list
    checkpoint_dir: str
    keep_checkpoints: bool
    rdzv_port: int
    size: str

    @property
    def processes(self) -> int:
        """Training processes of the job: one per GPU; on CPU one on one node, ``gpus_per_node``
        per node on several (genrm.train.openrlhf.cpu_launch)."""
        return 1 if self.device == "cpu" and self.nodes == 1 else self.nodes * self.gpus_per_node

    def problems(self, reward_model: bool = False) -> list[str]:
        """Settings that OpenRLHF or DeepSpeed would refuse at start-up, or silently change
        (``reward_model``: for openrlhf.cli.train_rm rather than train_sft)."""
        problems = []
        if reward_model and self.use_liger_kernel:
            problems.append("use_liger_kernel: train_rm has no Liger kernels (set it false for bt)")
        world = self.processes
        ring = self.ring_attn_size
        if world % ring:
            problems.append(f"ring_attn_size {ring} does not divide the {world} processes (GPUs) of the job")
        else:
            data_parallel = world // ring
            step = self.micro_batch_size * data_parallel
            if self.global_batch_size % step:
                problems.append(
                    f"global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size "
                    f"{self.micro_batch_size} x {data_parallel} data-parallel processes ({step})")
        if ring > 1 and not self.packing_samples:
            problems.append("ring attention (ring_attn_size > 1) needs packing_samples: true")
        if self.packing_samples and "flash_attention" not in self.attn_implementation:
            problems.append(f"packing_samples needs a flash_attention implementation, not "
                            f"{self.attn_implementation!r} (OpenRLHF would switch silently)")
        if self.adam_offload and self.zero_stage == 0:
            problems.append("adam_offload needs ZeRO stage 1, 2 or 3")
        return problems
