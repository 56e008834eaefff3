"""The OpenRLHF backend: the one module that knows OpenRLHF's flag names.

It turns a job's resolved settings (``genrm.config.openrlhf_settings``: a size
preset plus overrides, typed as ``OpenRLHFSettings``) into the launch command of
openrlhf 0.11.2's ``openrlhf.cli.train_sft`` (a GenRM) or ``openrlhf.cli.train_rm``
(a Bradley-Terry reward model, method bt), with dotted flags ``--model.*``,
``--data.*``, ``--train.*``, ``--ds.*``, ``--ckpt.*``, ``--adam.*``, ``--logger.*``
(the names changed wholesale within 0.10.x, so the version is pinned and the
tests parse every generated command with the parser of its module, recovered
from the installed source).

Launching:

* one node: ``torchrun --standalone --nproc-per-node=<gpus>`` on the GPUs the
  job was given (under SLURM the job step already holds them);
* several nodes: the job's shell runs on the first node of the allocation and
  starts one ``torchrun`` per node with ``srun --ntasks-per-node=1``; the
  launchers meet through torchrun's c10d rendezvous on the first node
  (``python -m genrm openrlhf head-node``) and the SLURM job id;
* no GPU: ``cpu_job`` runs the module under ``genrm.train.openrlhf_cpu`` with the flags of
  ``CPU_FLAGS`` changed (DeepSpeed's CPU accelerator, gloo, bf16, sdpa): one process on one node,
  the same srun and torchruns on several.

Outputs: OpenRLHF writes the Hugging Face model into ``<out>.partial``; the
wrapper (``python -m genrm openrlhf run``) renames it to ``<out>`` only after a
successful exit, so an interrupted job never leaves a model that looks
complete. DeepSpeed checkpoints go to a directory outside the declared output
and are loaded on start (``--ckpt.load_enable``): a retried job resumes. The
same holds for both modules.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from genrm import paths
from genrm.config import OpenRLHFSettings, objective
from genrm.io import replace_path, write_json

log = logging.getLogger(__name__)

OPENRLHF_VERSION = "0.11.2"
TRAIN_SFT = "openrlhf.cli.train_sft"
TRAIN_RM = "openrlhf.cli.train_rm"
MODULES = {"sft": TRAIN_SFT, "bt": TRAIN_RM}  # by training objective (genrm.config.objective)
# SFT rows (genrm.train.rows): the prompt messages and the response messages
INPUT_KEY = "prompt"
OUTPUT_KEY = "response"
# Bradley-Terry rows: the two whole conversations
CHOSEN_KEY = "chosen"
REJECTED_KEY = "rejected"
# The reward head: named as transformers' *ForSequenceClassification names it, so that the
# saved model loads with AutoModelForSequenceClassification; the Bradley-Terry loss.
VALUE_HEAD_PREFIX = "score"
RM_LOSS = "sigmoid"
STAGING_SUFFIX = ".partial"


class Shell(str):
    """A command word that the shell must expand (``$VAR``, ``$(...)``): never quoted."""


def shell_join(words) -> str:
    return " ".join(w if isinstance(w, Shell) else shlex.quote(str(w)) for w in words)


def staging_dir(out: str | os.PathLike) -> str:
    """Where OpenRLHF saves the final model before it is renamed to ``out``."""
    return str(out) + STAGING_SUFFIX


def _num(x) -> str:
    return repr(float(x)) if isinstance(x, float) else str(x)


# --- the command --------------------------------------------------------------


def train_args(s: OpenRLHFSettings, goal: str, *, model_dir: str, rows: str, output_dir: str,
               checkpoint_dir: str, tensorboard_dir: str, run_name: str, seed: int) -> list[str]:
    """The flags of one job's module: ``train_sft`` (``goal`` sft) or ``train_rm`` (``goal`` bt)."""
    if goal == "sft":
        # the project's SFT rows through the model's own chat template; loss on the response
        data = ["--data.input_key", INPUT_KEY, "--data.output_key", OUTPUT_KEY]
    elif goal == "bt":
        # both conversations through the chat template (no prompt key); the reward at the final EOS
        data = ["--data.chosen_key", CHOSEN_KEY, "--data.rejected_key", REJECTED_KEY]
    else:
        raise ValueError(f"unknown training objective {goal!r}; allowed: {', '.join(MODULES)}")
    args = [
        "--model.model_name_or_path", model_dir,
        "--data.dataset", rows,
        *data,
        "--data.apply_chat_template",
        "--data.max_len", _num(s.max_len),
        "--data.max_samples", _num(s.max_samples),
        # optimisation
        "--train.seed", _num(seed),
        "--train.max_epochs", _num(s.epochs),
        "--train.batch_size", _num(s.global_batch_size),
        "--train.micro_batch_size", _num(s.micro_batch_size),
        "--adam.lr", _num(s.learning_rate),
        "--adam.weight_decay", _num(s.weight_decay),
        "--lr_scheduler", s.lr_scheduler,
        "--lr_warmup_ratio", _num(s.warmup_ratio),
        "--min_lr_ratio", _num(s.min_lr_ratio),
        "--max_norm", _num(s.max_norm),
        # DeepSpeed and memory
        "--ds.zero_stage", _num(s.zero_stage),
        "--ds.param_dtype", s.param_dtype,
        "--ds.attn_implementation", s.attn_implementation,
    ]
    if goal == "bt":
        args += ["--model.loss_type", RM_LOSS, "--ds.value_head_prefix", VALUE_HEAD_PREFIX]
    switches = {
        "packing_samples": "--ds.packing_samples",
        "gradient_checkpointing": "--model.gradient_checkpointing_enable",
        "adam_offload": "--ds.adam_offload",
        "overlap_comm": "--ds.overlap_comm",
        "use_liger_kernel": "--ds.use_liger_kernel",  # train_sft only (refused for bt by problems())
    }
    args += [flag for key, flag in switches.items() if getattr(s, key)]
    if s.ring_attn_size > 1:
        args += ["--ds.ring_attn_size", _num(s.ring_attn_size),
                 "--ds.ring_attn_head_stride", _num(s.ring_attn_head_stride)]
    args += [
        # the final Hugging Face model, renamed onto the rule's output by `run`
        "--ckpt.output_dir", output_dir,
        # DeepSpeed checkpoints outside the declared output: a retried job resumes
        "--ckpt.path", checkpoint_dir,
        "--ckpt.save_steps", _num(s.save_steps),
        "--ckpt.max_num", _num(s.max_checkpoints),
        "--ckpt.load_enable",
        "--logger.logging_steps", "1",
        "--logger.tensorboard_dir", tensorboard_dir,
        # names the TensorBoard run folder: a resumed job logs into the same one
        "--logger.wandb.run_name", run_name,
    ]
    return args + [str(a) for a in s.extra_args]


