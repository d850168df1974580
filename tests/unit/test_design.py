"""The study's design in one place: cell names, recipes, groups, roles."""

from pathlib import Path

import pytest
import yaml

from batchlab.cells import Cell, Recipe, Role, format_lr
from batchlab.config import ConfigError, validate_config
from batchlab.study import (
    design,
    gradient_reference,
    rerun_folders,
    roles_table,
    solution2_pairs,
    train_priority,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/params.schema.yaml").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def test_cell_names_are_canonical_and_carry_no_seed():
    assert format_lr(0.005) == "0.005"
    assert format_lr(1.28) == "1.28"
    assert format_lr(1e-3) == "0.001"
    assert format_lr(2) == "2"
    assert format_lr(1e-12) == repr(1e-12)
    assert Cell(64, 0.32).name() == "bs64_lr0.32"
    config = validate_config(PARAMS, SCHEMA)
    names = [c.name() for c in design(config) if c.in_group("grid")]
    grid = PARAMS["grid"]
    assert len(names) == len(set(names)) == sum(len(grid["learning_rates"][b]) for b in grid["batch_sizes"])


def test_each_batch_size_trains_its_own_window_of_lrs():
    windows = {64: [0.08, 0.32], 1024: [0.32, 0.64, 1.28]}
    config = small_config(grid={"batch_sizes": [64, 1024], "learning_rates": windows, "seeds": [0]})
    grid = sorted((c.batch_size, c.lr) for c in design(config) if c.in_group("grid"))
    assert grid == [(64, 0.08), (64, 0.32), (1024, 0.32), (1024, 0.64), (1024, 1.28)]


def test_names_and_recipes_round_trip_and_reject_nonsense():
    assert Recipe().suffix() == ""
    assert Recipe(optimizer="momentum", warmup_epochs=1, splits=8).suffix() == "_momentum_w1_k8"
    assert Recipe.parse("_w0.5_k4") == Recipe(warmup_epochs=0.5, splits=4)
    assert Recipe(optimizer="sgd").suffix() == ""  # plain SGD is the unnamed default
    for name in ("adam", "adamw", "lars", "lamb"):
        assert Recipe.parse(f"_{name}_e48") == Recipe(optimizer=name, epochs=48)
    with pytest.raises(ConfigError, match="_k8_w1"):
        Recipe.parse("_k8_w1")  # not in canonical order
    with pytest.raises(ConfigError, match="recipe '_m0.9' is not understood"):
        Recipe.parse("_m0.9")  # momentum is an optimizer now: _momentum
    cell = Cell.parse("bs1024_lr0.08_momentum_k8")
    assert cell == Cell(1024, 0.08, Recipe(optimizer="momentum", splits=8)) and cell.name() == "bs1024_lr0.08_momentum_k8"
    with pytest.raises(ConfigError, match="recipe '_s0' is not understood"):
        Cell.parse("bs64_lr0.1_s0")  # an old, per-seed name
    with pytest.raises(ConfigError, match="not a cell name"):
        Cell.parse("lr0.1")


def small_config(**overrides):
    base = {
        "grid": {"batch_sizes": [64, 1024], "learning_rates": [0.08, 0.32], "seeds": [0, 1]},
        "train": {"epochs": 2},
        "remedies": {"enabled": True, "batch_sizes": [1024], "scaling": ["none", "sqrt"], "warmup_epochs": 0.5},
        "solution2": {"enabled": True, "batch_size": 1024, "splits": 4, "lr": 0.08, "optimizers": ["sgd", "momentum"]},
        "report": {},
    }
    return validate_config({**base, **overrides}, SCHEMA)


def test_remedy_and_solution2_cells_extend_the_grid_once_each_with_every_role():
    cells = design(small_config())
    names = [c.name() for c in cells]
    assert len(names) == len(set(names))
    by_group = {}
    for c in cells:
        by_group.setdefault(c.group, []).append(c.name())
    assert len(by_group["grid"]) == 4
    # 1024 at 0.08 and 0.32 (sqrt) without warm-up are grid cells already: they play both roles
    assert by_group["remedies"] == ["bs1024_lr0.08_w0.5", "bs1024_lr0.32_w0.5"]
    assert by_group["solution2"] == ["bs1024_lr0.08_k4", "bs1024_lr0.08_momentum", "bs1024_lr0.32_momentum", "bs1024_lr0.08_momentum_k4"]
    shared = {c.name(): c for c in cells}["bs1024_lr0.08"]
    assert shared.roles == (
        Role("grid", "plain"),
        Role("remedies", "none scaling"),
        Role("solution2", "momentum 0: plain, lr 0.08"),
    )
    table = roles_table(small_config())
    assert {"cell": "bs1024_lr0.32", "group": "solution2", "variant": "momentum 0: plain, lr 0.32 (k × lr)"} in table
    assert solution2_pairs(small_config()) == [
        ("bs1024_lr0.08_k4", "bs1024_lr0.32", 0.0),
        ("bs1024_lr0.08_momentum_k4", "bs1024_lr0.32_momentum", 0.9),
    ]
    off = small_config(remedies={"enabled": False}, solution2={"enabled": False})
    assert {c.group for c in design(off)} == {"grid"} and solution2_pairs(off) == []


def test_the_optimizer_axis_trains_each_optimizer_over_its_own_windows():
    config = small_config(
        grid={"batch_sizes": [64, 1024], "learning_rates": [0.08, 0.32], "seeds": [0], "optimizers": ["sgd", "adam"]},
        optimizers={"adam": {"learning_rates": {64: [0.001], 1024: [0.004, 0.008]}}, "lars": {"learning_rates": [2, 4]}},
        remedies={"enabled": True, "batch_sizes": [1024], "scaling": ["none"], "optimizers": ["lars"]},
        solution2={"enabled": False},
    )
    cells = {c.name(): c for c in design(config)}
    grid = sorted(n for n, c in cells.items() if c.in_group("grid"))
    assert grid == ["bs1024_lr0.08", "bs1024_lr0.32", "bs64_lr0.08", "bs64_lr0.32"]  # the first optimizer's
    compared = sorted(n for n, c in cells.items() if c.in_group("optimizers"))
    assert set(compared) == {*grid, "bs1024_lr0.004_adam", "bs1024_lr0.008_adam", "bs64_lr0.001_adam"}
    assert cells["bs64_lr0.001_adam"].roles == (Role("optimizers", "adam"),)
    assert cells["bs64_lr0.08"].roles == (Role("grid", "plain"), Role("optimizers", "sgd"))
    lars = [c for c in cells.values() if c.recipe.optimizer == "lars"]
    assert [(c.name(), c.variant) for c in lars] == [("bs1024_lr2_lars", "LARS, lr 2"), ("bs1024_lr4_lars", "LARS, lr 4")]
    assert all(c.group == "remedies" for c in lars)


def test_seeds_do_not_change_the_cells():
    one, five = small_config(), small_config(grid={"batch_sizes": [64, 1024], "learning_rates": [0.08, 0.32], "seeds": [0, 1, 2, 3, 4]})
    assert [c.name() for c in design(one)] == [c.name() for c in design(five)]


def test_long_runs_and_the_cells_the_checkpoint_reads_train_first():
    """The scheduler's order: the long runs, and batch 1024's grid cells (the equal-updates
    checkpoint reads them), before the rest, so the 48-epoch run trains beside the grid."""
    config = validate_config(PARAMS, SCHEMA)
    first = {c.name() for c in design(config) if train_priority(config, c.name()) > 0}
    assert first == {c.name() for c in design(config) if c.recipe.epochs or (c.batch_size == 1024 and c.in_group("grid"))}
    assert "bs1_lr0.02_e10" in first and "bs1024_lr0.64" in first and "bs64_lr0.16" not in first
    assert train_priority(config, "bs1024_lr0.64_e48") == 1
    off = validate_config({**PARAMS, "equal_updates": {"enabled": False}}, SCHEMA)
    assert train_priority(off, "bs1024_lr0.64") == 0


def test_the_gradient_probe_trains_like_the_studys_cells():
    config = validate_config({**PARAMS, "train": {**PARAMS["train"], "init_jitter": 1e-7}}, SCHEMA)
    ref = gradient_reference(config)
    assert ref["init_jitter"] == 1e-7 and ref["seeds"] == tuple(config["grid"]["seeds"])
    assert ref["validation_size"] == config["train"]["validation_size"] and ref["model"] == config["train"]["model"]


def test_a_rerun_that_is_not_there_is_named_with_what_to_do(tmp_path):
    (tmp_path / "studies" / "seeds-10-19").mkdir(parents=True)
    for name in ("analysis.json", "best_lr.csv"):
        (tmp_path / "studies" / "seeds-10-19" / name).write_text("{}")
    config = {"report": {"reruns": ["studies/seeds-10-19", "studies/init-jitter"]}}
    with pytest.raises(ConfigError, match=r"report.reruns lists studies/init-jitter, which has no analysis.json or best_lr.csv.*OPT_CONFIG=config/init-jitter.yaml"):
        rerun_folders(config, tmp_path)
    assert rerun_folders({"report": {"reruns": ["studies/seeds-10-19"]}}, tmp_path) == ["studies/seeds-10-19"]
    assert rerun_folders({"report": {}}, tmp_path) == []


def test_the_full_study_config_is_valid_and_as_documented():
    """config/full.yaml, deep-merged over params.yaml as --configfile does: the cnn, five seeds,
    the complete grid, a 99% target."""
    full = yaml.safe_load((REPO / "config" / "full.yaml").read_text())
    merged = {k: {**PARAMS.get(k, {}), **full.get(k, {})} for k in set(PARAMS) | set(full)}
    config = validate_config(merged, SCHEMA)
    assert config["train"]["model"] == "cnn" and len(config["grid"]["seeds"]) == 5
    assert config["report"]["target_val_acc"] == 0.99
    assert len([c for c in design(config) if c.in_group("grid")]) == 14 * 14
    assert {c.group for c in design(config)} == {"grid", "remedies", "solution2", "late_blowup"}
    assert {c.recipe.optimizer for c in design(config) if c.group == "remedies"} == {"sgd", "lars", "lamb"}


def test_solution2_gets_its_own_window_of_learning_rates():
    sol = {"enabled": True, "batch_size": 1024, "splits": 4, "lr": 0.08, "learning_rates": [0.04, 0.08], "optimizers": ["sgd", "momentum"]}
    names = [c.name() for c in design(small_config(solution2=sol)) if c.in_group("solution2")]
    split = sorted(n for n in names if n.endswith("_k4"))
    assert split == ["bs1024_lr0.04_k4", "bs1024_lr0.04_momentum_k4", "bs1024_lr0.08_k4", "bs1024_lr0.08_momentum_k4"]
    assert len(names) == len(set(names)) == 8  # plus plain training at lr and k x lr, per momentum


def test_equal_updates_runs_get_the_reference_updates_in_whole_epochs():
    from batchlab.study import equal_updates_cells, equal_updates_plan, grid_cells_at

    eq = {"enabled": True, "batch_sizes": [1024, 4096], "reference_batch_size": 64}
    config = small_config(equal_updates=eq, train={"epochs": 3, "validation_size": 10000})
    (run,) = equal_updates_plan(config)  # 4096 is not in the grid: its lr cannot be chosen
    assert (run.batch_size, run.epochs, run.updates, run.reference_updates) == (1024, 48, 2352, 2346)
    (cell,) = equal_updates_cells(config, {"1024": 0.32})
    assert cell.name() == "bs1024_lr0.32_e48" and Cell.parse(cell.name()) == cell
    assert cell.group == "equal_updates" and "2,346" in cell.variant
    assert [c.name() for c in grid_cells_at(config, 1024)] == ["bs1024_lr0.08", "bs1024_lr0.32"]
    assert {r["group"] for r in roles_table(config, {"1024": 0.32})} >= {"equal_updates"}
    assert equal_updates_plan(small_config(equal_updates={**eq, "reference_batch_size": 16})) == []
    assert equal_updates_plan(small_config(equal_updates={**eq, "enabled": False})) == []


def test_an_equal_updates_batch_no_larger_than_its_reference_is_refused():
    eq = {"enabled": True, "batch_sizes": [64, 1024], "reference_batch_size": 64}
    with pytest.raises(ConfigError, match=r"equal_updates.batch_sizes: \[64\] are not larger than"):
        small_config(equal_updates=eq)
