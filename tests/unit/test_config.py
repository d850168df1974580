from pathlib import Path

import pytest
import yaml

from batchlab.config import (
    ConfigError,
    cell_name,
    cells,
    format_lr,
    params_hash,
    parse_recipe,
    recipe_suffix,
    scaled_lr,
    validate_config,
)

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
    assert min(grid["batch_sizes"]) == 1 and max(grid["batch_sizes"]) >= 1024
    assert min(grid["learning_rates"]) <= 0.005 and max(grid["learning_rates"]) >= 1.28
    assert 0.02 in grid["learning_rates"]
    assert config["train"]["epochs"] >= 3


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
    assert config["train"]["momentum"] == 0.0
    assert config["data"]["mirrors"]


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
        ("train.optimizer", "adam", r"train\.optimizer: 'adam' is not one of the allowed values: 'sgd'"),
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
            assert node.get("additionalProperties") is False, path
            for name, sub in node.get("properties", {}).items():
                assert sub.get("description"), f"{path}.{name} has no description"
                walk(sub, f"{path}.{name}")

    walk(SCHEMA, "")


def test_cell_names_are_canonical():
    assert format_lr(0.005) == "0.005"
    assert format_lr(1.28) == "1.28"
    assert format_lr(1e-3) == "0.001"
    assert format_lr(2) == "2"
    assert format_lr(1e-12) == repr(1e-12)
    assert cell_name(64, 0.32, 0) == "bs64_lr0.32_s0"
    grid = validate_config(PARAMS, SCHEMA)
    names = [c["name"] for c in cells(grid) if c["group"] == "grid"]
    assert (
        len(names)
        == len(set(names))
        == (
            len(PARAMS["grid"]["batch_sizes"])
            * len(PARAMS["grid"]["learning_rates"])
            * len(PARAMS["grid"]["seeds"])
        )
    )


def test_recipes_round_trip_and_reject_nonsense():
    assert recipe_suffix() == ""
    assert recipe_suffix(warmup_epochs=1, momentum=0.9, splits=8) == "_w1_m0.9_k8"
    assert parse_recipe("_w0.5_k4") == {"warmup_epochs": 0.5, "momentum": None, "splits": 4}
    assert parse_recipe("") == {"warmup_epochs": 0.0, "momentum": None, "splits": 1}
    assert parse_recipe("_m0") == {"warmup_epochs": 0.0, "momentum": 0.0, "splits": 1}
    with pytest.raises(ConfigError, match="_k8_w1"):
        parse_recipe("_k8_w1")  # not in canonical order
    assert cell_name(1024, 0.08, 1, "_m0.9_k8") == "bs1024_lr0.08_s1_m0.9_k8"


def test_lr_scaling_rules():
    assert scaled_lr(0.08, 64, 1024, "none") == 0.08
    assert scaled_lr(0.08, 64, 1024, "sqrt") == pytest.approx(0.32)
    assert scaled_lr(0.08, 64, 1024, "linear") == pytest.approx(1.28)
    assert scaled_lr(0.1, 256, 8192, "linear") == pytest.approx(3.2)


def test_remedy_and_solution2_cells_extend_the_grid_without_duplicates():
    config = validate_config(
        {
            "grid": {"batch_sizes": [64, 1024], "learning_rates": [0.08, 0.32], "seeds": [0]},
            "train": {"epochs": 2},
            "remedies": {
                "enabled": True,
                "batch_sizes": [1024],
                "scaling": ["none", "sqrt"],
                "warmup_epochs": 0.5,
            },
            "solution2": {"enabled": True, "batch_size": 1024, "splits": 4, "lr": 0.08, "momentum": [0, 0.9]},
            "report": {},
        },
        SCHEMA,
    )
    by_group = {}
    for c in cells(config):
        by_group.setdefault(c["group"], []).append(c["name"])
    assert len(by_group["grid"]) == 4
    # 1024 at 0.08 and 0.32 (sqrt) without warm-up are grid cells already
    assert by_group["remedies"] == ["bs1024_lr0.08_s0_w0.5", "bs1024_lr0.32_s0_w0.5"]
    # plain 1024 at lr and at k x lr = 0.32 without momentum are grid cells already
    assert by_group["solution2"] == [
        "bs1024_lr0.08_s0_k4",
        "bs1024_lr0.08_s0_m0.9_k4",
        "bs1024_lr0.08_s0_m0.9",
        "bs1024_lr0.32_s0_m0.9",
    ]
    off = validate_config({**config, "remedies": {"enabled": False}, "solution2": {"enabled": False}}, SCHEMA)
    assert {c["group"] for c in cells(off)} == {"grid"}


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


def test_the_full_study_config_is_valid_and_as_documented():
    """config/full.yaml, deep-merged over params.yaml as --configfile does: the cnn, five seeds,
    the complete grid, a 99% target."""
    full = yaml.safe_load((REPO / "config" / "full.yaml").read_text())
    merged = {k: {**PARAMS.get(k, {}), **full.get(k, {})} for k in set(PARAMS) | set(full)}
    config = validate_config(merged, SCHEMA)
    assert config["train"]["model"] == "cnn" and len(config["grid"]["seeds"]) == 5
    assert config["report"]["target_test_acc"] == 0.99
    grid = [c for c in cells(config) if c["group"] == "grid"]
    assert len(grid) == 14 * 14 * 5
    assert {c["group"] for c in cells(config)} == {"grid", "remedies", "solution2"}