def launcher(s: OpenRLHFSettings, *, step_gpus: bool = True) -> list[str]:
    """torchrun on one node, or one torchrun per node started by srun.

    ``step_gpus=False`` leaves ``--gpus-per-node`` off the srun step (a step is given all the
    generic resources of its job by default); a cluster without GPUs refuses the flag ("srun:
    error: Invalid generic resource (gres) specification"), e.g. the local test cluster.
    """
    nodes, gpus = s.nodes, s.gpus_per_node
    if nodes == 1:
        return ["torchrun", "--standalone", "--nnodes=1", f"--nproc-per-node={gpus}"]
    port = s.rdzv_port
    return [
        # The job's shell runs on the first node of the allocation; srun starts one
        # task per node inside the same allocation (SLURM_JOB_ID).
        "srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
        *([f"--gpus-per-node={gpus}"] if step_gpus else []),
        f"--cpus-per-task={s.cpus_per_task}", "--mem=0",
        "--kill-on-bad-exit=1",
        "torchrun", f"--nnodes={nodes}", f"--nproc-per-node={gpus}", "--rdzv-backend=c10d",
        Shell(f"--rdzv-endpoint=$(python -m genrm openrlhf head-node):{port}"),
        Shell("--rdzv-id=$SLURM_JOB_ID"),
    ]


@dataclass(frozen=True)
class Job:
    """One OpenRLHF training job: what to launch, where its outputs go, what to record."""

    launch: tuple  # command words; Shell words are left to the shell
    out: str
    staging: str
    checkpoints: str
    tensorboard: str
    keep_checkpoints: bool
    record: dict  # written into the model's genrm_training.json: settings and seed

    def launch_line(self) -> str:
        return shell_join(self.launch)

    def shell_command(self) -> str:
        """The whole command a rule runs: the wrapper, then the launch command."""
        words = ["python", "-m", "genrm", "openrlhf", "run", "--out", self.out, "--staging", self.staging,
                 "--checkpoints", self.checkpoints, "--record", json.dumps(self.record, sort_keys=True)]
        if self.keep_checkpoints:
            words.append("--keep-checkpoints")
        return shell_join(words) + " -- " + self.launch_line()

    @property
    def module(self) -> str:
        return launch_module(self.launch)[0]

    def module_args(self) -> list[str]:
        """The flags given to the OpenRLHF module (what its parser reads)."""
        return launch_module(self.launch)[1]


