import re
from pathlib import Path

import pytest
import yaml

from batchlab.config import ConfigError, params_hash, scaled_lr, validate_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/params.schema.yaml").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def with_change(path: str, value):
    config = yaml.safe_load((REPO / "params.yaml").read_text())
    *parents, last = path.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[last] = value
    return config


def test_repository_params_are_valid_and_the_real_study():
    config = validate_config(PARAMS, SCHEMA)
    grid = config["grid"]
    assert min(grid["batch_sizes"]) == 1 and max(grid["batch_sizes"]) >= 4096  # past the noise scale
    windows = grid["learning_rates"]
    assert set(windows) == set(grid["batch_sizes"])  # every batch size has its own window
    for window in windows.values():
        lrs = sorted(window)
        assert len(lrs) >= 4 and all(hi / lo == pytest.approx(2.0) for lo, hi in zip(lrs, lrs[1:], strict=False))
    # batch 1 holds the blow-up claim's lr and reaches the reference run's failing lr 0.08
    assert 0.02 in windows[1] and max(windows[1]) >= 0.08
    assert config["late_blowup"]["enabled"] and config["late_blowup"]["learning_rates"][0] == 0.02 and config["late_blowup"]["epochs"] >= 10
    # ten seeds: a sign-flip test reaches 1/1024, and each half of five is a replication
    assert config["train"]["epochs"] >= 3 and len(grid["seeds"]) >= 10


def test_learning_rates_per_batch_size_take_batch_sizes_as_keys_and_cover_every_batch_size():
    windows = {"1": ["0.1", 0.2], 4: [0.01], 16: [0.1], 64: [0.1], 256: [1], 1024: [1], 4096: [2]}
    config = validate_config(with_change("grid.learning_rates", windows), SCHEMA)
    assert config["grid"]["learning_rates"][1] == [0.1, 0.2]  # "1" (JSON, --config) is batch size 1
    del windows[4]
    with pytest.raises(ConfigError, match=r"grid\.learning_rates: batch size 4 has no window"):
        validate_config(with_change("grid.learning_rates", windows), SCHEMA)
    with pytest.raises(ConfigError, match=r"grid\.learning_rates\[64\]\[0\]: -0\.1 is less than or equal to the minimum of 0"):
        validate_config(with_change("grid.learning_rates", {**windows, 4: [0.1], 64: [-0.1]}), SCHEMA)
    with pytest.raises(ConfigError, match=r"grid\.learning_rates\.sixty: 'sixty' is not an integer"):
        validate_config(with_change("grid.learning_rates", {"sixty": [0.1]}), SCHEMA)
    # one list is still every batch size's
    assert validate_config(with_change("grid.learning_rates", [0.1, 0.2]), SCHEMA)["grid"]["learning_rates"] == [0.1, 0.2]


