"""The OpenRLHF backend, checked without a GPU against OpenRLHF 0.11.2 itself.

* Every training command the production config generates (5 models x 2 GenRM
  methods, and the Bradley-Terry model of every model) is parsed by the argument
  parser of its module, openrlhf/cli/train_sft.py or train_rm.py of the installed
  OpenRLHF, rebuilt from its source with ``ast`` (no import of flash-attn or
  DeepSpeed); an unknown flag fails, and so does a flag of the other module.
* The torchrun part of the launch is parsed by torch's own torchrun parser.
* OpenRLHF's own SFTDataset runs over genrm's SFT rows with a tiny tokenizer,
  with the arguments the generated command gives it: the loss mask covers
  exactly the verdict of a judge row and the chosen answer of a correct row.
  Its RewardDataset runs over the Bradley-Terry rows: each side is the whole
  conversation through the chat template, ending with EOS, token for token what
  the TRL backend trains on and the judge scores.
* The wrapper that runs the command (``python -m genrm openrlhf run``) moves the
  model into place only on success and records the settings and seed beside it.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from genrm import config as gconfig
from genrm import workflow
from genrm.train import openrlhf as gor

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.unit
pytest.importorskip("openrlhf", reason="pip install --no-deps openrlhf==0.11.2 (see the Makefile)")


@pytest.fixture(scope="module")
def parser():
    return gor.recover_parser()


@pytest.fixture(scope="module")
def rm_parser():
    return gor.recover_parser(gor.TRAIN_RM)


@pytest.fixture(scope="module")
def production():
    return gconfig.load(REPO / "workflow_config.yaml")


def hierarchize(namespace):
    """OpenRLHF's own openrlhf.utils.config.hierarchize, loaded from its file (the
    package openrlhf.utils imports DeepSpeed)."""
    path = gor.module_source(gor.TRAIN_SFT).parent.parent / "utils" / "config.py"
    spec = importlib.util.spec_from_file_location("_openrlhf_utils_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.hierarchize(namespace)


def production_job(cfg, model, method):
    settings = gconfig.openrlhf_settings(cfg, model, method)
    return settings, gor.rule_job(settings, model=model, method=method, model_dir=f"resources/models/{model}",
                                  rows=workflow.train_rows(method), out=f"results/models/{model}/{method}",
                                  seed=cfg["seed"])


# --- the recovered parser -------------------------------------------------------


def test_installed_openrlhf_is_the_pinned_version():
    from importlib.metadata import version

    assert version("openrlhf") == gor.OPENRLHF_VERSION == "0.11.2"


def test_parser_is_recovered_from_the_installed_source(parser):
    flags = {s for a in parser._actions for s in a.option_strings}
    assert len(flags) > 70
    for flag in ("--model.model_name_or_path", "--data.apply_chat_template", "--data.input_key",
                 "--ds.zero_stage", "--ckpt.load_enable", "--adam.lr", "--train.micro_batch_size"):
        assert flag in flags
    assert "flash_attn" not in sys.modules and "deepspeed" not in sys.modules


def test_rm_parser_is_recovered_from_train_rm(parser, rm_parser):
    sft = {s for a in parser._actions for s in a.option_strings}
    rm = {s for a in rm_parser._actions for s in a.option_strings}
    assert {"--data.chosen_key", "--data.rejected_key", "--model.loss_type", "--ds.value_head_prefix"} <= rm - sft
    assert {"--data.input_key", "--data.output_key", "--ds.use_liger_kernel"} <= sft - rm
    assert rm_parser.prog == "openrlhf.cli.train_rm" and gor.recover_parser(gor.TRAIN_RM) is rm_parser  # built once
    assert "flash_attn" not in sys.modules and "deepspeed" not in sys.modules


ALL_MODELS = ["llama3.1-8b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b"]
ALL_METHODS = ["verify", "verify_correct"]


def test_production_config_has_the_five_models_and_three_methods(production):
    assert sorted(production["models"]) == sorted(ALL_MODELS)
    assert list(production["methods"]) == [*ALL_METHODS, "bt"]
    assert production["methods"]["bt"]["label"] == "Bradley-Terry (ours)"
    assert production["train"]["backend"] == "openrlhf"


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("model", ALL_MODELS)
def test_every_production_command_parses(parser, production, model, method):
    settings, job = production_job(production, model, method)
    args = hierarchize(gor.check_command(job.launch, parser))
    out = f"results/models/{model}/{method}"
    # data: genrm's rows through the model's own chat template
    assert args.model.model_name_or_path == f"resources/models/{model}"
    assert args.data.dataset == f"results/sft/{method}/rows.jsonl"
    assert (args.data.input_key, args.data.output_key) == ("prompt", "response")
    assert args.data.apply_chat_template is True
    assert args.data.max_len == settings.max_len == 32768  # as published
    assert args.data.max_samples >= 10**8  # OpenRLHF's default silently keeps 1,000,000 rows
    assert args.model.pretrain_mode_enable is False and args.data.multiturn is False
    # the published recipe
    assert args.train.batch_size == 128
    assert args.adam.lr == pytest.approx(5e-6)
    assert args.train.max_epochs == 2
    assert args.ds.param_dtype == "bf16"
    assert args.ds.attn_implementation == "flash_attention_2"
    assert args.ds.packing_samples is True
    assert args.model.gradient_checkpointing_enable is True
    assert args.ds.zero_stage == settings.zero_stage == 3
    assert args.train.micro_batch_size == settings.micro_batch_size
    assert args.ds.adam_offload is settings.adam_offload
    assert args.ds.ring_attn_size == settings.ring_attn_size
    assert args.train.seed == production["seed"]
    # outputs: the model into the staging folder beside the rule's output; DeepSpeed
    # checkpoints outside it, loaded on start; TensorBoard under logs/
    assert args.ckpt.output_dir == out + ".partial"
    assert args.ckpt.path == f"results/checkpoints/{model}/{method}"
    assert not args.ckpt.path.startswith(out + "/")
    assert args.ckpt.load_enable is True and args.ckpt.save_steps > 0 and args.ckpt.max_num >= 2
    assert args.logger.tensorboard_dir.startswith("logs/train_genrm/")
    # OpenRLHF's start-up assertions and DeepSpeed's batch arithmetic
    world = settings.nodes * settings.gpus_per_node
    if args.ds.ring_attn_size > 1:
        assert args.ds.packing_samples
    data_parallel = world // args.ds.ring_attn_size
    assert args.train.batch_size % (args.train.micro_batch_size * data_parallel) == 0


@pytest.mark.parametrize("model", ALL_MODELS)
def test_every_bradley_terry_command_parses_with_train_rm(rm_parser, parser, production, model):
    """Method bt, for every model (LLaMA by default, the Qwen sizes opt in): train_rm's own parser
    takes the command; the data are the Bradley-Terry rows with the chat template; the GPUs, nodes
    and memory are the model's GenRM ones, the recipe the bt one."""
    settings, job = production_job(production, model, "bt")
    assert job.module == "openrlhf.cli.train_rm"
    args = hierarchize(gor.check_command(job.launch))  # the parser of the command's own module
    assert vars(gor.check_command(job.launch, rm_parser)) == vars(gor.check_command(job.launch))
    with pytest.raises(ValueError, match="train_sft refuses"):  # a train_rm command is not a train_sft one
        gor.check_command(job.launch, parser)
    out = f"results/models/{model}/bt"
    assert args.model.model_name_or_path == f"resources/models/{model}"
    assert args.data.dataset == "results/bt/rows.jsonl"
    assert (args.data.chosen_key, args.data.rejected_key, args.data.prompt_key) == ("chosen", "rejected", None)
    assert args.data.apply_chat_template is True and args.data.input_template is None
    assert args.data.max_len == settings.max_len and args.data.max_samples >= 10**8
    assert args.model.loss_type == "sigmoid"  # -log sigmoid(r_chosen - r_rejected): Bradley-Terry
    assert args.model.margin_loss_enable is False
    assert args.ds.value_head_prefix == "score"  # loads as *ForSequenceClassification
    # the reward model recipe over the model's own GPUs, nodes, memory and ZeRO
    sft = gconfig.openrlhf_settings(production, model)
    assert (settings.nodes, settings.gpus_per_node, settings.mem_mb, settings.zero_stage, settings.adam_offload,
            settings.ring_attn_size) == (sft.nodes, sft.gpus_per_node, sft.mem_mb, sft.zero_stage, sft.adam_offload,
                                         sft.ring_attn_size)
    assert (args.train.max_epochs, args.train.batch_size, args.train.micro_batch_size) == (1, 256, 1)
    assert args.adam.lr == settings.learning_rate <= 9e-6
    assert args.ds.param_dtype == "bf16" and args.ds.packing_samples is True
    assert args.model.gradient_checkpointing_enable is True and args.ds.zero_stage == 3
    assert args.ds.ring_attn_size == settings.ring_attn_size
    # the same outputs, resume and launch as SFT
    assert args.ckpt.output_dir == out + ".partial"
    assert args.ckpt.path == f"results/checkpoints/{model}/bt" and args.ckpt.load_enable is True
    assert args.logger.tensorboard_dir == f"logs/train_genrm/{model}/bt.tensorboard"
    world = settings.nodes * settings.gpus_per_node
    assert args.train.batch_size % (args.train.micro_batch_size * world // args.ds.ring_attn_size) == 0
    assert workflow.train_resources(production, model, "bt") == gor.job_resources(settings)
    assert list(job.launch[:job.launch.index("-m")]) == gor.launcher(sft)


def test_bt_learning_rates_fall_with_size(production):
    rates = [gconfig.openrlhf_settings(production, m, "bt").learning_rate
             for m in ("qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b")]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == 4


def test_an_sft_command_fails_train_rm(rm_parser, production):
    _, job = production_job(production, "llama3.1-8b", "verify")
    with pytest.raises(ValueError, match="train_rm refuses"):
        gor.check_command(job.launch, rm_parser)


def test_liger_kernels_are_refused_for_bt(production):
    cfg = copy.deepcopy(production)
    cfg["train"]["openrlhf"]["common"]["use_liger_kernel"] = True
    message = invalid(cfg)
    assert "train.bt.openrlhf (model llama3.1-8b): use_liger_kernel" in message
    assert "model qwen2.5-7b): use_liger" not in message  # train_sft has them; no bt job for it


def test_presets_scale_with_the_model(production):
    by_model = {m: gconfig.openrlhf_settings(production, m) for m in ALL_MODELS}
    assert by_model["qwen2.5-72b"].nodes > 1  # 72B is a multi-node job
    assert by_model["qwen2.5-72b"].adam_offload and by_model["qwen2.5-72b"].ring_attn_size > 1
    assert by_model["qwen2.5-32b"].adam_offload
    for small in ("llama3.1-8b", "qwen2.5-7b", "qwen2.5-14b"):
        assert by_model[small].nodes == 1 and not by_model[small].adam_offload
    runtimes = [by_model[m].runtime for m in ("qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b")]
    assert runtimes == sorted(runtimes)


# --- unknown flags fail ---------------------------------------------------------


@pytest.mark.parametrize("bad", [
    ["--train.learning_rate", "1e-5"],  # not a train_sft flag
    ["--learning_rate", "5e-6"],  # the flat name of OpenRLHF < 0.10
    ["--pretrain", "model"],  # the flat name of OpenRLHF < 0.10
    ["--ckpt.load"],  # an abbreviation: the real parser would guess
    ["--ds.zero_stage", "three"],  # a bad value
])
def test_an_unknown_flag_fails(parser, production, bad):
    _, job = production_job(production, "llama3.1-8b", "verify")
    with pytest.raises(ValueError, match="refuses"):
        gor.check_command(list(job.launch) + bad, parser)


def test_extra_args_are_checked_too(parser, production):
    cfg = copy.deepcopy(production)
    cfg["train"]["openrlhf"]["models"] = {"qwen2.5-7b": {"extra_args": ["--ds.zpg", "8"]}}
    gconfig.validate(cfg)
    _, job = production_job(cfg, "qwen2.5-7b", "verify")
    assert gor.check_command(job.launch, parser).__dict__["ds.zpg"] == 8
    cfg["train"]["openrlhf"]["models"] = {"qwen2.5-7b": {"extra_args": ["--ds.zero_partition", "8"]}}
    gconfig.validate(cfg)
    _, job = production_job(cfg, "qwen2.5-7b", "verify")
    with pytest.raises(ValueError):
        gor.check_command(job.launch, parser)


def test_check_command_line(production):
    proc = subprocess.run([sys.executable, "-m", "genrm", "openrlhf", "check", str(REPO / "workflow_config.yaml")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ok ") == len(gconfig.genrms(production))
    assert "FAIL" not in proc.stdout


def test_check_command_line_uses_each_module_s_own_parser(tmp_path):
    """A train_rm.py without --data.chosen_key fails the bt job only: each command is parsed by
    the parser of its module."""
    cli = gor.module_source(gor.TRAIN_SFT).parent
    (tmp_path / "train_sft.py").write_text((cli / "train_sft.py").read_text())
    rm = (cli / "train_rm.py").read_text()
    assert rm.count('"--data.chosen_key"') == 1
    (tmp_path / "train_rm.py").write_text(rm.replace('"--data.chosen_key"', '"--data.chosen_column"'))
    proc = subprocess.run([sys.executable, "-m", "genrm", "openrlhf", "check", str(REPO / "workflow_config.yaml"),
                           "--cli-dir", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL  llama3.1-8b x bt: OpenRLHF 0.11.2 train_rm refuses" in proc.stdout
    assert "ok    llama3.1-8b x verify\n" in proc.stdout


def test_show_command_line_prints_what_the_rule_runs(production):
    proc = subprocess.run([sys.executable, "-m", "genrm", "openrlhf", "show", str(REPO / "workflow_config.yaml")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for model, method in gconfig.genrms(production):
        _, job = production_job(production, model, method)
        assert job.shell_command() in proc.stdout.splitlines()
        assert json.dumps(gor.job_resources(gconfig.openrlhf_settings(production, model, method))) in proc.stdout
    assert "-m openrlhf.cli.train_rm" in proc.stdout


# --- launchers ------------------------------------------------------------------


def torchrun_args(job, head="node001"):
    """The torchrun words of a launch command, as the shell expands them."""
    words = list(job.launch)
    start = words.index("torchrun") + 1
    expanded = [w.replace("$(python -m genrm openrlhf head-node)", head).replace("$SLURM_JOB_ID", "4242")
                for w in words[start:]]
    from torch.distributed.run import get_args_parser

    return get_args_parser().parse_args(expanded), words[:start - 1]


def test_single_node_launch(production):
    settings, job = production_job(production, "qwen2.5-14b", "verify")
    args, before = torchrun_args(job)
    assert before == []
    assert args.standalone and args.nnodes == "1" and args.nproc_per_node == str(settings.gpus_per_node)
    assert args.module and args.training_script == "openrlhf.cli.train_sft"
    assert args.training_script_args == job.module_args()


def test_multi_node_launch_has_one_torchrun_per_node_and_a_c10d_rendezvous(production):
    settings, job = production_job(production, "qwen2.5-72b", "verify")
    nodes, gpus = settings.nodes, settings.gpus_per_node
    args, srun = torchrun_args(job, head="gpu-a17")
    assert srun[0] == "srun"
    assert {f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", f"--gpus-per-node={gpus}",
            f"--cpus-per-task={settings.cpus_per_task}", "--kill-on-bad-exit=1"} <= set(srun)
    assert args.nnodes == str(nodes) and args.nproc_per_node == str(gpus)
    assert args.rdzv_backend == "c10d" and args.rdzv_endpoint == f"gpu-a17:{settings.rdzv_port}"
    assert args.rdzv_id == "4242" and not args.standalone
    assert args.training_script == "openrlhf.cli.train_sft"
    # the shell expands the head node and job id; everything else is quoted
    line = job.shell_command()
    assert "--rdzv-endpoint=$(python -m genrm openrlhf head-node):29500 --rdzv-id=$SLURM_JOB_ID" in line
    assert shlex.split(line)[:5] == ["python", "-m", "genrm", "openrlhf", "run"]
    # the head-node step the shell expands is a real subcommand
    proc = subprocess.run([sys.executable, "-m", "genrm", "openrlhf", "head-node"], capture_output=True, text=True,
                          cwd=REPO, env={k: v for k, v in os.environ.items() if not k.startswith("SLURM_")})
    assert proc.returncode == 0 and proc.stdout.strip() == socket.gethostname(), proc.stderr


def test_resources_follow_the_preset(production):
    for model in ALL_MODELS:
        s = gconfig.openrlhf_settings(production, model)
        r = workflow.train_resources(production, model)
        assert r["gpu"] == s.nodes * s.gpus_per_node
        assert (r["nodes"], r["tasks"], r["tasks_per_gpu"]) == (s.nodes, s.nodes, 0)
        assert (r["cpus_per_task"], r["mem_mb"], r["runtime"]) == (s.cpus_per_task, s.mem_mb, s.runtime)
        assert r["mpi"] == ("srun" if s.nodes > 1 else None)


# --- overrides and checks -------------------------------------------------------


def test_overrides_change_only_what_they_name(production):
    cfg = copy.deepcopy(production)
    cfg["train"]["openrlhf"] = {"presets": {"72b": {"nodes": 8}}, "common": {"save_steps": 50},
                                "models": {"qwen2.5-7b": {"micro_batch_size": 4, "runtime": 60}}}
    gconfig.validate(cfg)
    s72, s7, s8 = (gconfig.openrlhf_settings(cfg, m) for m in ("qwen2.5-72b", "qwen2.5-7b", "llama3.1-8b"))
    assert s72.nodes == 8 and s72.ring_attn_size == 2 and s72.adam_offload  # rest of the preset kept
    assert (s7.micro_batch_size, s7.runtime, s7.mem_mb) == (4, 60, 256000)
    assert s8.micro_batch_size == 1 and s8.runtime == 720
    assert {s.save_steps for s in (s72, s7, s8)} == {50}
    assert {s.global_batch_size for s in (s72, s7, s8)} == {128}  # the rest of `common` kept
    assert s72.checkpoint_dir == "results/checkpoints"  # job-level defaults filled too
    assert workflow.train_resources(cfg, "qwen2.5-72b")["gpu"] == 64


def test_overrides_in_a_config_file_keep_the_built_in_preset(tmp_path):
    """A preset named in a config file changes only the keys it gives (defaults merged once, in validate)."""
    text = (REPO / "workflow_config.yaml").read_text(encoding="utf-8")
    cfg = yaml.safe_load(text)
    cfg["train"]["openrlhf"]["presets"] = {"72b": {"nodes": 8, "runtime": 1440}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    s72 = gconfig.openrlhf_settings(gconfig.load(path), "qwen2.5-72b")
    assert (s72.nodes, s72.runtime) == (8, 1440)
    assert (s72.ring_attn_size, s72.adam_offload, s72.mem_mb, s72.cpus_per_task) == (2, True, 720000, 96)


def invalid(cfg) -> str:
    """The message of the ConfigError that validate() raises for ``cfg``."""
    with pytest.raises(gconfig.ConfigError) as error:
        gconfig.validate(cfg)
    return str(error.value)


def test_bad_settings_are_reported_before_any_job(production, tmp_path):
    cfg = copy.deepcopy(production)
    cfg["train"]["openrlhf"]["models"] = {"qwen2.5-14b": {"micro_batch_size": 3},
                                          "qwen2.5-72b": {"packing_samples": False}}
    problems = invalid(cfg)
    # every problem at once, each naming its model
    assert "train.openrlhf (model qwen2.5-14b): global_batch_size 128 is not a multiple of micro_batch_size 3" \
        in problems
    assert "train.openrlhf (model qwen2.5-72b): ring attention" in problems and "packing_samples" in problems
    # the check on the command line: exit 2 and a one-line error
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "genrm", "check-config", str(path)], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and len(proc.stderr.splitlines()) == 1
    assert "micro_batch_size 3" in proc.stderr and "ring attention" in proc.stderr
    # and the job is refused even if a caller skips validate()
    settings = dataclasses.replace(gconfig.openrlhf_settings(production, "qwen2.5-14b"), micro_batch_size=3)
    with pytest.raises(ValueError, match="micro_batch_size 3"):
        gor.rule_job(settings, model="qwen2.5-14b", method="verify", model_dir="m", rows="r", out="o", seed=1)


def test_an_override_for_an_unknown_model_is_refused(production):
    cfg = copy.deepcopy(production)
    cfg["train"]["openrlhf"]["models"] = {"qwen9-1b": {"nodes": 1}}
    assert "train.openrlhf.models.qwen9-1b: unknown model" in invalid(cfg)


def test_an_unknown_settings_key_is_refused(production):
    bad = copy.deepcopy(production)
    bad["train"]["openrlhf"]["presets"] = {"72b": {"node": 4}}
    message = invalid(bad)
    assert "train.openrlhf.presets.72b: unknown key(s) node;" in message and "nodes" in message


def test_production_config_has_no_problems(production):
    gconfig.validate(copy.deepcopy(production))  # raises ConfigError on any problem
    for model, _ in gconfig.genrms(production):
        assert gconfig.openrlhf_settings(production, model).problems() == []


# --- OpenRLHF's SFTDataset over genrm's rows -------------------------------------


def tiny_config():
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text(encoding="utf-8"))
    cfg["train"]["backend"] = "openrlhf"
    return gconfig.validate(cfg)  # the tiny preset passes OpenRLHF's checks too


def sft_dataset(tokenizer, rows, words, parser, max_len=None):
    """OpenRLHF's SFTDataset built the way train_sft builds it, from a launch command."""
    import datasets
    from openrlhf.datasets import SFTDataset

    args = hierarchize(parser.parse_args(gor.launch_args(words)))
    strategy = SimpleNamespace(args=args, print=lambda *a, **k: None, is_rank_0=lambda: True)
    return SFTDataset(datasets.Dataset.from_list(rows), tokenizer, max_len or args.data.max_len, strategy,
                      pretrain_mode=args.model.pretrain_mode_enable, input_template=args.data.input_template,
                      multiturn=args.data.multiturn, num_processors=1)


def trained_tokens(ds, i):
    """The tokens that carry loss: OpenRLHF's mask at position t trains the prediction of t+1."""
    input_ids, _, loss_mask = ds[i]
    ids, mask = input_ids[0].tolist(), loss_mask[0].tolist()
    return [ids[t + 1] for t, m in enumerate(mask) if m and t + 1 < len(ids)]


@pytest.fixture(scope="module")
def sft_rows(demo_preferences):
    from genrm.io import iter_jsonl
    from genrm.protocol import pair_problem
    from genrm.train.rows import correct_row, judge_row

    pairs = [p for p in iter_jsonl(demo_preferences) if not pair_problem(p)][:6]
    judge = [judge_row(p["chosen"], p["rejected"], chosen_at_a=i % 2 == 0) for i, p in enumerate(pairs)]
    correct = [correct_row(p["chosen"]) for p in pairs]
    return judge, correct, pairs


@pytest.fixture(scope="module")
def tiny_job(tiny_model_dir, tmp_path_factory):
    cfg = tiny_config()
    settings = gconfig.openrlhf_settings(cfg, "tiny-instruct")
    return gor.rule_job(settings, model="tiny-instruct", method="verify", model_dir=str(tiny_model_dir),
                        rows="rows.jsonl", out=str(tmp_path_factory.mktemp("out") / "m"), seed=1)


def assert_trains_exactly(ds, i, tokenizer, answer):
    """Row ``i`` of an SFTDataset trains exactly ``answer`` and the end of the turn."""
    target = trained_tokens(ds, i)
    # the answer followed by the end of the turn (the tiny template ends it with EOS)
    assert tokenizer.decode(target, skip_special_tokens=False) == answer + tokenizer.eos_token
    assert target[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(target[:-1]) == answer
    input_ids, _, loss_mask = ds[i]
    prompt_len = len(tokenizer(ds.prompts[i], add_special_tokens=False)["input_ids"])
    assert loss_mask[0, : prompt_len - 1].sum() == 0  # nothing of the prompt
    assert int(loss_mask.sum()) == len(target)


def test_loss_mask_covers_exactly_the_verdict_and_the_chosen_answer(tiny_model_dir, sft_rows, tiny_job, parser):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    judge, correct, pairs = sft_rows
    rows = judge + correct
    ds = sft_dataset(tokenizer, rows, tiny_job.launch, parser)
    assert len(ds) == len(rows)  # nothing dropped
    for i, row in enumerate(rows):
        answer = row["response"][0]["content"]
        if i < len(judge):
            assert answer == ("[[A]]" if i % 2 == 0 else "[[B]]")
        else:
            assert answer == pairs[i - len(judge)]["chosen"][-1]["content"]
        assert_trains_exactly(ds, i, tokenizer, answer)
        # the prompt went through the model's chat template, not "User: ...Assistant: "
        assert ds.prompts[i].startswith("<|user|>\n") and ds.prompts[i].endswith("<|assistant|>\n")


@pytest.mark.parametrize("shift", [-2, 1])
def test_mask_check_fails_when_the_mask_is_off(tiny_model_dir, sft_rows, tiny_job, parser, shift):
    """The check above is exact: a mask that reaches into the prompt, or misses the
    first verdict token, fails it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    judge, _, _ = sft_rows
    ds = sft_dataset(tokenizer, judge[:1], tiny_job.launch, parser)
    assert_trains_exactly(ds, 0, tokenizer, judge[0]["response"][0]["content"])
    ds.prompt_ids_lens = [n + shift for n in ds.prompt_ids_lens]
    with pytest.raises(AssertionError):
        assert_trains_exactly(ds, 0, tokenizer, judge[0]["response"][0]["content"])


def test_rows_without_the_output_key_flag_fail_loudly(tiny_model_dir, sft_rows, tiny_job, parser):
    """Without --data.output_key OpenRLHF reads the prompt list as the whole chat: it fails."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    judge, _, _ = sft_rows
    words = list(tiny_job.launch)
    i = words.index("--data.output_key")
    del words[i:i + 2]
    with pytest.raises(Exception, match="empty conversation"):
        sft_dataset(tokenizer, judge[:2], words, parser)


def test_tiny_preset_rows_fit(tiny_model_dir, sft_rows, tiny_job, parser):
    """Rows longer than max_len are dropped or cut by OpenRLHF; the length guard
    counts the same rows (see test_lengths.py); the demo's rows all fit."""
    from transformers import AutoTokenizer

    from genrm.train.lengths import measure

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    judge, correct, _ = sft_rows
    report = measure(judge + correct, tokenizer, 512)
    assert report["exceeding"] == 0


# --- OpenRLHF's RewardDataset over genrm's Bradley-Terry rows ------------------------


@pytest.fixture(scope="module")
def bt_rows(demo_preferences):
    from collections import Counter

    from genrm.io import iter_jsonl
    from genrm.train.rows import bt_rows as make_rows

    pairs = list(iter_jsonl(demo_preferences))[:40]
    rows = list(make_rows(pairs, Counter()))
    assert any(len(r["chosen"]) > 2 for r in rows)  # multi-turn pairs among them
    return rows


def reward_dataset(tokenizer, rows, words, parser):
    """OpenRLHF's RewardDataset built the way train_rm builds it, from a launch command."""
    import datasets
    from openrlhf.datasets import RewardDataset

    args = hierarchize(parser.parse_args(gor.launch_args(words)))
    strategy = SimpleNamespace(args=args, print=lambda *a, **k: None, is_rank_0=lambda: True)
    return RewardDataset(datasets.Dataset.from_list(rows), tokenizer, args.data.max_len, strategy,
                         input_template=args.data.input_template, num_processors=1)


@pytest.fixture(scope="module")
def tiny_bt_job(tiny_model_dir, tmp_path_factory):
    cfg = tiny_config()
    settings = gconfig.openrlhf_settings(cfg, "tiny-instruct", "bt")
    return gor.rule_job(settings, model="tiny-instruct", method="bt", model_dir=str(tiny_model_dir),
                        rows="rows.jsonl", out=str(tmp_path_factory.mktemp("out") / "bt"), seed=1)


def test_reward_dataset_feeds_both_conversations_through_the_chat_template(tiny_model_dir, bt_rows, tiny_bt_job,
                                                                           rm_parser):
    """What train_rm feeds the model for each Bradley-Terry row: the token ids of the whole chosen and
    rejected conversations through the chat template, ending with EOS; the same ids as the TRL
    backend trains on (genrm.protocol.reward_text), identical up to where the final answers differ."""
    from transformers import AutoTokenizer

    from genrm.protocol import reward_text
    from genrm.train.trl import bt_token_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tiny_bt_job.module == gor.TRAIN_RM
    ds = reward_dataset(tokenizer, bt_rows, tiny_bt_job.launch, rm_parser)
    assert len(ds) == len(bt_rows)  # nothing dropped
    for i, row in enumerate(bt_rows):
        chosen_ids, chosen_mask, rejected_ids, rejected_mask, margin = ds[i]
        chosen, rejected = chosen_ids[0].tolist(), rejected_ids[0].tolist()
        assert margin == 0 and chosen_mask.all() and rejected_mask.all()
        # the chat template, not OpenRLHF's "User: ... Assistant:" fallback, and EOS last
        text = tokenizer.decode(chosen, skip_special_tokens=False)
        assert text.startswith("<|user|>\n") and text.endswith("<|assistant|>\n" + row["chosen"][-1]["content"]
                                                                 + tokenizer.eos_token)
        assert chosen[-1] == rejected[-1] == tokenizer.eos_token_id
        # token for token what the TRL backend trains on and the judge scores
        assert bt_token_ids(tokenizer, row) == {"chosen_ids": chosen, "rejected_ids": rejected}
        assert chosen == tokenizer(reward_text(tokenizer, row["chosen"]), add_special_tokens=False)["input_ids"]
        # the shared conversation is the same tokens on both sides; the answers differ
        context = tokenizer.apply_chat_template(row["chosen"][:-1], tokenize=False, add_generation_prompt=True)
        n = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        assert chosen[:n] == rejected[:n] and chosen[n:] != rejected[n:]
        if len(row["chosen"]) > 2:
            assert tokenizer.decode(chosen).count("<|assistant|>") == len(row["chosen"]) // 2


def test_reward_dataset_without_the_chat_template_flag_fails(tiny_model_dir, bt_rows, tiny_bt_job, rm_parser):
    """Without --data.apply_chat_template train_rm would read the message lists as text: it fails."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    words = [w for w in tiny_bt_job.launch if w != "--data.apply_chat_template"]
    ds = reward_dataset(tokenizer, bt_rows[:2], words, rm_parser)
    with pytest.raises(TypeError, match="concatenate str"):  # "" + a list of messages
        ds[0]


# --- running: the model appears only when training succeeded ------------------------

FAKE_OPENRLHF = r"""
import json, pathlib, sys
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--ckpt.output_dir") + 1])
ckpt = pathlib.Path(args[args.index("--ckpt.path") + 1])
ckpt.mkdir(parents=True, exist_ok=True)
(ckpt / "latest").write_text("global_step10")
out.mkdir(parents=True, exist_ok=True)
(out / "config.json").write_text("{}")
if "--fail" in args:
    sys.exit(3)
if "--no-weights" not in args:
    (out / "model.safetensors").write_text("w")
(out / "tokenizer_config.json").write_text("{}")
"""

RECORD = {"model": "m", "method": "verify", "seed": 11, "settings": {"micro_batch_size": 2, "extra_args": []}}


def fake_launch(tmp_path, *extra):
    script = tmp_path / "fake_train_sft.py"
    script.write_text(FAKE_OPENRLHF)
    out = tmp_path / "results" / "models" / "m" / "verify"
    ckpt = tmp_path / "results" / "checkpoints" / "m" / "verify"
    cmd = [sys.executable, str(script), "--ckpt.output_dir", gor.staging_dir(out), "--ckpt.path", str(ckpt), *extra]
    return cmd, out, ckpt


def test_run_moves_the_model_into_place_and_drops_checkpoints(tmp_path):
    cmd, out, ckpt = fake_launch(tmp_path)
    out.mkdir(parents=True)
    (out / "stale.bin").write_text("an older model")
    gor.run(cmd, str(out), checkpoints=str(ckpt), record=RECORD)
    assert (out / "model.safetensors").is_file() and not Path(gor.staging_dir(out)).exists()
    assert not (out / "stale.bin").exists()  # the old model is replaced, not mixed in
    info = json.loads((out / "genrm_training.json").read_text())
    assert info["backend"] == "openrlhf" and info["openrlhf_version"] == "0.11.2"
    assert info["resumed_from_checkpoint"] is False and info["command"] == cmd
    assert {k: info[k] for k in RECORD} == RECORD
    assert not ckpt.exists()


@pytest.mark.parametrize("flag", ["--fail", "--no-weights"])
def test_a_failed_run_leaves_no_model_and_keeps_its_checkpoints(tmp_path, flag):
    cmd, out, ckpt = fake_launch(tmp_path, flag)
    with pytest.raises(RuntimeError):
        gor.run(cmd, str(out), checkpoints=str(ckpt))
    assert not out.exists() and not Path(gor.staging_dir(out)).exists()  # nothing half-saved stays behind
    assert (ckpt / "latest").is_file()  # a retry resumes from here
    # the retry: same command, now succeeding, reports the resume
    cmd, out, ckpt = fake_launch(tmp_path)
    gor.run(cmd, str(out), checkpoints=str(ckpt), keep_checkpoints=True)
    assert json.loads((out / "genrm_training.json").read_text())["resumed_from_checkpoint"] is True
    assert (ckpt / "latest").is_file()


def wrapper(out, ckpt, record=RECORD):
    """``python -m genrm openrlhf run`` as Job.shell_command writes it, up to the launch command."""
    return [sys.executable, "-m", "genrm", "openrlhf", "run", "--out", str(out), "--staging", gor.staging_dir(out),
            "--checkpoints", str(ckpt), "--record", json.dumps(record), "--"]


def test_run_command_line_wrapper(tmp_path):
    cmd, out, ckpt = fake_launch(tmp_path, "--fail")
    proc = subprocess.run(wrapper(out, ckpt) + cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and "status 3" in proc.stderr and "resumes" in proc.stderr
    assert not out.exists()
    cmd, out, ckpt = fake_launch(tmp_path)
    proc = subprocess.run(wrapper(out, ckpt) + cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "genrm_training.json").read_text())["settings"] == RECORD["settings"]
    assert not ckpt.exists()


def test_run_command_line_refuses_bad_input_before_launching(tmp_path):
    cmd, out, ckpt = fake_launch(tmp_path)
    for argv in (wrapper(out, ckpt),  # no launch command
                 wrapper(out, ckpt)[:-3] + ["--record", "{not json", "--"] + cmd):
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error:") and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert not Path(gor.staging_dir(out)).exists() and not ckpt.exists()  # nothing launched


def test_multi_node_launch_outside_slurm_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(RuntimeError, match="SLURM allocation"):
        gor.run(["srun", "true"], str(tmp_path / "m"))


def test_the_rule_command_trains_and_records_the_settings_and_seed(tmp_path, production):
    """What train_genrm runs (genrm.workflow.train_command), run by the shell as Snakemake
    would, with a fake torchrun: the model lands in the rule's output, and its
    genrm_training.json holds the model's resolved settings and the seed it trained with."""
    cfg = copy.deepcopy(production)
    cfg["seed"] = 7
    cfg["train"]["openrlhf"]["checkpoint_dir"] = str(tmp_path / "checkpoints")
    cfg["train"]["openrlhf"]["models"] = {"qwen2.5-7b": {"micro_batch_size": 4}}
    gconfig.validate(cfg)
    settings = gconfig.openrlhf_settings(cfg, "qwen2.5-7b")
    out = tmp_path / "results" / "models" / "qwen2.5-7b" / "verify"
    line = workflow.train_command(cfg, "qwen2.5-7b", "verify", "resources/models/qwen2.5-7b",
                                  "results/sft/verify/rows.jsonl", str(out))
    assert line.startswith("python -m genrm openrlhf run ")

    (tmp_path / "fake_train_sft.py").write_text(FAKE_OPENRLHF)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    torchrun = bin_dir / "torchrun"
    torchrun.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} '
                        f'{shlex.quote(str(tmp_path / "fake_train_sft.py"))} "$@"\n')
    torchrun.chmod(0o755)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(REPO)}  # as prepare_job_environment sets them
    proc = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    assert (out / "model.safetensors").is_file() and not Path(gor.staging_dir(out)).exists()
    info = json.loads((out / "genrm_training.json").read_text())
    assert info["seed"] == 7 and (info["model"], info["method"]) == ("qwen2.5-7b", "verify")
    assert info["settings"] == gconfig.as_dict(settings) and info["settings"]["micro_batch_size"] == 4
    launched = info["command"]
    assert launched[:5] == ["torchrun", "--standalone", "--nnodes=1", "--nproc-per-node=8", "-m"]
    assert launched[launched.index("--train.seed") + 1] == "7"
    assert launched[launched.index("--train.micro_batch_size") + 1] == "4"
    checkpoints = tmp_path / "checkpoints" / "qwen2.5-7b" / "verify"  # as the rule places them
    assert launched[launched.index("--ckpt.path") + 1] == str(checkpoints)
    assert not checkpoints.exists()  # removed after success (keep_checkpoints: false)
    assert launched[launched.index("--logger.tensorboard_dir") + 1] == "logs/train_genrm/qwen2.5-7b/verify.tensorboard"


# --- the first node of a SLURM allocation -------------------------------------------


@pytest.fixture
def fake_scontrol(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$2" = job ]; then echo "JobId=$3 JobName=x"; '
        'echo "   NodeList=gpu[07-08,11] BatchHost=gpu07"; exit 0; fi\n'
        'if [ "$2" = hostnames ]; then [ "$3" = "gpu[07-08,11]" ] && printf "gpu07\\ngpu08\\ngpu11\\n"; exit 0; fi\n'
        "exit 1\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_head_node_from_the_node_list(fake_scontrol):
    assert gor.head_node({"SLURM_JOB_NODELIST": "gpu[07-08,11]"}) == "gpu07"


def test_head_node_when_the_job_step_dropped_the_node_list(fake_scontrol):
    # the SLURM executor's job step keeps only SLURM_JOB_ID
    assert gor.head_node({"SLURM_JOB_ID": "4242"}) == "gpu07"


def test_head_node_outside_slurm():
    assert gor.head_node({}) == socket.gethostname()


def test_the_demo_trains_its_bradley_terry_model_with_openrlhf_on_cpu():
    """train.bt.backend: the demo's GenRMs train with TRL, its Bradley-Terry model with OpenRLHF's
    train_rm; device cpu: the rule runs the CPU form of the job that rule_job builds, asking for no GPU."""
    demo = gconfig.load(REPO / "configs" / "demo.yaml")
    assert gconfig.train_backend(demo) == gconfig.train_backend(demo, "verify") == "trl"
    assert gconfig.train_backend(demo, "bt") == "openrlhf"
    settings = gconfig.openrlhf_settings(demo, "tiny-instruct", "bt")
    assert settings.device == "cpu" and settings.processes == 1 and settings.problems(reward_model=True) == []
    paths = dict(model_dir="resources/models/tiny-instruct", rows="results/bt/rows.jsonl",
                 out="results/models/tiny-instruct/bt")
    command = workflow.train_command(demo, "tiny-instruct", "bt", *paths.values())
    job = gor.rule_job(settings, model="tiny-instruct", method="bt", seed=demo["seed"], **paths)
    assert command == gor.cpu_job(job).shell_command()
    assert " -- python -m genrm.train.openrlhf_cpu -m openrlhf.cli.train_rm " in command and "torchrun" not in command
    assert "--data.max_samples 480 " in command and "--ds.attn_implementation sdpa " in command
    resources = workflow.train_resources(demo, "tiny-instruct", "bt")
    assert resources["gpu"] is None and resources["cpus_per_task"] == 1 and resources["mem_mb"] == 6000
    assert workflow.train_command(demo, "tiny-instruct", "verify", *paths.values()).startswith("python -m genrm train ")
    assert gconfig.train_max_len(demo, "tiny-instruct", "bt") == settings.max_len
    # without train.bt.backend a Bradley-Terry model follows train.backend
    del demo["train"]["bt"]["backend"]
    assert gconfig.train_backend(demo, "bt") == "trl"
    assert workflow.train_command(demo, "tiny-instruct", "bt", *paths.values()).startswith("python -m genrm train ")
    # the production config: every job on GPUs, one process per GPU
    production = gconfig.load(REPO / "workflow_config.yaml")
    for model, method in gconfig.genrms(production):
        s = gconfig.openrlhf_settings(production, model, method)
        assert s.device == "cuda" and s.processes == s.nodes * s.gpus_per_node
        assert workflow.train_resources(production, model, method)["gpu"] == s.processes