def rule_job(settings: OpenRLHFSettings, *, model: str, method: str, model_dir: str, rows: str, out: str,
             seed: int) -> Job:
    """The training job of one model x method as the train_genrm rule runs it: ``train_sft`` for a
    GenRM, ``train_rm`` for a Bradley-Terry model (method bt); DeepSpeed checkpoints under
    ``<checkpoint_dir>/<model>/<method>``, TensorBoard under ``logs/``."""
    goal = objective(method)
    problems = settings.problems(reward_model=goal == "bt")
    if problems:
        raise ValueError("OpenRLHF settings: " + "; ".join(problems))
    out = str(out)
    checkpoints = paths.CHECKPOINTS.format(checkpoint_dir=settings.checkpoint_dir, model=model, method=method)
    tensorboard = paths.TENSORBOARD.format(model=model, method=method)
    staging = staging_dir(out)
    args = train_args(settings, goal, model_dir=str(model_dir), rows=str(rows), output_dir=staging,
                      checkpoint_dir=checkpoints, tensorboard_dir=tensorboard, run_name=f"{model}-{method}",
                      seed=seed)
    launch = tuple(launcher(settings) + ["-m", MODULES[goal]] + args)
    record = {"model": model, "method": method, "objective": goal, "seed": seed,
              "settings": dataclasses.asdict(settings)}
    return Job(launch, out, staging, checkpoints, tensorboard, settings.keep_checkpoints, record)


# --- the same job on CPU --------------------------------------------------------

# The launcher of a job without a GPU (genrm/train/openrlhf_cpu.py says what it changes): the module
# that runs OpenRLHF's module, started by python (one node) or by torchrun (several nodes).
CPU_MODULE = "genrm.train.openrlhf_cpu"
CPU_LAUNCHER = ("python", "-m", CPU_MODULE)
# Every flag that a CPU job changes: flag -> (its value on CPU, or None: left out; why).
# A flag to set is set even when the GPU command lacks it; a flag left out goes with its value.
CPU_FLAGS = {
    "--ds.attn_implementation": ("sdpa", "flash-attention 2 needs CUDA; sdpa is PyTorch's own attention"),
    "--ds.param_dtype": ("bf16", "DeepSpeed's CPU accelerator refuses fp16 and OpenRLHF offers no float32"),
    "--ds.packing_samples": (None, "OpenRLHF switches to flash-attention 2 when packing"),
    "--ds.ring_attn_size": (None, "ring attention is ring_flash_attn's: flash-attention kernels and packing"),
    "--ds.ring_attn_head_stride": (None, "a setting of ring attention"),
    "--ds.adam_offload": (None, "the optimizer states are on the CPU already; offload JIT-builds cpu_adam (+140 s)"),
    "--ds.use_liger_kernel": (None, "Liger's kernels are Triton kernels for GPUs"),
}
_CPU_FLAG_TAKES_VALUE = {"--ds.attn_implementation", "--ds.param_dtype", "--ds.ring_attn_size",
                         "--ds.ring_attn_head_stride"}


def cpu_args(args) -> list[str]:
    """A module's flags for a GPU job, changed as ``CPU_FLAGS`` says (everything else is kept,
    ``extra_args`` included); ``--flag=value`` spellings are understood."""
    args, kept, i = [str(a) for a in args], [], 0
    while i < len(args):
        word = args[i]
        flag = word.partition("=")[0]
        i += 1
        if flag not in CPU_FLAGS:
            kept.append(word)
            continue
        if flag in _CPU_FLAG_TAKES_VALUE and "=" not in word:
            i += 1  # its value goes with it
        value = CPU_FLAGS[flag][0]
        if value is not None:
            kept += [flag, value]
    for flag, (value, _why) in CPU_FLAGS.items():
        if value is not None and flag not in kept:
            kept += [flag, value]
    return kept


def cpu_launch(launch) -> tuple:
    """The launch command of the same job on machines without a GPU: the module's flags changed by
    ``cpu_args`` and the module run by ``CPU_MODULE``. One node: one process (``CPU_LAUNCHER``)
    in place of torchrun, whatever ``gpus_per_node``; OpenRLHF keeps the global batch size whatever
    the number of processes (more gradient accumulation steps on one), so the job trains on the
    same batches. Several nodes: srun and its torchruns are kept (less the step's
    ``--gpus-per-node``, as ``launcher(step_gpus=False)`` writes it: a cluster without GPUs refuses
    it), and each torchrun starts ``CPU_MODULE``: ``torchrun ... -m genrm.train.openrlhf_cpu -m
    openrlhf.cli.<module> <flags>``."""
    module, args = launch_module(launch)
    if str(launch[0]) != "srun":  # one node
        return (*CPU_LAUNCHER, "-m", module, *cpu_args(args))
    torchruns = [w for w in launch[:len(launch) - len(args) - 2]  # srun ... torchrun ..., before -m <module>
                 if not str(w).startswith("--gpus-per-node")]
    return (*torchruns, "-m", CPU_MODULE, "-m", module, *cpu_args(args))


