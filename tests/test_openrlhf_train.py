"""OpenRLHF 0.11.2 trains for real on CPU (issue 17): the production trainer, not a stand-in.

Each job is the one the train_genrm rule builds (``genrm.train.openrlhf.rule_job``, demo config,
tiny preset), turned into its CPU command (``cpu_job``: the launcher
``python -m genrm.train.openrlhf_cpu`` and the flags of ``CPU_FLAGS``), and run by the shell
through the project's own wrapper (``python -m genrm openrlhf run ... -- <launch>``), on rows made
by the project's own formatters (``python -m genrm format-sft`` / ``format-bt``) and a tiny Llama
built by ``build_tiny_model``. What is checked:

* train_sft and train_rm: the loss falls (read from OpenRLHF's TensorBoard log); the model
  appears at the rule's output only on success; it loads with transformers and is judged by
  the project's judge (``genrm.judge.job.judge``, transformers backend);
* a job killed (SIGTERM, as SLURM's time limit sends it) after its first DeepSpeed checkpoint
  leaves no model, and its rerun resumes from that checkpoint: the rerun's first logged global
  step follows the checkpoint's, and the total is that of an uninterrupted run;
* ``--data.max_samples`` limits the rows;
* exactly which flags differ between the CPU and the GPU command of one job.

DeepSpeed JIT-builds two ops on first use (about 3 minutes on 2 cores, into torch's per-user cache
~/.cache/torch_extensions); later runs reuse them. Trained models are shared by module fixtures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    OPENRLHF_MODEL,
    OPENRLHF_SEED,
    REPO,
    judge_settings,
    steps,
    tensorboard_runs,
    tiny_openrlhf_settings,
)
from genrm.io import read_jsonl, write_jsonl
from genrm.train import openrlhf as gor
from genrm.train import openrlhf_cpu

pytestmark = pytest.mark.openrlhf
# Installed by `make install`: a missing one is an installation error, not a reason to skip.
MISSING = [name for name in ("openrlhf", "tensorboard") if importlib.util.find_spec(name) is None]
if not (openrlhf_cpu.DEEPSPEED_DIR / "deepspeed" / "__init__.py").is_file():
    MISSING.append(f"deepspeed (in {openrlhf_cpu.DEEPSPEED_DIR})")
assert not MISSING, f"not installed: {', '.join(MISSING)}; run make install (requirements/*.txt)"

SFT_EPOCHS = 2
BATCH = 16  # the tiny preset's global batch size (micro batch 8: two accumulation steps)


# --- jobs -----------------------------------------------------------------------


def gpu_and_cpu_jobs(run_dir: Path, method: str, model_dir: Path, rows: Path, **changes):
    """The rule's job for GPUs and the same job for CPU, run in and writing under ``run_dir`` (its
    TensorBoard folder, like the rule's, is relative: under ``logs/`` of the working directory)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = tiny_openrlhf_settings(method, run_dir / "checkpoints", **changes)
    gpu = gor.rule_job(settings, model=OPENRLHF_MODEL, method=method, model_dir=str(model_dir), rows=str(rows),
                       out=str(run_dir / "results" / "models" / OPENRLHF_MODEL / method), seed=OPENRLHF_SEED)
    return gpu, gor.cpu_job(gpu)


