"""Configuration (layer 1): one ``validate()`` and the settings derived from a valid config.

``validate(config)`` is what Snakemake (rules/common.smk) and ``python -m genrm
check-config FILE [FILE ...]`` both call. It applies the schema with its defaults (once),
then every check the schema cannot express: cross-references between blocks,
``report.published`` overrides against the published rows, and the OpenRLHF
settings of every model to train. All problems are reported together.

The derived values (the judges of the tables, the settings of a judging or
training job) are computed here from a validated config, never with fallbacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from genrm import published
from genrm.config.schema import ConfigError, check, load_schema
from genrm.config.settings import JudgeSettings, OpenRLHFSettings, TrlSettings, as_dict, from_dict

__all__ = ["BT_METHOD", "ConfigError", "Judge", "JudgeSettings", "OpenRLHFSettings", "TrlSettings",
           "agreement_sample", "as_dict", "from_dict", "genrm_name", "genrms", "judge_settings", "judges", "load",
           "load_schema", "merge", "model_entry", "objective", "openrlhf_settings", "published_key", "train_backend",
           "train_max_len", "trl_settings", "validate"]

# The method that trains a Bradley-Terry reward model (a scalar classifier) instead of a GenRM.
BT_METHOD = "bt"


def objective(method: str) -> str:
    """What a training method trains: ``sft`` (a GenRM) or ``bt`` (a Bradley-Terry reward model)."""
    return "bt" if method == BT_METHOD else "sft"


def validate(config: dict) -> dict:
    """Validate ``config`` in place (filling defaults); raise ConfigError listing every problem."""
    problems = check(config)
    if not problems:
        problems = _cross_reference_problems(config)
    if not problems:
        problems = _published_problems(config) + _openrlhf_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def merge(base: dict, overlay: dict) -> dict:
    """``overlay`` on top of ``base`` as Snakemake merges its config files (``--configfile A B``):
    mappings key by key, any other value replaced. Neither argument is changed."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load(*paths: str | Path) -> dict:
    """The config files merged in order (each over the ones before it, as Snakemake merges them), validated."""
    config: dict = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            layer = yaml.safe_load(f) or {}
        if not isinstance(layer, dict):
            raise ConfigError(f"{path}: a configuration is a mapping of keys, not {type(layer).__name__}")
        config = merge(config, layer)
    return validate(config)


def _cross_reference_problems(config: dict) -> list[str]:
    problems = []
    models, methods = config["models"], config["methods"]
    for model, wanted in config["genrms"].items():
        if model not in models:
            problems.append(f"genrms.{model}: unknown model; allowed: {', '.join(models)}")
        for method in wanted:
            if method not in methods:
                problems.append(f"genrms.{model}: unknown method {method!r}; allowed: {', '.join(methods)}")
    for section, entries in (("models", models), ("external_judges", config["external_judges"])):
        for name, entry in entries.items():
            if entry["source"] == "tiny" and "tiny" not in entry:
                problems.append(f"{section}.{name}: source 'tiny' needs a 'tiny' block")
            if entry["source"] != "tiny" and "tiny" in entry:
                problems.append(f"{section}.{name}: a 'tiny' block belongs only to source 'tiny'")
    clash = set(models) & set(config["external_judges"])
    if clash:
        problems.append(f"external_judges: names also used by models: {', '.join(sorted(clash))}")
    for where, overrides in (("train.openrlhf.models", config["train"]["openrlhf"]["models"]),
                             ("train.bt.openrlhf.models", config["train"]["bt"]["openrlhf"]["models"])):
        problems += [f"{where}.{name}: unknown model; allowed: {', '.join(models)}"
                     for name in overrides if name not in models]
    if BT_METHOD in methods and methods[BT_METHOD]["correct_ratio"] != 0:
        problems.append(f"methods.{BT_METHOD}.correct_ratio: a Bradley-Terry model has no correct rows; leave it out")
    return problems


# --- the judges of the tables ----------------------------------------------------