def cpu_job(job: Job) -> Job:
    """``job`` (built by ``rule_job`` for GPUs) with the CPU launch command; outputs, checkpoints
    and the record are the same, so the wrapper (``Job.shell_command``) runs it unchanged."""
    return dataclasses.replace(job, launch=cpu_launch(job.launch))


def job_resources(s: OpenRLHFSettings) -> dict:
    """Snakemake resources of a job (what the SLURM executor turns into sbatch flags).

    ``gpu`` is the job's total (sbatch --gpus); ``nodes`` and ``mem_mb`` are per
    node; one task per node. ``tasks_per_gpu: 0`` stops the executor from turning
    ``tasks`` into --ntasks-per-gpu. A multi-node job is an ``mpi`` job to the
    executor: its shell runs in the batch script and starts its own ``srun``.
    A resource of None is left out.
    """
    nodes = s.nodes
    return {
        "gpu": None if s.device == "cpu" else nodes * s.gpus_per_node,
        "nodes": nodes,
        "tasks": nodes,
        "tasks_per_gpu": 0,
        "cpus_per_task": s.cpus_per_task,
        "mem_mb": s.mem_mb,
        "runtime": s.runtime,
        "mpi": "srun" if nodes > 1 else None,
    }


# --- running ------------------------------------------------------------------


def model_files_problem(path: Path) -> str | None:
    if not (path / "config.json").is_file():
        return "no config.json"
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        return "no weights (*.safetensors, *.bin)"
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        return "no tokenizer"
    return None


def staged_model_problem(staging_path: Path) -> str | None:
    """Why what OpenRLHF saved (after exiting 0) is not a model to move into place, or None."""
    problem = model_files_problem(staging_path) if staging_path.is_dir() else "no model directory"
    return problem and f"OpenRLHF exited 0 but {staging_path} is not a complete model: {problem}"