def test_defaults_are_filled():
    config = validate_config(
        {
            "grid": {"batch_sizes": [8], "learning_rates": [0.1], "seeds": [0]},
            "data": {},
            "train": {},
            "report": {},
        },
        SCHEMA,
    )
    assert config["train"]["model"] == "mlp"
    assert config["grid"]["optimizers"] == ["sgd"] and config["train"]["schedule"] == "constant"
    assert config["optimizers"]["momentum"] == {"momentum": 0.9, "weight_decay": 0.0}
    assert config["optimizers"]["nesterov"] == {"momentum": 0.9, "weight_decay": 0.0}
    assert config["optimizers"]["adam"]["beta2"] == 0.999 and "learning_rates" not in config["optimizers"]["adam"]
    assert config["data"]["mirrors"]


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("train.momentum", 0.9, "train.momentum is no longer read: say momentum as grid.optimizers: [momentum]"),
        ("train.optimizer", "sgd", "train.optimizer is no longer read: list optimizers in grid.optimizers"),
        ("solution2.momentum", [0.9], "solution2.momentum is no longer read: list solution2.optimizers"),
        ("optimizers.momentum.nesterov", True, "nesterov is no longer read: Nesterov momentum is an optimizer of its own"),
    ],
)
def test_keys_that_moved_say_where_they_went(path, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(with_change(path, value), SCHEMA)


def test_an_optimizer_needs_a_window_at_every_batch_size_it_trains_at():
    config = with_change("grid.optimizers", ["sgd", "adam"])
    config["optimizers"]["adam"] = {"learning_rates": {1: [1e-4], 4: [1e-4]}}
    with pytest.raises(ConfigError, match=r"optimizers\.adam\.learning_rates: adam trains at batch size 16 but has no window"):
        validate_config(config, SCHEMA)
    config["optimizers"]["adam"]["learning_rates"] = [1e-4, 1e-3]  # one list: every batch size
    assert validate_config(config, SCHEMA)["grid"]["optimizers"] == ["sgd", "adam"]
    config = with_change("remedies.optimizers", ["lars"])
    config["remedies"].update(enabled=True, batch_sizes=[1024, 8192])
    config["optimizers"]["lars"]["learning_rates"] = {1024: [1.0]}
    with pytest.raises(ConfigError, match=r"lars trains at batch size 8192 but has no window"):
        validate_config(config, SCHEMA)
    config["optimizers"]["lars"] = {}  # the grid's windows, which stop at 4096
    with pytest.raises(ConfigError, match=r"grid\.learning_rates: lars trains at batch size 8192"):
        validate_config(config, SCHEMA)


def test_numeric_strings_are_read_as_numbers():
    # PyYAML reads 1e-3 as a string; --config overrides arrive as strings.
    assert yaml.safe_load("lr: 1e-3")["lr"] == "1e-3"
    config = validate_config(with_change("grid.learning_rates", ["1e-3", 0.1, " 2 "]), SCHEMA)
    assert config["grid"]["learning_rates"] == [0.001, 0.1, 2.0]
    config = validate_config(with_change("train.epochs", "2"), SCHEMA)
    assert config["train"]["epochs"] == 2 and isinstance(config["train"]["epochs"], int)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("train.epochs", "three", r"train\.epochs: 'three' is not an integer"),
        ("train.epochs", 0, r"train\.epochs: 0 is less than the minimum of 1"),
        ("train.epochs", 2.5, r"train\.epochs: 2\.5 is not of type 'integer'"),
        ("grid.batch_sizes", [], r"grid\.batch_sizes: must list at least one value"),
        ("grid.batch_sizes", [0, 4], r"grid\.batch_sizes\[0\]: 0 is less than the minimum of 1"),
        ("grid.batch_sizes", [70000], r"grid\.batch_sizes\[0\]: 70000 is greater than the maximum of 60000"),
        (
            "grid.learning_rates",
            [-0.1],
            r"grid\.learning_rates\[0\]: -0\.1 is less than or equal to the minimum of 0",
        ),
        ("grid.learning_rates", ["fast"], r"grid\.learning_rates\[0\]: 'fast' is not a number"),
        ("grid.seeds", "0", r"grid\.seeds: '0' is not of type 'array'"),
        ("train.model", "resnet", r"train\.model: 'resnet' is not one of the allowed values: 'mlp', 'cnn'"),
        (
            "train.device",
            "tpu",
            r"train\.device: 'tpu' is not one of the allowed values: 'auto', 'cpu', 'cuda'",
        ),
            ("grid.optimizers", ["rmsprop"], r"grid\.optimizers\[0\]: 'rmsprop' is not one of the allowed values: 'sgd', 'momentum'"),
            ("train.schedule", "step", r"train\.schedule: 'step' is not one of the allowed values: 'constant'"),
        ("train.epoch", 3, r"config key train\.epoch is not allowed in train; allowed keys: .*epochs"),
        ("data.timeout_s", -1, r"data\.timeout_s: -1 is less than or equal to the minimum of 0"),
    ],
)
def test_bad_values_name_the_key(path, value, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(with_change(path, value), SCHEMA)


def test_unknown_group_and_missing_grid():
    config = dict(PARAMS, extra={"x": 1})
    with pytest.raises(ConfigError, match=r"config key extra is not allowed in \(top level\)"):
        validate_config(config, SCHEMA)
    config = {k: v for k, v in PARAMS.items() if k != "grid"}
    with pytest.raises(ConfigError, match=r"'grid' is a required property"):
        validate_config(config, SCHEMA)


def test_schema_is_strict_and_described():
    def walk(node, path):
        if node.get("type") == "object":
            # a mapping keyed by batch size or by a name of the user's takes any key; every
            # other group is closed
            assert node.get("additionalProperties") is False or node.get("x-integer-keys") or node.get("x-named-keys"), path
            for name, sub in node.get("properties", {}).items():
                assert sub.get("description"), f"{path}.{name} has no description"
                walk(sub, f"{path}.{name}")

    walk(SCHEMA, "")


def test_a_learning_rate_that_is_not_a_number_names_its_key():
    with pytest.raises(ConfigError, match=r"config key grid\.learning_rates\[1\]: nan is not a finite number"):
        validate_config(with_change("grid.learning_rates", [0.1, float("nan")]), SCHEMA)
    with pytest.raises(ConfigError, match=r"grid\.learning_rates\[0\]: '\.nan' is not a number"):
        validate_config(with_change("grid.learning_rates", [".nan"]), SCHEMA)


def test_lr_scaling_rules():
    assert scaled_lr(0.08, 64, 1024, "none") == 0.08
    assert scaled_lr(0.08, 64, 1024, "sqrt") == pytest.approx(0.32)
    assert scaled_lr(0.08, 64, 1024, "linear") == pytest.approx(1.28)
    assert scaled_lr(0.1, 256, 8192, "linear") == pytest.approx(3.2)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"remedies": {"enabled": True, "warmup_epochs": 5}},
            "remedies.warmup_epochs: 5 is longer than training",
        ),
        (
            {"solution2": {"enabled": True, "batch_size": 4, "splits": 8}},
            "solution2.splits: 8 slices cannot be cut",
        ),
        ({"measure": {"noise_batch": 1000, "noise_micro_batches": 3}}, "measure.noise_micro_batches: 3"),
    ],
)
def test_keys_that_must_agree_are_checked_together(change, message):
    config = {**PARAMS, "train": {**PARAMS["train"], "epochs": 3}, **change}
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate_config(config, SCHEMA)


def test_params_hash_is_stable_and_sensitive():
    a = validate_config(PARAMS, SCHEMA)
    b = validate_config(with_change("train.epochs", 4), SCHEMA)
    assert params_hash(a) == params_hash(validate_config(PARAMS, SCHEMA))
    assert params_hash(a) != params_hash(b)