def job_env() -> dict:
    """The rule's environment: this virtual environment's ``python`` first on PATH; MAX_JOBS=1
    leaves a core free should DeepSpeed build its ops."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.setdefault("MAX_JOBS", "1")
    return env


def start(job: gor.Job, run_dir: Path, log: Path) -> subprocess.Popen:
    """Run the job's whole command (wrapper and launch) with bash, as the rule's shell does, in a
    session of its own (a process group that a test can signal as SLURM signals a job step)."""
    with open(log, "w", encoding="utf-8") as handle:
        return subprocess.Popen(["bash", "-c", job.shell_command()], cwd=run_dir, env=job_env(), stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)


def train(job: gor.Job, run_dir: Path, log: Path) -> str:
    proc = start(job, run_dir, log)
    code = proc.wait()
    text = log.read_text(encoding="utf-8", errors="replace")
    assert code == 0, f"training failed ({code}); the end of {log}:\n{text[-4000:]}"
    return text


def mean_loss(run: dict, tag: str, which: slice) -> float:
    values = [value for _, value in run[tag]][which]
    return sum(values) / len(values)


# --- data and trained models, shared by the tests ---------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("openrlhf-cpu")


@pytest.fixture(scope="module")
def rewardbench_rows(workdir) -> Path:
    from genrm.data import demo

    path = workdir / "rewardbench.jsonl"
    write_jsonl(path, demo.rewardbench(per_subset=1))
    return path


@pytest.fixture(scope="module")
def sft_trained(workdir, training_rows, tiny_model_dir):
    """A GenRM trained by train_sft: 300 judge rows, 2 epochs (37 optimizer steps of 16 rows)."""
    run_dir = workdir / "sft"
    _, job = gpu_and_cpu_jobs(run_dir, "verify", tiny_model_dir, training_rows["verify"], epochs=SFT_EPOCHS)
    started = time.time()
    log = train(job, run_dir, run_dir / "train.log")
    return job, log, tensorboard_runs(job, run_dir), time.time() - started


@pytest.fixture(scope="module")
def rm_trained(workdir, training_rows, tiny_model_dir):
    """A Bradley-Terry reward model trained by train_rm: the valid pairs, 1 epoch (18 optimizer
    steps). Without --eval.dataset, train_rm evaluates on the first 1% of the training rows, which it
    also trains on: its eval figures are training figures."""
    run_dir = workdir / "rm"
    _, job = gpu_and_cpu_jobs(run_dir, "bt", tiny_model_dir, training_rows["bt"])
    started = time.time()
    log = train(job, run_dir, run_dir / "train.log")
    return job, log, tensorboard_runs(job, run_dir), time.time() - started


RESUME_ROWS, RESUME_EPOCHS, RESUME_SAVE_STEPS = 160, 3, 5


@pytest.fixture(scope="module")
def killed_and_resumed(workdir, training_rows, tiny_model_dir):
    """A train_sft job on the first 160 rows (``--data.max_samples``), 3 epochs (30 steps), a
    DeepSpeed checkpoint every 5 steps. As soon as the first checkpoint is complete (DeepSpeed
    writes ``latest`` last), SIGTERM goes to every process of the job (the wrapper passes it on
    too), as at SLURM's time limit; then the same command is rerun."""
    run_dir = workdir / "resume"
    _, job = gpu_and_cpu_jobs(run_dir, "verify", tiny_model_dir, training_rows["verify"], epochs=RESUME_EPOCHS,
                              save_steps=RESUME_SAVE_STEPS, max_samples=RESUME_ROWS)
    latest = Path(job.checkpoints) / "latest"
    proc = start(job, run_dir, run_dir / "killed.log")
    try:
        while proc.poll() is None and not latest.is_file():
            time.sleep(0.02)
        finished_first = proc.poll() is not None
        if not finished_first:
            os.killpg(proc.pid, signal.SIGTERM)  # every process of the job, as SLURM's time limit does
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed_log = (run_dir / "killed.log").read_text(encoding="utf-8", errors="replace")
    assert not finished_first, f"the job ended before its first checkpoint:\n{killed_log[-3000:]}"
    after_kill = {"code": code, "out": Path(job.out).exists(), "checkpoint": latest.read_text().strip(),
                  "staged_model": gor.model_files_problem(Path(job.staging)) is None}
    log = train(job, run_dir, run_dir / "resumed.log")
    return job, killed_log, log, tensorboard_runs(job, run_dir), after_kill


# --- the command ------------------------------------------------------------------


def flag_values(words) -> dict[str, str | None]:
    """``--flag value`` and ``--switch`` words -> {flag: value or None}."""
    out, words = {}, [str(w) for w in words]
    for i, word in enumerate(words):
        if word.startswith("--"):
            following = words[i + 1] if i + 1 < len(words) else "--"
            out[word] = None if following.startswith("--") else following
    return out


