"""Configuration: schema validation with readable errors, and the derived lists
(judges, GenRMs) that the rule files turn into targets."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    pass


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def _with_defaults(validator_class, root: dict):
    """A validator that also fills in schema defaults (jsonschema's documented recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                sub = _resolve(root, sub)
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _resolve(schema: dict, node: dict) -> dict:
    ref = node.get("$ref")
    if ref and ref.startswith("#/"):
        for part in ref[2:].split("/"):
            schema = schema[part]
        return schema
    return node


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    kw, schema = error.validator, error.schema
    if kw == "enum":
        return f"{where}: {error.instance!r} is not allowed; allowed values: {', '.join(map(str, error.validator_value))}"
    if kw == "additionalProperties" and error.validator_value is False:
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key(s) {', '.join(extra)}; allowed keys: {', '.join(allowed)}"
    if kw == "propertyNames":
        names = schema["propertyNames"]
        if "enum" in names:
            extra = [k for k in error.instance if k not in names["enum"]]
            return f"{where}: unknown key(s) {', '.join(extra)}; allowed keys: {', '.join(names['enum'])}"
        return f"{where}: key names must match {names.get('pattern')}"
    return f"{where}: {error.message}"


def validate(config: dict) -> dict:
    """Validate ``config`` in place (filling defaults); raise ConfigError listing every problem."""
    schema = load_schema()
    validator = _with_defaults(jsonschema.Draft202012Validator, schema)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e) for e in errors]
    if not problems:
        problems = _cross_reference_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def _cross_reference_problems(config: dict) -> list[str]:
    problems = []
    models, methods = config["models"], config["methods"]
    for model, wanted in config["genrms"].items():
        if model not in models:
            problems.append(f"genrms.{model}: unknown model; allowed: {', '.join(models)}")
        for method in wanted:
            if method not in methods:
                problems.append(f"genrms.{model}: unknown method {method!r}; allowed: {', '.join(methods)}")
    for section, entries in (("models", models), ("external_judges", config.get("external_judges", {}))):
        for name, entry in entries.items():
            if entry["source"] == "tiny" and "tiny" not in entry:
                problems.append(f"{section}.{name}: source 'tiny' needs a 'tiny' block")
    clash = set(models) & set(config.get("external_judges", {}))
    if clash:
        problems.append(f"external_judges: names also used by models: {', '.join(sorted(clash))}")
    return problems


def load(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    return validate(config)


# --- derived lists ------------------------------------------------------------

GENRM_SEP = "__"


@dataclass(frozen=True)
class Judge:
    """One row of the results tables: something that judges RewardBench."""

    name: str  # directory under results/eval/
    kind: str  # base | genrm | external
    type: str  # generative | classifier
    family: str
    label: str
    method: str
    size: str
    model: str  # the models/external_judges key whose weights it starts from
    genrm_method: str | None = None  # set for kind == genrm

    @property
    def ours(self) -> bool:
        return self.kind == "genrm"


def genrm_name(model: str, method: str) -> str:
    return f"{model}{GENRM_SEP}{method}"


def genrms(config: dict) -> list[tuple[str, str]]:
    return [(m, meth) for m, methods in config["genrms"].items() for meth in methods]


def judges(config: dict) -> list[Judge]:
    out = []
    for name, m in config["models"].items():
        out.append(Judge(name, "base", "generative", m["family"], m["label"], "LLM-as-a-Judge", m["size"], name))
        for model, method in genrms(config):
            if model == name:
                out.append(
                    Judge(genrm_name(model, method), "genrm", "generative", m["family"], m["genrm_label"],
                          config["methods"][method]["label"], m["size"], model, method)
                )
    for name, e in config.get("external_judges", {}).items():
        out.append(Judge(name, "external", e["type"], e["family"], e["label"], e["method"], e["size"], name))
    return out


def model_entry(config: dict, name: str) -> dict:
    """The models/external_judges entry for a name."""
    if name in config["models"]:
        return config["models"][name]
    return config["external_judges"][name]


def prepare_job_environment(package_root: str) -> None:
    """Make ``python -m genrm`` work in every job: the package on the import path
    whatever the working directory, and ``python`` the interpreter running Snakemake
    (a virtual environment need not be activated; with --sdm conda the job's own
    environment comes first)."""
    import os
    import sys

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    os.environ["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", "")))


