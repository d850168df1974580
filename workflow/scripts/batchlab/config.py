"""Validate the study config against its JSON schema, after reading numeric strings as numbers.

PyYAML (Snakemake's reader) hands `1e-3` over as a string, DVC's YAML 1.2 reader as 0.001, and
`snakemake --config` overrides always arrive as strings: numeric fields accept such strings so
that every tool agrees on the same study.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from typing import Any

import jsonschema

from batchlab import BatchlabError


class ConfigError(BatchlabError):
    pass


def _key(path: list) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _to_number(value: str, integer: bool, path: list) -> Any:
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"config key {_key(path)}: {value!r} is not {kind}") from None
    if not math.isfinite(number):
        raise ConfigError(f"config key {_key(path)}: {value!r} is not a finite number")
    if integer:
        if number != int(number):
            raise ConfigError(f"config key {_key(path)}: {value!r} is not an integer")
        return int(number)
    return number


def _coerce(value: Any, schema: dict, path: list) -> Any:
    """Return value with numeric strings read as numbers and defaults filled, per schema."""
    kind = schema.get("type")
    if kind in ("number", "integer"):
        if isinstance(value, str):
            return _to_number(value, kind == "integer", path)
        if kind == "integer" and isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    if kind == "array" and isinstance(value, list):
        items = schema.get("items", {})
        return [_coerce(v, items, path + [i]) for i, v in enumerate(value)]
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        out = {k: _coerce(v, props.get(k, {}), path + [k]) for k, v in value.items()}
        for name, sub in props.items():
            if name not in out and "default" in sub:
                out[name] = _coerce(copy.deepcopy(sub["default"]), sub, path + [name])
        return out
    return value


def _describe(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = _key(path)
        names = ", ".join(_key(path + [e]) for e in extra)
        return f"config key {names} is not allowed in {where}; allowed keys: {', '.join(allowed)}"
    if error.validator == "required":
        return f"config key {_key(path)}: {error.message}"
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"config key {_key(path)}: {error.instance!r} is not one of the allowed values: {allowed}"
    if error.validator == "minItems" and error.validator_value == 1:
        return f"config key {_key(path)}: must list at least one value (it is empty)"
    text = f"config key {_key(path)}: {error.message}"
    desc = schema.get("description")
    return text + (f" ({' '.join(desc.split())})" if desc else "")


def validate_config(config: dict, schema: dict) -> dict:
    """Return the validated config with defaults filled, or raise ConfigError naming the key."""
    if not isinstance(config, dict):
        raise ConfigError("the config must be a mapping with groups data, grid, train, report")
    config = _coerce(copy.deepcopy(config), schema, [])
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    if errors:
        lines = [_describe(e) for e in errors]
        raise ConfigError("invalid config:\n  " + "\n  ".join(dict.fromkeys(lines)))
    return config


def params_hash(config: dict) -> str:
    """A short, stable hash of the validated config (the report's version stamp)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def format_lr(lr: float) -> str:
    """The canonical spelling of a learning rate in cell names: positional, no trailing zeros."""
    text = f"{float(lr):.10f}".rstrip("0").rstrip(".")
    if float(text) != float(lr):
        text = repr(float(lr))
    return text


def cell_name(batch_size: int, lr: float, seed: int) -> str:
    return f"bs{int(batch_size)}_lr{format_lr(lr)}_s{int(seed)}"


def cells(config: dict) -> list[dict]:
    """Every (batch size, learning rate, seed) cell of the grid, in a stable order."""
    grid = config["grid"]
    return [
        {"batch_size": b, "lr": float(lr), "lr_text": format_lr(lr), "seed": s, "name": cell_name(b, lr, s)}
        for b in sorted(grid["batch_sizes"])
        for lr in sorted(grid["learning_rates"])
        for s in sorted(grid["seeds"])
    ]