def test_cpu_and_gpu_commands_of_one_job_differ_exactly_in_these_flags(tmp_path, tiny_model_dir):
    """Every GPU-only option on (packing, ring attention over 2 GPUs, Adam offload, Liger, fp16):
    the CPU command changes exactly these flags and the launcher, and keeps every other word."""
    gpu, cpu = gpu_and_cpu_jobs(tmp_path, "verify", tiny_model_dir, tmp_path / "rows.jsonl", gpus_per_node=2,
                                ring_attn_size=2, packing_samples=True, adam_offload=True, use_liger_kernel=True,
                                zero_stage=3, param_dtype="fp16", attn_implementation="flash_attention_2")
    assert gpu.launch[:4] == ("torchrun", "--standalone", "--nnodes=1", "--nproc-per-node=2")
    assert cpu.launch[:5] == ("python", "-m", "genrm.train.openrlhf_cpu", "-m", "openrlhf.cli.train_sft")
    assert cpu.module == gpu.module == gor.TRAIN_SFT
    before, after = flag_values(gpu.module_args()), flag_values(cpu.module_args())
    differ = {flag: (before.get(flag, "absent"), after.get(flag, "absent"))
              for flag in before.keys() | after.keys() if before.get(flag, "absent") != after.get(flag, "absent")}
    assert differ == {
        "--ds.attn_implementation": ("flash_attention_2", "sdpa"),
        "--ds.param_dtype": ("fp16", "bf16"),
        "--ds.packing_samples": (None, "absent"),
        "--ds.ring_attn_size": ("2", "absent"),
        "--ds.ring_attn_head_stride": ("1", "absent"),
        "--ds.adam_offload": (None, "absent"),
        "--ds.use_liger_kernel": (None, "absent"),
    }
    assert set(differ) == set(gor.CPU_FLAGS)  # the one list that says why, flag by flag
    assert [f for f in before if f not in differ] == [f for f in after if f not in differ]  # the rest, in order
    assert (cpu.out, cpu.staging, cpu.checkpoints, cpu.record) == (gpu.out, gpu.staging, gpu.checkpoints, gpu.record)


def test_cpu_command_of_a_multi_node_job_keeps_srun_and_its_torchruns(tmp_path, tiny_model_dir):
    """Several nodes: srun and one torchrun per node stay (less the step's --gpus-per-node, which a
    cluster without GPUs refuses), torchrun starts the CPU launcher, and the module's flags are those
    of the one-node CPU job (tests/test_slurm_launch.py runs such a job on two Slurm nodes)."""
    rows, shape = tmp_path / "rows.jsonl", {"gpus_per_node": 2, "micro_batch_size": 4}  # 16 rows: 2 x 2 x 4
    _, one_node = gpu_and_cpu_jobs(tmp_path, "verify", tiny_model_dir, rows, **shape)
    gpu, cpu = gpu_and_cpu_jobs(tmp_path, "verify", tiny_model_dir, rows, nodes=2, **shape)
    settings = tiny_openrlhf_settings("verify", tmp_path / "checkpoints", nodes=2, **shape)
    assert gpu.launch[0] == "srun" and "--gpus-per-node=2" in gpu.launch
    assert cpu.launch == (*gor.launcher(settings, step_gpus=False), "-m", gor.CPU_MODULE, "-m", gor.TRAIN_SFT,
                          *one_node.module_args())
    assert [w for w in cpu.launch if isinstance(w, gor.Shell)] == [w for w in gpu.launch if isinstance(w, gor.Shell)]
    gor.check_command(cpu.launch)


@pytest.mark.parametrize("method", ["verify", "bt"])
def test_cpu_commands_parse_with_openrlhf_s_own_parser(tmp_path, tiny_model_dir, method):
    """The CPU command of every kind of job is accepted by the parser of its module; each flag that
    CPU_FLAGS sets is one that takes a value there, each it removes is known to it."""
    _, cpu = gpu_and_cpu_jobs(tmp_path, method, tiny_model_dir, tmp_path / "rows.jsonl")
    args = gor.check_command(cpu.launch)
    assert (args.__dict__["ds.attn_implementation"], args.__dict__["ds.param_dtype"]) == ("sdpa", "bf16")
    assert args.__dict__["ds.packing_samples"] is False
    parser = gor.recover_parser(cpu.module)
    actions = {option: action for action in parser._actions for option in action.option_strings}
    for flag in gor.CPU_FLAGS:
        if flag == "--ds.use_liger_kernel" and method == "bt":
            continue  # train_rm has no Liger kernels
        assert flag in actions, flag
        assert (actions[flag].nargs == 0) == (flag not in gor._CPU_FLAG_TAKES_VALUE), flag