def train_settings(config: dict, model: str) -> dict:
    """What the training backend gets for one base model.

    trl: the ``train.trl`` block. openrlhf: ``train.openrlhf.common``, overridden
    by the preset of the model's size, overridden by ``train.openrlhf.models.<model>``
    (each level key by key, over the built-in values of the schema), plus the
    checkpoint and rendezvous settings of ``train.openrlhf``.
    """
    backend = config["train"]["backend"]
    if backend == "openrlhf":
        return openrlhf_settings(config, model)
    return dict(config["train"].get(backend, {}))


def judge_settings(config: dict, judge: Judge) -> dict:
    """What the judging backend gets for one judge: ``judge`` of the config with the mode
    of the judge's kind and the tensor parallel size of its size class resolved."""
    j = config["judge"]
    settings = {k: v for k, v in j.items() if k not in ("modes", "tensor_parallel", "mem_mb", "runtime")}
    settings["mode"] = "classifier" if judge.type == "classifier" else j["modes"][judge.kind]
    settings["tensor_parallel_size"] = judge_tensor_parallel(config, judge)
    settings["seed"] = config["seed"]
    return settings


def table_row(judge: Judge) -> dict:
    """The identity of a judge in the results tables."""
    return {"judge": judge.name, "family": judge.family, "model": judge.label, "method": judge.method,
            "ours": judge.ours}


# --- training: OpenRLHF presets, scheduler resources, length guard -----------

OPENRLHF_REQUIRED = ("nodes", "gpus_per_node", "cpus_per_task", "mem_mb", "runtime", "zero_stage",
                     "micro_batch_size", "global_batch_size", "learning_rate", "epochs", "max_len")
OPENRLHF_JOB_KEYS = ("checkpoint_dir", "keep_checkpoints", "rdzv_port")


_OPENRLHF_DEFAULTS: dict = {}  # schema modification time -> defaults (jobs ask for them often)


def _train_schema_defaults() -> dict:
    """The built-in values of ``train.openrlhf`` (presets, common) from the schema."""
    mtime = SCHEMA_PATH.stat().st_mtime
    if mtime not in _OPENRLHF_DEFAULTS:
        node = load_schema()["properties"]["train"]["properties"]["openrlhf"]["properties"]
        _OPENRLHF_DEFAULTS.clear()
        _OPENRLHF_DEFAULTS[mtime] = {key: sub.get("default") for key, sub in node.items()}
    return copy.deepcopy(_OPENRLHF_DEFAULTS[mtime])


def openrlhf_settings(config: dict, model: str) -> dict:
    """The resolved OpenRLHF settings of one base model (see ``train_settings``)."""
    if model not in config["models"]:
        raise ConfigError(f"no base model {model!r}; allowed: {', '.join(config['models'])}")
    builtin = _train_schema_defaults()
    user = config.get("train", {}).get("openrlhf", {}) or {}
    size = config["models"][model]["size"]
    preset = {**builtin["presets"].get(size, {}), **(user.get("presets") or {}).get(size, {})}
    settings = {
        **builtin["common"],
        **(user.get("common") or {}),
        **preset,
        **(user.get("models") or {}).get(model, {}),
    }
    missing = [k for k in OPENRLHF_REQUIRED if k not in settings]
    if missing:
        raise ConfigError(f"train.openrlhf: model {model} (size {size}) has no {', '.join(missing)}; "
                          f"set them in train.openrlhf.presets.{size} or train.openrlhf.models.{model}")
    for key in OPENRLHF_JOB_KEYS:
        settings[key] = user.get(key, builtin[key])
    settings["size"] = size
    return settings