GENRM_SEP = "__"


@dataclass(frozen=True)
class Judge:
    """One row of the results tables: something that judges RewardBench."""

    name: str  # directory under results/eval/
    kind: str  # base | genrm | bt (trained here) | external
    type: str  # generative | classifier
    family: str
    label: str
    method: str
    size: str
    model: str  # the models/external_judges key whose weights it starts from
    genrm_method: str | None = None  # the training method, for the judges trained here (genrm, bt)

    @property
    def ours(self) -> bool:
        """Trained by this run: a GenRM or a Bradley-Terry model."""
        return self.kind in ("genrm", "bt")


def genrm_name(model: str, method: str) -> str:
    return f"{model}{GENRM_SEP}{method}"


def genrms(config: dict) -> list[tuple[str, str]]:
    return [(m, meth) for m, methods in config["genrms"].items() for meth in methods]


def judges(config: dict) -> list[Judge]:
    """Every judge of the tables: per base model, itself untrained, its GenRMs and its Bradley-Terry
    model (labelled with the base model and the bt method's label); then the external judges."""
    out = []
    for name, m in config["models"].items():
        out.append(Judge(name, "base", "generative", m["family"], m["label"], "LLM-as-a-Judge", m["size"], name))
        for model, method in genrms(config):
            if model != name:
                continue
            label = config["methods"][method]["label"]
            if objective(method) == "bt":
                out.append(Judge(genrm_name(model, method), "bt", "classifier", m["family"], m["label"], label,
                                 m["size"], model, method))
            else:
                out.append(Judge(genrm_name(model, method), "genrm", "generative", m["family"], m["genrm_label"],
                                 label, m["size"], model, method))
    for name, e in config["external_judges"].items():
        out.append(Judge(name, "external", e["type"], e["family"], e["label"], e["method"], e["size"], name))
    return out


def model_entry(config: dict, name: str) -> dict:
    """The models/external_judges entry for a name."""
    if name in config["models"]:
        return config["models"][name]
    return config["external_judges"][name]


# --- published figures -------------------------------------------------------------

def published_key(config: dict, judge: Judge) -> dict | None:
    """The published row a judge reproduces, as ``{model, method}``, or None. Config
    ``report.published`` overrides the default match on (table label, method)."""
    overrides = config["report"]["published"]
    if judge.name in overrides:
        return overrides[judge.name]
    return {"model": judge.label, "method": judge.method}


def _published_problems(config: dict) -> list[str]:
    """Overrides in ``report.published`` that name an unknown judge or an unknown published row."""
    names = [j.name for j in judges(config)]
    index = published.by_key(published.load_published())
    problems = []
    for name, target in config["report"]["published"].items():
        if name not in names:
            problems.append(f"report.published.{name}: unknown judge; judges: {', '.join(names)}")
        elif target is not None and (target["model"], target["method"]) not in index:
            allowed = "; ".join(f"{m} / {meth}" for m, meth in index)
            problems.append(f"report.published.{name}: no published row {target['model']} / "
                            f"{target['method']}; published rows: {allowed}")
    return problems


# --- judging ---------------------------------------------------------------------------

def judge_settings(config: dict, judge: Judge) -> JudgeSettings:
    """The settings of one judging job: the ``judge`` block with the mode of the judge's kind
    and the tensor parallel size of its size class resolved."""
    j = config["judge"]
    values = {k: v for k, v in j.items() if k not in JOB_LEVEL_JUDGE_KEYS}
    # classifier: the chat template's text, as published classifiers are used; bt: the text this
    # run's Bradley-Terry models were trained on (genrm.protocol.reward_text)
    values["mode"] = "bt" if judge.kind == "bt" else "classifier" if judge.type == "classifier" \
        else j["modes"][judge.kind]
    values["tensor_parallel_size"] = j["tensor_parallel"][judge.size]
    values["seed"] = config["seed"]
    return from_dict(JudgeSettings, values, "judge")


