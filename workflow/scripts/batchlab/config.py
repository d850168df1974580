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

from batchlab import BatchlabError, ConfigError  # noqa: F401 (ConfigError: config's error)
from batchlab.cells import Recipe

# images in the MNIST training set: the training split is what train.validation_size leaves
MNIST_TRAIN = 60000


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
    if "anyOf" in schema:  # the branch of the instance's own kind (a list or a mapping)
        want = "array" if isinstance(value, list) else "object" if isinstance(value, dict) else None
        branch = next((sub for sub in schema["anyOf"] if sub.get("type") == want), None)
        return _coerce(value, branch, path) if branch is not None else value
    if kind in ("number", "integer"):
        if isinstance(value, str):
            return _to_number(value, kind == "integer", path)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key {_key(path)}: {value!r} is not a finite number")
        if kind == "integer" and isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    if kind == "array" and isinstance(value, list):
        items = schema.get("items", {})
        return [_coerce(v, items, path + [i]) for i, v in enumerate(value)]
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, dict) else {}
        if schema.get("x-integer-keys"):  # batch sizes as keys: "64" (JSON, --config) is 64
            value = {_to_number(str(k), True, path + [k]): v for k, v in value.items()}
        out = {k: _coerce(v, props.get(k, extra), path + [k]) for k, v in value.items()}
        for name, sub in props.items():
            if name not in out and "default" in sub:
                out[name] = _coerce(copy.deepcopy(sub["default"]), sub, path + [name])
        return out
    return value


# keys that moved, and where to say what they said
MOVED = {
    "train.optimizer": "list optimizers in grid.optimizers (their settings in the group optimizers)",
    "train.momentum": "say momentum as grid.optimizers: [momentum] with optimizers.momentum.momentum",
    "train.weight_decay": "each optimizer has its own: optimizers.<name>.weight_decay",
    "solution2.momentum": "list solution2.optimizers: [sgd, momentum] (the value: optimizers.momentum.momentum)",
    "optimizers.momentum.nesterov": "Nesterov momentum is an optimizer of its own: grid.optimizers: [nesterov], its settings in optimizers.nesterov",
}


def _describe(error) -> str:
    """One line for a jsonschema.ValidationError."""
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    moved = [_key(path + [e]) for e in getattr(error, "instance", None) or [] if _key(path + [e]) in MOVED] if (
        error.validator == "additionalProperties" and isinstance(error.instance, dict)
    ) else []
    if moved:
        return "; ".join(f"config key {k} is no longer read: {MOVED[k]}" for k in moved)
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
    if error.validator in ("anyOf", "oneOf") and error.context:
        # the errors of the branch of the instance's own kind (a list, a mapping) say what is wrong
        want = "array" if isinstance(error.instance, list) else "object" if isinstance(error.instance, dict) else None
        mine = [e for e in error.context if error.validator_value[e.schema_path[0]].get("type") == want]
        if mine:
            return _describe(max(mine, key=lambda e: len(e.absolute_path)))
        kinds = " or ".join(sub.get("type", "?") for sub in error.validator_value)
        return f"config key {_key(path)}: {error.instance!r} is not of type {kinds}"
    if error.validator == "minItems" and error.validator_value == 1:
        return f"config key {_key(path)}: must list at least one value (it is empty)"
    text = f"config key {_key(path)}: {error.message}"
    desc = schema.get("description")
    return text + (f" ({' '.join(desc.split())})" if desc else "")