def run(command, out: str, staging: str | None = None, checkpoints: str | None = None,
        keep_checkpoints: bool = False, record: dict | None = None) -> None:
    """Run an OpenRLHF launch command and move its model into ``out`` atomically.

    ``command``: a list of words (run as is) or a string (run by bash). On a
    non-zero exit, or when the model is incomplete, nothing is moved, what was staged is
    removed, and the error says where the checkpoints to resume from are.
    """
    out_path = Path(out)
    staging_path = Path(staging or staging_dir(out))
    shutil.rmtree(staging_path, ignore_errors=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    resumed = bool(checkpoints) and Path(checkpoints).is_dir() and any(Path(checkpoints).iterdir())
    argv = ["bash", "-c", command] if isinstance(command, str) else [str(c) for c in command]
    if argv[0] == "srun" and not os.environ.get("SLURM_JOB_ID"):
        raise RuntimeError("a multi-node job must run inside a SLURM allocation (snakemake --profile "
                           "profiles/slurm); on one machine set the model's nodes to 1")
    if resumed:
        log.info("DeepSpeed checkpoints found in %s: OpenRLHF resumes from the latest", checkpoints)
    log.info("launching: %s", command if isinstance(command, str) else shlex.join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.time()
    code = _execute(argv)
    failure = f"OpenRLHF exited with status {code}" if code != 0 else staged_model_problem(staging_path)
    if failure:
        shutil.rmtree(staging_path, ignore_errors=True)  # what OpenRLHF had begun to save is no model
        where = f"; a retry resumes from the checkpoints in {checkpoints}" if checkpoints else ""
        raise RuntimeError(f"{failure}{where}")
    info = {"backend": "openrlhf", "openrlhf_version": OPENRLHF_VERSION,
            "command": command if isinstance(command, str) else argv,
            "resumed_from_checkpoint": resumed, "seconds": round(time.time() - start, 1), **(record or {})}
    write_json(staging_path / "genrm_training.json", info)
    replace_path(staging_path, out_path)
    log.info("model saved to %s", out_path)
    if checkpoints and not keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
        log.info("removed the DeepSpeed checkpoints in %s (train.openrlhf.keep_checkpoints: false)", checkpoints)


def _execute(argv: list[str]) -> int:
    """Run ``argv``; SIGTERM/SIGINT (SLURM's time limit, Ctrl-C) go on to it."""
    proc = subprocess.Popen(argv)

    def forward(signum, _frame):
        proc.send_signal(signum)  # torchrun passes it on to its workers

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- SLURM helpers ------------------------------------------------------------


def head_node(env=None) -> str:
    """The first node of the SLURM allocation (where the c10d rendezvous runs).

    The SLURM executor's job step keeps SLURM_JOB_ID but drops SLURM_JOB_NODELIST,
    so the node list is read back with scontrol when it is missing.
    """
    env = os.environ if env is None else env
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist and env.get("SLURM_JOB_ID"):
        shown = subprocess.run(["scontrol", "show", "job", env["SLURM_JOB_ID"]], capture_output=True,
                               text=True, check=True).stdout
        match = re.search(r"(?:^|\s)NodeList=(\S+)", shown)
        nodelist = match.group(1) if match and match.group(1) != "(null)" else None
    if not nodelist:
        return socket.gethostname()
    hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                           check=True).stdout.split()
    return hosts[0]


# --- checking commands against the installed OpenRLHF ---------------------------

_ARG_TYPES = {"int": int, "float": float, "str": str}
_LITERAL_KWARGS = ("action", "nargs", "choices", "dest", "const", "required", "metavar", "default")


def module_source(module: str = TRAIN_SFT, cli_dir: str | os.PathLike | None = None) -> Path:
    """``openrlhf/cli/<name>.py`` of an OpenRLHF module (of the installed OpenRLHF unless
    ``cli_dir`` names another ``openrlhf/cli`` folder), found without importing it."""
    package, _, name = module.rpartition(".")
    if package != "openrlhf.cli":
        raise ValueError(f"{module} is not an OpenRLHF command-line module (openrlhf.cli.*)")
    if cli_dir is None:
        import importlib.util

        spec = importlib.util.find_spec("openrlhf")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("openrlhf is not installed (pip install --no-deps openrlhf==" + OPENRLHF_VERSION
                                    + ")")
        cli_dir = Path(list(spec.submodule_search_locations)[0]) / "cli"
    return Path(cli_dir) / f"{name}.py"


@functools.cache
def _recover_parser(source: Path, prog: str) -> argparse.ArgumentParser:
    import ast

    tree = ast.parse(source.read_text(encoding="utf-8"))
    parser = argparse.ArgumentParser(prog=prog, allow_abbrev=False)
    count = 0
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument" and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "parser"):
            continue
        names = [ast.literal_eval(a) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg == "type":
                if not (isinstance(kw.value, ast.Name) and kw.value.id in _ARG_TYPES):
                    raise ValueError(f"{names}: unsupported type {ast.unparse(kw.value)}")
                kwargs["type"] = _ARG_TYPES[kw.value.id]
            elif kw.arg in _LITERAL_KWARGS:
                try:
                    kwargs[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:  # a computed default, e.g. int(1e8): irrelevant to parsing
                    if kw.arg != "default":
                        raise
        parser.add_argument(*names, **kwargs)
        count += 1
    if count == 0:
        raise ValueError(f"no parser.add_argument call found in {source}")
    return parser


def recover_parser(module: str = TRAIN_SFT, cli_dir: str | os.PathLike | None = None) -> argparse.ArgumentParser:
    """The argument parser of an OpenRLHF module (``train_sft``, ``train_rm``), rebuilt from its
    source: every ``parser.add_argument(...)`` call is read with ``ast`` (nothing is imported, so
    no CUDA, DeepSpeed or flash-attn is needed). Abbreviated flags are refused, which the real
    parser would accept. Built once per source file."""
    return _recover_parser(module_source(module, cli_dir).resolve(), module)


def launch_module(words) -> tuple[str, list[str]]:
    """The OpenRLHF module of a launch command (the word after ``-m openrlhf.cli.``) and its flags."""
    words = [str(w) for w in words]
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1].startswith("openrlhf.cli."):
            return words[i + 1], words[i + 2:]
    raise ValueError("no '-m openrlhf.cli.<module>' in the command")


def launch_args(words) -> list[str]:
    """The words after ``-m openrlhf.cli.<module>`` of a launch command."""
    return launch_module(words)[1]


def check_command(words, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse a launch command's flags with the recovered parser of its own module (or ``parser``);
    an unknown flag or a bad value raises ValueError."""
    module, args = launch_module(words)
    parser = parser or recover_parser(module)
    try:
        return parser.parse_args(args)
    except SystemExit as exit_:
        raise ValueError(f"OpenRLHF {OPENRLHF_VERSION} {parser.prog.rpartition('.')[2]} refuses: "
                         f"{shlex.join(args)}") from exit_