def test_cpu_args_understand_inline_values_and_set_missing_flags():
    assert gor.cpu_args(["--ds.attn_implementation=flash_attention_2", "--ds.ring_attn_size=4", "--x", "1"]) == [
        "--ds.attn_implementation", "sdpa", "--x", "1", "--ds.param_dtype", "bf16"]


def test_launcher_defaults_never_override_the_environment():
    env = {"MASTER_PORT": "29999", "RANK": "0"}
    added = openrlhf_cpu.apply_env_defaults(env)
    assert env["MASTER_PORT"] == "29999" and "MASTER_PORT" not in added and "RANK" not in added
    assert added == {"DS_ACCELERATOR": "cpu", "MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    fresh: dict = {}
    openrlhf_cpu.apply_env_defaults(fresh)
    assert 0 < int(fresh["MASTER_PORT"]) < 65536


def test_the_stand_in_flash_attn_and_deepspeed_are_importable_only_in_the_launcher():
    """Outside the launcher's process neither ``flash_attn`` (a GPU environment's real one is never
    shadowed) nor DeepSpeed (accelerate would import it in every save_pretrained) can be imported;
    the launcher's path holds both, the stand-in with exactly the modules OpenRLHF imports."""
    assert importlib.util.find_spec("flash_attn") is None and importlib.util.find_spec("deepspeed") is None
    code = ("import sys; from genrm.train import openrlhf_cpu as L; L.add_shims(); "
            "from flash_attn.bert_padding import index_first_axis, pad_input, rearrange, unpad_input; "
            "from flash_attn.utils.distributed import all_gather; import flash_attn; print(flash_attn.__file__); "
            "import importlib.util; print(importlib.util.find_spec('deepspeed').origin)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    shim, deepspeed = proc.stdout.split()
    assert Path(shim).parent.parent == openrlhf_cpu.SHIMS
    assert Path(deepspeed).parent.parent == openrlhf_cpu.DEEPSPEED_DIR


def test_stand_in_padding_functions_match_plain_indexing():
    import torch

    from genrm.train.cpu_shims.flash_attn.bert_padding import index_first_axis, pad_input, unpad_input
    from genrm.train.cpu_shims.flash_attn.utils.distributed import all_gather

    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    hidden = torch.arange(3 * 4 * 2, dtype=torch.float32).reshape(3, 4, 2).requires_grad_()
    tokens, indices, cu_seqlens, max_seqlen, used = unpad_input(hidden, mask)
    assert torch.equal(tokens, hidden[mask.bool()]) and indices.tolist() == [0, 1, 2, 4, 5, 8]
    assert cu_seqlens.tolist() == [0, 3, 5, 6] and cu_seqlens.dtype == torch.int32
    assert max_seqlen == 3 and used.tolist() == [3, 2, 1]
    back = pad_input(tokens, indices, 3, 4)
    assert torch.equal(back, hidden * mask.unsqueeze(-1))
    back.sum().backward()
    assert torch.equal(hidden.grad, mask.unsqueeze(-1).expand(3, 4, 2).float())  # gradient flows to kept rows only
    assert torch.equal(index_first_axis(torch.arange(10), torch.tensor([7, 2])), torch.tensor([7, 2]))
    assert all_gather(tokens, None) is tokens  # one process


# --- training -----------------------------------------------------------------------


def test_train_sft_loss_falls_and_the_model_loads_and_judges(sft_trained, training_rows, rewardbench_rows, tmp_path):
    from transformers import AutoModelForCausalLM

    from genrm.judge.job import judge

    job, log, runs, seconds = sft_trained
    assert "openrlhf.cli.train_sft on CPU" in log and "ds.attn_implementation sdpa" in log
    (run,) = runs
    total = SFT_EPOCHS * len(read_jsonl(training_rows["verify"])) // BATCH  # OpenRLHF counts steps across epochs
    assert steps(run, "train/gpt_loss") == list(range(1, total + 1))
    first, last = mean_loss(run, "train/gpt_loss", slice(0, 3)), mean_loss(run, "train/gpt_loss", slice(-3, None))
    assert last < first - 1.0, (first, last)
    out = Path(job.out)
    assert not Path(job.staging).exists() and not Path(job.checkpoints).exists()
    info = json.loads((out / "genrm_training.json").read_text())
    assert info["resumed_from_checkpoint"] is False and info["seed"] == OPENRLHF_SEED and info["objective"] == "sft"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "llama" and model.num_parameters() > 0
    predictions = tmp_path / "predictions.jsonl"
    judge(str(out), str(rewardbench_rows), str(predictions),
          judge_settings("logprob", backend="transformers", max_model_len=384))
    rows = read_jsonl(predictions)
    assert len(rows) == len(read_jsonl(rewardbench_rows))
    assert all(r["verdict_chosen_a"] in ("A", "B") and r["correct"] in (0.0, 0.5, 1.0) for r in rows)
    print(f"train_sft: loss {first:.2f} -> {last:.2f} in {total} steps, {seconds:.0f} s")


def test_train_rm_loss_falls_and_the_model_loads_and_judges(rm_trained, training_rows, rewardbench_rows, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from genrm.judge.job import judge

    job, log, runs, seconds = rm_trained
    assert "openrlhf.cli.train_rm on CPU" in log
    (run,) = runs
    pairs = len(read_jsonl(training_rows["bt"]))
    total = pairs // BATCH  # whole batches (the loader drops the last, partial one)
    assert steps(run, "train/loss") == list(range(1, total + 1))
    first, last = mean_loss(run, "train/loss", slice(0, 3)), mean_loss(run, "train/loss", slice(-3, None))
    assert first > 0.6 and last < 0.4, (first, last)  # from log 2 (chance) down
    out = Path(job.out)
    model = AutoModelForSequenceClassification.from_pretrained(out, num_labels=1)
    assert model.score.weight.shape[0] == 1 and torch.count_nonzero(model.score.weight) > 0
    predictions = tmp_path / "predictions.jsonl"
    judge(str(out), str(rewardbench_rows), str(predictions), judge_settings("bt", backend="transformers",
                                                                            max_model_len=384))
    rows = read_jsonl(predictions)
    assert len(rows) == len(read_jsonl(rewardbench_rows))
    accuracy = sum(r["correct"] for r in rows) / len(rows)
    assert accuracy > 0.7, accuracy  # the demo's better answers are easy to tell apart
    print(f"train_rm: loss {first:.2f} -> {last:.2f} in {total} steps, {seconds:.0f} s, accuracy {accuracy:.2f}")


def test_a_killed_job_leaves_no_model_and_its_rerun_resumes_from_the_checkpoint(killed_and_resumed):
    from transformers import AutoModelForCausalLM

    job, killed_log, log, runs, after_kill = killed_and_resumed
    assert after_kill["code"] != 0 and "status -15" in killed_log  # the wrapper passed SIGTERM on
    assert after_kill["out"] is False and after_kill["staged_model"] is False
    saved_step = int(after_kill["checkpoint"].removeprefix("global_step"))
    assert saved_step >= RESUME_SAVE_STEPS
    assert "DeepSpeed checkpoints found" in log
    consumed = int(re.search(r"Loaded the checkpoint: .*, consumed_samples: (\d+)", log).group(1))
    assert consumed == saved_step * BATCH
    killed, resumed = runs
    total = RESUME_EPOCHS * RESUME_ROWS // BATCH
    assert steps(killed, "train/gpt_loss")[0] == 1
    assert steps(resumed, "train/gpt_loss") == list(range(saved_step + 1, total + 1))
    info = json.loads((Path(job.out) / "genrm_training.json").read_text())
    assert info["resumed_from_checkpoint"] is True
    assert not Path(job.checkpoints).exists()  # removed after success (keep_checkpoints: false)
    AutoModelForCausalLM.from_pretrained(job.out)


def test_max_samples_limits_the_rows(killed_and_resumed, training_rows):
    """--data.max_samples 160 of the 300 rows: OpenRLHF reads 160, and a run is 160 / 16 steps an epoch."""
    job, killed_log, _log, runs, _after = killed_and_resumed
    assert len(read_jsonl(training_rows["verify"])) == 300
    assert re.search(rf"num_rows: {RESUME_ROWS}\b", killed_log)
    assert max(steps(runs[-1], "train/gpt_loss")) == RESUME_EPOCHS * RESUME_ROWS // BATCH