def validate_config(config: dict, schema: dict) -> dict:
    """Return the validated config with defaults filled, or raise ConfigError naming the key."""
    if not isinstance(config, dict):
        raise ConfigError("the config must be a mapping with groups data, grid, train, report")
    import jsonschema  # here, not at the top: a training job needs cell names, not validation

    config = _coerce(copy.deepcopy(config), schema, [])
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    if errors:
        lines = [_describe(e) for e in errors]
        raise ConfigError("invalid config:\n  " + "\n  ".join(dict.fromkeys(lines)))
    problems = _cross_checks(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return config


def fill_defaults(config: dict, schema: dict) -> dict:
    """The config with numeric strings read as numbers and the schema's defaults filled, not
    validated (for a GPU machine's stock environment, which has no jsonschema)."""
    return _coerce(copy.deepcopy(config), schema, [])


def _cross_checks(config: dict) -> list[str]:
    """Rules that tie two keys together, which the JSON schema cannot say."""
    out = []
    epochs = config["train"]["epochs"]
    rem, sol, mea = config.get("remedies", {}), config.get("solution2", {}), config.get("measure", {})
    if rem.get("enabled") and rem["warmup_epochs"] > epochs:
        out.append(
            f"config key remedies.warmup_epochs: {rem['warmup_epochs']:g} is longer than training"
            f" (train.epochs = {epochs})"
        )
    if sol.get("enabled") and sol["splits"] > sol["batch_size"]:
        out.append(
            f"config key solution2.splits: {sol['splits']} slices cannot be cut from a batch of"
            f" {sol['batch_size']} (solution2.batch_size)"
        )
    if mea and mea["noise_batch"] % mea["noise_micro_batches"]:
        out.append(
            f"config key measure.noise_micro_batches: {mea['noise_micro_batches']} does not divide"
            f" measure.noise_batch = {mea['noise_batch']} into equal micro-batches"
        )
    grid = config.get("grid", {})
    windows = grid.get("learning_rates")
    if isinstance(windows, dict):
        for b in sorted(set(grid.get("batch_sizes", [])) - set(windows)):
            out.append(
                f"config key grid.learning_rates: batch size {b} has no window; give one list of"
                " learning rates per batch size in grid.batch_sizes, or one list for all"
            )
    out += _window_checks(config)
    eq = config.get("equal_updates") or {}
    if eq.get("enabled"):
        small = [b for b in eq["batch_sizes"] if b <= eq["reference_batch_size"]]
        if small:
            out.append(
                f"config key equal_updates.batch_sizes: {small} are not larger than"
                f" equal_updates.reference_batch_size = {eq['reference_batch_size']}; the test gives a large"
                " batch as many updates as a smaller one"
            )
    n_train = MNIST_TRAIN - config["train"].get("validation_size", 0)
    largest = max([*grid.get("batch_sizes", [1]), *(rem.get("batch_sizes", []) if rem.get("enabled") else [])])
    if largest > n_train:
        out.append(
            f"config key train.validation_size: holding out {config['train']['validation_size']:,}"
            f" images leaves {n_train:,} to train on, fewer than the batch size {largest:,}"
        )
    return out


def _window_checks(config: dict) -> list[str]:
    """Every optimizer that trains at a batch size has a window of learning rates there (the
    grid's own windows are checked above)."""
    grid, rem = config.get("grid", {}), config.get("remedies") or {}
    own = config.get("optimizers") or {}
    needs = [(name, b) for name in grid.get("optimizers") or [] for b in grid.get("batch_sizes", [])]
    needs = [(name, b) for name, b in needs if (own.get(name) or {}).get("learning_rates") is not None]
    out = []
    if rem.get("enabled"):
        needs += [(name, b) for name in rem.get("optimizers") or [] for b in rem["batch_sizes"]]
        out += _recipe_checks(rem, grid)
    for name, b in needs:
        windows = (own.get(name) or {}).get("learning_rates")
        key = f"optimizers.{name}.learning_rates" if windows is not None else "grid.learning_rates"
        windows = windows if windows is not None else grid.get("learning_rates")
        if isinstance(windows, dict) and b not in windows:
            out.append(f"config key {key}: {name} trains at batch size {b} but has no window for it; add one")
    return list(dict.fromkeys(out))


def _recipe_checks(rem: dict, grid: dict) -> list[str]:
    """The league's target is the reference batch size's tuned optimum (a grid batch size); each
    league recipe parses and has a window at every huge batch size; micro-batches are smaller
    than every huge batch."""
    out = []
    if rem["reference_batch_size"] not in grid.get("batch_sizes", []):
        out.append(
            f"config key remedies.reference_batch_size: {rem['reference_batch_size']} is not in grid.batch_sizes;"
            " the league's target is that batch size's accuracy at its own best lr, so the grid must train it"
        )
    for label, arm in (rem.get("recipes") or {}).items():
        key = f"config key remedies.recipes.{label}"
        try:
            Recipe.parse(arm["recipe"])
        except ConfigError as err:
            out.append(f"{key}.recipe: {err}")
        out += [f"{key}.learning_rates: no window for batch size {b}; add one" for b in rem["batch_sizes"] if b not in arm["learning_rates"]]
    m = rem.get("micro_batch") or 0
    if m and m >= min(rem["batch_sizes"]):
        out.append(f"config key remedies.micro_batch: {m} is not smaller than the batch size {min(rem['batch_sizes'])}; micro-batches cut a batch into parts")
    return out


def params_hash(config: dict) -> str:
    """A short, stable hash of the validated config (the report's version stamp)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def scaled_lr(reference_lr: float, reference_batch: int, batch_size: int, rule: str) -> float:
    """Learning-rate scaling with batch size: none, sqrt (lr ∝ √b) or linear (lr ∝ b)."""
    power = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}[rule]
    return round_lr(reference_lr * (batch_size / reference_batch) ** power)


def round_lr(lr: float) -> float:
    """A computed learning rate to 6 significant digits, so float noise never reaches a cell name."""
    return float(f"{lr:.6g}")