# Keys of the judge block that are not settings of one judging job: resolved above (modes,
# tensor_parallel), scheduler requests (mem_mb, runtime), or what the workflow runs besides
# (agreement_sample: see agreement_sample()).
JOB_LEVEL_JUDGE_KEYS = ("modes", "tensor_parallel", "mem_mb", "runtime", "agreement_sample")


def agreement_sample(config: dict, judge: Judge) -> int:
    """How many examples a judge judged in logprob mode judges again by greedy decoding (the
    published protocol) to measure how often the two agree; 0 for every other judge."""
    if judge_settings(config, judge).mode != "logprob":
        return 0
    return config["judge"]["agreement_sample"]


# --- training ---------------------------------------------------------------------------

def trl_settings(config: dict, method: str | None = None) -> TrlSettings:
    """The TRL settings of a training job of ``method``: ``train.trl``, with ``train.bt.trl`` over
    it for a Bradley-Terry model (method bt). None or a GenRM method: ``train.trl``."""
    if method is not None and objective(method) == "bt":
        return from_dict(TrlSettings, {**config["train"]["trl"], **config["train"]["bt"]["trl"]},
                         "train.trl with train.bt.trl")
    return from_dict(TrlSettings, dict(config["train"]["trl"]), "train.trl")


def openrlhf_settings(config: dict, model: str, method: str | None = None) -> OpenRLHFSettings:
    """One job's OpenRLHF settings: ``common``, then the model's size preset, then its model entry;
    for a Bradley-Terry model (method bt) then ``train.bt.openrlhf`` common, preset and model entry."""
    if model not in config["models"]:
        raise ConfigError(f"no base model {model!r}; allowed: {', '.join(config['models'])}")
    o = config["train"]["openrlhf"]
    size = config["models"][model]["size"]
    values = {**o["common"], **o["presets"].get(size, {}), **o["models"].get(model, {})}
    where = f"train.openrlhf (model {model}, size {size}; set keys in train.openrlhf.presets.{size} " \
            f"or train.openrlhf.models.{model})"
    if method is not None and objective(method) == "bt":
        bt = config["train"]["bt"]["openrlhf"]
        values.update({**bt["common"], **bt["presets"].get(size, {}), **bt["models"].get(model, {})})
        where = f"train.bt.openrlhf (model {model}, size {size}; set keys in train.bt.openrlhf.presets.{size} " \
                f"or train.bt.openrlhf.models.{model})"
    values.update(checkpoint_dir=o["checkpoint_dir"], keep_checkpoints=o["keep_checkpoints"],
                  rdzv_port=o["rdzv_port"], size=size)
    return from_dict(OpenRLHFSettings, values, where)


def train_backend(config: dict, method: str | None = None) -> str:
    """The backend of a training job of ``method``: ``train.backend``, or ``train.bt.backend`` for a
    Bradley-Terry model (method bt) where it is set."""
    if method is not None and objective(method) == "bt":
        return config["train"]["bt"].get("backend", config["train"]["backend"])
    return config["train"]["backend"]


def _openrlhf_problems(config: dict) -> list[str]:
    """OpenRLHF settings of every job to train that OpenRLHF would refuse or silently change."""
    problems = []
    for model, method in genrms(config):
        if train_backend(config, method) != "openrlhf":
            continue
        bt = objective(method) == "bt"
        where = f"train.bt.openrlhf (model {model})" if bt else f"train.openrlhf (model {model})"
        try:
            settings = openrlhf_settings(config, model, method)
        except ConfigError as error:
            problems.append(str(error))
            continue
        problems += [f"{where}: {p}" for p in settings.problems(reward_model=bt)]
    return list(dict.fromkeys(problems))  # the GenRM methods of a model share their settings


def train_max_len(config: dict, model: str, method: str | None = None) -> int:
    """The longest sequence (in tokens) that the training job of ``model`` x ``method`` takes whole."""
    if train_backend(config, method) == "openrlhf":
        return openrlhf_settings(config, model, method).max_len
    return trl_settings(config, method).max_length
