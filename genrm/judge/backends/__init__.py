"""Judging backends behind a small registry.

A backend is a class built once per job, ``Backend(model_dir, examples, settings,
dtype)``, and called per shard: ``backend(indices, progress) -> prediction rows``.
Generative judges run on the backend that ``judge.backend`` names; classifiers
(modes ``classifier`` and ``bt``) always run on transformers. Backends are imported only when a job needs one
(vLLM and torch are heavy, and vLLM is not installed everywhere).
"""

from __future__ import annotations

import importlib

from genrm.config import JudgeSettings

GENERATIVE = {
    "transformers": "genrm.judge.backends.transformers:TransformersJudge",
    "vllm": "genrm.judge.backends.vllm:VLLMJudge",
}
CLASSIFIER = "genrm.judge.backends.classifier:ClassifierJudge"


def backend_class(settings: JudgeSettings):
    """The class that judges with ``settings`` (its mode and backend)."""
    if settings.mode in ("classifier", "bt"):  # external reward models, and the Bradley-Terry models trained here
        target = CLASSIFIER
    elif settings.backend in GENERATIVE:
        target = GENERATIVE[settings.backend]
    else:
        raise ValueError(f"unknown judge backend {settings.backend!r}; allowed: {', '.join(GENERATIVE)}")
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def make_runner(model_dir: str, examples: list, settings: JudgeSettings, dtype: str):
    """A function (example indices, progress callback) -> prediction rows, with the model loaded once."""
    return backend_class(settings)(model_dir, examples, settings, dtype)