def openrlhf_problems(config: dict) -> list[str]:
    """Problems of ``train.openrlhf`` that the schema cannot see (unknown model keys,
    settings OpenRLHF would refuse or silently change), for every model to train."""
    from genrm.openrlhf import settings_problems

    user = config.get("train", {}).get("openrlhf", {}) or {}
    problems = [f"train.openrlhf.models.{name}: unknown model; allowed: {', '.join(config['models'])}"
                for name in (user.get("models") or {}) if name not in config["models"]]
    if problems or config["train"]["backend"] != "openrlhf":
        return problems
    for model in sorted({m for m, _ in genrms(config)}):
        try:
            settings = openrlhf_settings(config, model)
        except ConfigError as error:
            problems.append(str(error))
            continue
        problems += [f"train.openrlhf (model {model}): {p}" for p in settings_problems(settings)]
    return problems


def train_max_len(config: dict, model: str) -> int:
    """The longest row (in tokens) that the training backend takes whole."""
    if config["train"]["backend"] == "openrlhf":
        return int(openrlhf_settings(config, model)["max_len"])
    return int(config["train"]["trl"]["max_length"])


def train_command(config: dict, model: str, method: str, model_dir: str, rows: str, out: str) -> str:
    """The shell command of one training job (rule train_genrm; ``snakemake -n -p`` prints it):
    the OpenRLHF launch line, or ``python -m genrm train --backend trl ...``."""
    import json
    import shlex

    settings = train_settings(config, model)
    if config["train"]["backend"] == "openrlhf":
        from genrm.openrlhf import rule_job

        return rule_job(settings, model=model, method=method, model_dir=model_dir, rows=rows, out=out,
                        seed=config["seed"]).shell_command()
    return (f"python -m genrm train --backend trl --model {shlex.quote(model_dir)} --rows {shlex.quote(rows)}"
            f" --settings {shlex.quote(json.dumps(settings, sort_keys=True))} --seed {config['seed']}"
            f" --out {shlex.quote(out)}")


def train_resources(config: dict, model: str) -> dict:
    """What one training job of ``model`` asks the scheduler for (Snakemake resources)."""
    if config["train"]["backend"] == "openrlhf":
        from genrm.openrlhf import job_resources

        return job_resources(openrlhf_settings(config, model))
    trl = config["train"]["trl"]
    return {"nodes": 1, "tasks": 1, "cpus_per_task": trl["threads"], "mem_mb": trl["mem_mb"],
            "runtime": trl["runtime"], "gpu": None, "tasks_per_gpu": None, "mpi": None}


# --- judging: parallelism and scheduler resources ------------------------------


def judge_tensor_parallel(config: dict, judge: Judge) -> int:
    """vLLM tensor parallel size of a judge: ``judge.tensor_parallel`` of its size class
    (config keys over the built-in ones)."""
    builtin = load_schema()["properties"]["judge"]["properties"]["tensor_parallel"]["default"]
    return int({**builtin, **config["judge"].get("tensor_parallel", {})}[judge.size])


def judge_gpus(config: dict, judge: Judge) -> int:
    """GPUs of one judging job: the tensor parallel size for generative judges on vLLM, one for
    classifiers on a GPU cluster (backend vllm), none for the transformers backend (CPU)."""
    if config["judge"]["backend"] != "vllm":
        return 0
    return judge_tensor_parallel(config, judge) if judge.type == "generative" else 1


def judge_resources(config: dict, judge: Judge) -> dict:
    """What one judging job asks the scheduler for (Snakemake resources)."""
    gpus = judge_gpus(config, judge)
    return {"gpu": gpus or None, "cpus_per_task": config["judge"]["threads"],
            "mem_mb": config["judge"]["mem_mb"], "runtime": config["judge"]["runtime"]}


def judge_model_dir(judge: Judge) -> str:
    """The weights a judge runs: the trained GenRM, or the fetched base or external model."""
    if judge.kind == "genrm":
        return f"results/models/{judge.model}/{judge.genrm_method}"
    return f"resources/models/{judge.model}"
