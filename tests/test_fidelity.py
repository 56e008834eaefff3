"""docs/fidelity.md against the production configuration: every setting of the original scripts
is listed, and every default that the table states is what the configuration (and OpenRLHF's own
parser, for the flags of the training command) gives."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from conftest import markdown_cells
from genrm import config as gconfig

REPO = Path(__file__).resolve().parent.parent
FIDELITY = REPO / "docs" / "fidelity.md"
COLUMNS = ["Step", "Setting of the original", "Published", "Where", "Ours", "Why ours differs"]
KINDS = ("train.openrlhf", "train_sft", "judge", "config")

# Every setting of the original scripts (GenRM/ of Freder-chen/ReasonGenRM): the flags of
# 1_prepare.sh, of the train_sft command of 2_openrlhf_sft.sh, of the vLLM server of
# rewardbench.sh, of rewardbench_genrm.py, and the fields of its chat request.
ORIGINAL_SETTINGS = [
    # data
    "--dataset_dir", "--save_filename", "--max_workers", "is_valid_item", "HISTORY_DIALOG_CHAT_TEMPLATE",
    "CRITIC_PROMPT_TEMPLATE", "random.choice",
    # training
    "deepspeed --module", "--max_len", "--dataset", "--input_key", "--output_key", "--train_batch_size",
    "--micro_train_batch_size", "--pretrain", "--save_path", "--save_steps", "--logging_steps", "--eval_steps",
    "--zero_stage", "--max_epochs", "--bf16", "--flash_attn", "--learning_rate", "--gradient_checkpointing",
    "--packing_samples", "--apply_chat_template", "--use_tensorboard",
    # the vLLM server
    "vllm.entrypoints.openai.api_server", "--model", "--port", "--served-model-name", "--tensor-parallel-size",
    "--gpu-memory-utilization", "--max-model-len", "--max-num-batched-tokens", "--max-num-seqs",
    "--disable-log-requests",
    # the evaluation script and its requests
    "--model_name", "--server_url", "--record_filename", "--data_set_name", "messages", "max_tokens",
    "temperature", "top_p", "repetition_penalty", "categories", "EXAMPLE_COUNTS",
]
# Defaults of OpenRLHF's train_sft at the time (v0.5.4) that decide the training.
ORIGINAL_DEFAULTS = ["--seed", "--lr_scheduler", "--lr_warmup_ratio", "--max_norm", "--l2", "--adam_betas",
                     "--adam_offload", "--ring_attn_size", "--zpg", "--overlap_comm", "--grad_accum_dtype",
                     "--gradient_checkpointing_use_reentrant", "--lora_rank", "--load_in_4bit", "--pretrain_mode",
                     "--aux_loss_coef", "--input_template", "--tokenizer_chat_template", "--disable_fast_tokenizer",
                     "--max_samples"]


# --- reading the table ---------------------------------------------------------------------------

def table(text: str) -> list[dict]:
    """The rows of the one table whose header is COLUMNS."""
    lines = text.splitlines()
    start = [i for i, line in enumerate(lines) if line.startswith("|") and markdown_cells(line) == COLUMNS]
    assert len(start) == 1, "docs/fidelity.md: one table with the header " + " | ".join(COLUMNS)
    rows = []
    for line in lines[start[0] + 2:]:
        if not line.startswith("|"):
            break
        cells = markdown_cells(line)
        assert len(cells) == len(COLUMNS), line
        rows.append(dict(zip(COLUMNS, cells)))
    return rows


def where(cell: str) -> tuple[str, str] | None:
    """(kind, key) of a checked Where cell, None for a cell that names code; a cell that looks like
    a kind but is none of them fails (a typo must not turn a row into an unchecked one)."""
    m = re.fullmatch(r"`([\w.]+): ([\w.]+)`", cell)
    if not m:
        return None
    assert m.group(1) in KINDS, f"unknown kind {m.group(1)!r} in {cell!r}; kinds: {', '.join(KINDS)}"
    return m.group(1), m.group(2)


def value(text: str):
    """A value as the table writes it: true/false, none, numbers, several numbers, or a string."""
    text = text.strip().strip("`")
    if text in ("true", "false"):
        return text == "true"
    if text == "none":
        return None
    parts = text.split()
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return text
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


def ours(cell: str) -> tuple[object, list[tuple[set, object]]]:
    """``a; q1, q2: b`` -> (a, [({q1, q2}, b)])."""
    first, *rest = [part.strip() for part in cell.split(";")]
    qualified = []
    for part in rest:
        names, _, v = part.partition(":")
        qualified.append(({n.strip() for n in names.split(",")}, value(v)))
    return value(first), qualified


def same(expected, actual) -> bool:
    if isinstance(expected, bool) or expected is None or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, float):
        return isinstance(actual, (int, float)) and float(actual) == expected
    if isinstance(expected, tuple):
        return isinstance(actual, (tuple, list)) and tuple(map(float, actual)) == expected
    return str(actual) == expected


def expected_for(row: dict, names: set[str]):
    default, qualified = ours(row["Ours"])
    matching = [v for qualifiers, v in qualified if qualifiers & names]
    assert len(matching) <= 1, f"{row['Where']}: {names} match several qualifiers of {row['Ours']!r}"
    return matching[0] if matching else default


def drift(cfg: dict, rows: list[dict], parser=None) -> list[str]:
    """Every (row, model or judge) whose value in ``cfg`` is not the table's. Rows of kind
    train_sft are checked only with OpenRLHF's parser (``parser``)."""
    from genrm.train import openrlhf as gor

    problems = []

    def check(row, subject, names, actual):
        expected = expected_for(row, names)
        if not same(expected, actual):
            problems.append(f"{row['Where']} ({subject}): the table says {expected!r}, the configuration "
                            f"gives {actual!r}")

    # the GenRMs and their judges; the Bradley-Terry models (method bt) have no counterpart in the original
    genrms = [(m, method) for m, method in gconfig.genrms(cfg) if gconfig.objective(method) == "sft"]
    models = sorted({m for m, _ in genrms})
    for row in rows:
        kind, key = where(row["Where"]) or (None, None)
        if kind == "train.openrlhf":
            for m in models:
                settings = gconfig.openrlhf_settings(cfg, m)
                check(row, m, {settings.size}, getattr(settings, key))
        elif kind == "train_sft" and parser is not None:
            for m, method in genrms:
                settings = gconfig.openrlhf_settings(cfg, m)
                job = gor.rule_job(settings, model=m, method=method, model_dir=f"resources/models/{m}",
                                   rows=f"results/sft/{method}/rows.jsonl", out=f"results/models/{m}/{method}",
                                   seed=cfg["seed"])
                check(row, f"{m} x {method}", {settings.size}, vars(gor.check_command(job.launch, parser))[key])
        elif kind == "judge":
            for j in (j for j in gconfig.judges(cfg) if j.kind != "bt"):
                check(row, j.name, {j.kind, j.type, j.size}, getattr(gconfig.judge_settings(cfg, j), key))
        elif kind == "config":
            node = cfg
            for part in key.split("."):
                node = node[part]
            check(row, "config", set(), node)
    return problems


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return table(FIDELITY.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def production() -> dict:
    return gconfig.load(REPO / "workflow_config.yaml")


# --- the tests ---------------------------------------------------------------------------------------

def test_every_setting_of_the_original_scripts_is_listed(rows):
    listed = " ".join(r["Setting of the original"] for r in rows)
    missing = [s for s in ORIGINAL_SETTINGS + ORIGINAL_DEFAULTS if f"`{s}`" not in listed]
    assert not missing, f"docs/fidelity.md lacks settings of the original scripts: {missing}"
    assert {r["Step"] for r in rows} == {"data", "train", "judge", "score"}


def test_production_defaults_are_the_table(rows, production):
    checked = [r for r in rows if where(r["Where"]) and where(r["Where"])[0] != "train_sft"]
    assert len(checked) >= 30
    assert drift(production, rows) == []


def test_training_commands_carry_the_table_values(rows, production):
    pytest.importorskip("openrlhf", reason="pip install --no-deps openrlhf==0.11.2 (see the Makefile)")
    from genrm.train.openrlhf import recover_parser

    assert sum(where(r["Where"]) is not None and where(r["Where"])[0] == "train_sft" for r in rows) >= 15
    assert drift(production, [r for r in rows if (where(r["Where"]) or ("",))[0] == "train_sft"],
                 recover_parser()) == []


@pytest.mark.parametrize("change, where_, subject", [
    (lambda c: c["train"]["openrlhf"]["common"].update(max_len=8192), "train.openrlhf: max_len", "qwen2.5-14b"),
    (lambda c: c["train"]["openrlhf"]["presets"]["8b"].update(micro_batch_size=2), "train.openrlhf: micro_batch_size",
     "llama3.1-8b"),
    (lambda c: c["train"]["openrlhf"]["presets"]["32b"].update(adam_offload=False), "train.openrlhf: adam_offload",
     "qwen2.5-32b"),
    (lambda c: c["judge"].update(max_model_len=8192), "judge: max_model_len", "skywork-reward-llama3.1-8b"),
    (lambda c: c["judge"]["modes"].update(base="logprob"), "judge: mode", "qwen2.5-7b"),
    (lambda c: c.update(seed=0), "config: seed", "config"),
])
def test_a_default_that_drifts_from_the_table_is_named(rows, production, change, where_, subject):
    cfg = copy.deepcopy(production)
    change(cfg)
    problems = drift(cfg, rows)
    assert any(p.startswith(f"`{where_}` ({subject}): the table says") for p in problems), problems


def test_a_table_that_drifts_from_the_defaults_is_named(rows, production):
    edited = [dict(r, Ours="`1`; 72b: `4`") if r["Where"] == "`train.openrlhf: ring_attn_size`" else r
              for r in rows]
    assert drift(production, edited) == ["`train.openrlhf: ring_attn_size` (qwen2.5-72b): the table says 4.0, "
                                         "the configuration gives 2"]
    with pytest.raises(AssertionError, match="unknown kind"):
        where("`train.openrhlf: max_len`")


def test_the_presets_say_why_they_leave_the_recipe():
    """A preset value that differs from `common` (the published recipe) has its reason beside it:
    the comment above the preset in schema.yaml says what forces it."""
    schema = (REPO / "genrm" / "config" / "schema.yaml").read_text(encoding="utf-8").splitlines()
    node = gconfig.load_schema()["properties"]["train"]["properties"]["openrlhf"]["properties"]
    common, presets = node["common"]["default"], node["presets"]["default"]
    scheduler = {"cpus_per_task", "mem_mb", "runtime"}
    for size, preset in presets.items():
        changed = {k for k, v in preset.items() if k not in scheduler and common.get(k) != v}
        if not changed:
            continue
        start = next(i for i, text in enumerate(schema) if text.strip() == "presets:")
        line = next(i for i in range(start, len(schema)) if re.match(rf"\s+{size}: \{{", schema[i]))
        comment = []
        for text in reversed(schema[:line]):
            if not text.strip().startswith("#"):
                break
            comment.insert(0, text.strip("# ").lower())
        reason = " ".join(comment)
        if "not the recipe" in reason:  # the tiny smoke-test preset
            continue
        assert "memory" in reason and all(k in reason for k in changed), (size, changed, reason)


def test_readme_and_cluster_docs_link_the_table():
    assert "docs/fidelity.md" in (REPO / "README.md").read_text(encoding="utf-8")
    assert "fidelity.md" in (REPO / "docs" / "cluster.md").read_text(encoding="utf-8")
