"""Judging backends behind a small registry.

A backend is a class built once per job, ``Backend(model_dir, examples, settings,
dtype)``, and called per shard: ``backend(indices, progress) -> prediction rows``.
Every judge runs on the backend that ``judge.backend`` names: generative judges on
its generating engine, classifiers (modes ``classifier`` and ``bt``) on its
sequence classifier (vLLM: the pooling runner). Backends are imported only when a
job needs one (vLLM and torch are heavy).
"""

from __future__ import annotations

import importlib

from genrm.config import JudgeSettings

GENERATIVE = {
    "transformers": "genrm.judge.backends.transformers:TransformersJudge",
    "vllm": "genrm.judge.backends.vllm:VLLMJudge",
}
CLASSIFIER = {
    "transformers": "genrm.judge.backends.classifier:ClassifierJudge",
    "vllm": "genrm.judge.backends.vllm:VLLMClassifier",
}


def backend_class(settings: JudgeSettings):
    """The class that judges with ``settings`` (its mode and backend)."""
    if settings.backend not in GENERATIVE:
        raise ValueError(f"unknown judge backend {settings.backend!r}; allowed: {', '.join(GENERATIVE)}")
    # classifier: external reward models; bt: the Bradley-Terry models trained here
    target = (CLASSIFIER if settings.mode in ("classifier", "bt") else GENERATIVE)[settings.backend]
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def make_runner(model_dir: str, examples: list, settings: JudgeSettings, dtype: str):
    """A function (example indices, progress callback) -> prediction rows, with the model loaded once."""
    return backend_class(settings)(model_dir, examples, settings, dtype)
