"""The configuration schema (package data) and the one place its defaults are applied.

``check(config)`` validates a config in place against ``schema.yaml`` and fills
in every default the schema declares. A default that is an object is merged
under what the config gives, key by key and level by level: a config that sets
``train.openrlhf.presets.7b.micro_batch_size`` changes that key and keeps every
other built-in value of the preset.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources

import jsonschema
import yaml


class ConfigError(ValueError):
    """An invalid configuration; the message names each key and what is allowed."""


@functools.cache
def _schema_text() -> str:
    return resources.files("genrm.config").joinpath("schema.yaml").read_text(encoding="utf-8")


def load_schema() -> dict:
    """A fresh copy of the schema (callers may not change the cached one)."""
    return yaml.safe_load(_schema_text())


def deep_merge(default, given):
    """``given`` over ``default``: dictionaries merge key by key, recursively; anything else is ``given``."""
    if isinstance(default, dict) and isinstance(given, dict):
        merged = copy.deepcopy(default)
        for key, value in given.items():
            merged[key] = deep_merge(default.get(key), value) if key in default else value
        return merged
    return given


def _resolve(schema: dict, node: dict) -> dict:
    ref = node.get("$ref")
    if ref and ref.startswith("#/"):
        for part in ref[2:].split("/"):
            schema = schema[part]
        return schema
    return node


def _with_defaults(validator_class, root: dict):
    """A validator that also fills in schema defaults, merging object defaults under given objects."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                sub = _resolve(root, sub)
                if "default" not in sub:
                    continue
                default = sub["default"]
                if name not in instance:
                    instance[name] = copy.deepcopy(default)
                elif isinstance(default, dict) and isinstance(instance[name], dict):
                    instance[name] = deep_merge(default, instance[name])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def describe(error: jsonschema.ValidationError) -> str:
    """One line naming the key path and what is allowed there."""
    where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    kw, schema = error.validator, error.schema
    if kw == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{where}: {error.instance!r} is not allowed; allowed values: {allowed}"
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


def check(config: dict) -> list[str]:
    """Validate ``config`` in place, filling defaults; return the problems (empty when valid)."""
    schema = load_schema()
    validator = _with_defaults(jsonschema.Draft202012Validator, schema)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return [describe(e) for e in errors]


def defaults_of(*keys: str) -> dict:
    """The default the schema declares at a property path (for documentation and tests)."""
    node = load_schema()
    for key in keys:
        node = node["properties"][key]
    return copy.deepcopy(node["default"])
