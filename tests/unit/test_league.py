"""The huge-batch league on synthetic studies whose answer is known: an arm better by
construction is decided for it, an arm no better is not; equal updates, epochs to the target
and the first-screen answer read off known curves."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from batchlab.analysis.league import accumulation, league
from batchlab.config import ConfigError, validate_config
from batchlab.study import design, league_arms

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/params.schema.yaml").read_text())
SEEDS = list(range(10))


def study_config(**remedies) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["grid"].update(batch_sizes=[64, 1024], learning_rates={64: [0.1, 0.2], 1024: [0.4, 0.8]}, seeds=SEEDS)
    raw["optimizers"]["adam"]["learning_rates"] = {1024: [0.001, 0.002]}
    raw["remedies"] = {
        "enabled": True, "batch_sizes": [1024], "reference_batch_size": 64, "reference_lr": 0.1,
        "scaling": ["linear"], "warmup_epochs": 1, "optimizers": ["adam"],
        "recipes": {"ramp": {"recipe": "_r256", "learning_rates": {1024: [0.4, 0.8]}}}, **remedies,
    }  # fmt: skip
    raw["report"]["reruns"] = []
    return validate_config(raw, copy.deepcopy(SCHEMA))


def synthetic(config: dict, final: dict, rng_seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """cells and probes: every cell of the design; a cell's seeds end at final[recipe or 'grid
    <b>'] + a seed effect shared by all cells + small noise, their validation curves rising
    linearly from 0.5 at step 0 to that at the last step (3 epochs; 50,000 images)."""
    rng = np.random.default_rng(rng_seed)
    seed_effect = rng.normal(0, 0.004, len(SEEDS))
    cells, probes = [], []
    for c in design(config):
        recipe = c.recipe.suffix()
        key = recipe or f"grid {c.batch_size}"
        acc = final.get((key, c.lr), final.get(key, 0.9))
        steps = 3 * -(-50000 // c.batch_size) + (40 if recipe == "_r256" else 0)
        for s in SEEDS:
            end = acc + seed_effect[s] + rng.normal(0, 0.0005)
            cells.append({
                "batch_size": c.batch_size, "lr": c.lr, "recipe": recipe, "seed": s, "status": "ok", "failed_to_learn": False,
                "final_val_acc": end, "final_test_acc": end, "steps": steps, "epochs_completed": 3, "ms_per_step": 2.0 if c.batch_size == 64 else 20.0,
                "group": c.group, "peak_memory_mb": 500.0, "epoch_seconds": 5.0,
            })  # fmt: skip
            for k in range(0, 31):
                step = steps * k / 30
                probes.append({"batch_size": c.batch_size, "lr": c.lr, "recipe": recipe, "seed": s,
                               "step": step, "epoch": 3 * k / 30, "val_acc": 0.5 + (end - 0.5) * k / 30})  # fmt: skip
    return pd.DataFrame(cells), pd.DataFrame(probes)


FINAL = {"grid 64": 0.97, ("grid 64", 0.2): 0.96, "grid 1024": 0.93, ("grid 1024", 0.8): 0.94, "_adam": 0.942, "_w1": 0.90, "_a256": 0.93}


def verdicts(result) -> dict:
    (table,) = result["batch_sizes"]
    return {(v["arm"], v["baseline"]): v["verdict"] for v in table["verdicts"]}


def test_an_arm_better_by_construction_wins_and_one_no_better_does_not():
    config = study_config()
    found = league(*synthetic(config, {**FINAL, "_r256": 0.955}), config)
    got = verdicts(found)
    # the ramp gains 1.5 points on tuned SGD (0.94 at its best lr, 0.8) and 1.3 on Adam
    # (0.942, the best standard optimizer)
    assert got[("ramp", "SGD")] == "supported" and got[("ramp", "Adam")] == "supported"
    # Adam's 0.2 points on SGD are consistent over the seeds: better, on the predicted side;
    # linear scaling + warm-up (0.90) is worse; a standard optimizer meets SGD alone
    assert got[("Adam", "SGD")] == "supported"
    assert got[("linear scaling + 1-epoch warm-up", "SGD")] == "not supported"
    assert ("Adam", "Adam") not in got and ("SGD", "Adam") not in got
    (table,) = found["batch_sizes"]
    arms = {e["arm"]: e for e in table["arms"]}
    assert arms["SGD"]["lr"] == 0.8 and arms["ramp"]["lr"] == 0.4  # chosen on validation
    assert table["answer"]["arm"] == "ramp"
    assert table["family_size"] == 2 * len(table["verdicts"])


def test_an_lr_at_which_a_seed_failed_is_not_chosen_and_the_failure_is_counted():
    """The ramp's best mean is at lr 0.8, where one seed diverged: lr 0.4 is chosen."""
    config = study_config()
    cells, probes = synthetic(config, {**FINAL, ("_r256", 0.8): 0.96, ("_r256", 0.4): 0.95})
    bad = (cells["recipe"] == "_r256") & (cells["lr"] == 0.8) & (cells["seed"] == 0)
    cells.loc[bad, "status"] = "diverged"
    (table,) = league(cells, probes, config)["batch_sizes"]
    ramp = next(e for e in table["arms"] if e["arm"] == "ramp")
    assert ramp["lr"] == 0.4 and ramp["failed"] == 0


def test_a_league_where_no_arm_is_better_decides_none_for_an_arm():
    config = study_config()
    flat = {"grid 64": 0.97, "grid 1024": 0.94, "_adam": 0.94, "_r256": 0.94, "_w1": 0.94}
    got = verdicts(league(*synthetic(config, flat, rng_seed=3), config))
    assert got and all(v in ("not supported", "inconclusive") for v in got.values()), got


def test_equal_updates_epochs_to_target_and_the_answer_read_off_known_curves():
    """The reference (batch 64 at lr 0.1, 0.97) rises linearly over its 2,346 steps; tuned SGD
    at 1024 (0.94) makes 147 updates, where the reference stands at 0.5 + 0.47 x 147 / 2346.
    The target is 0.97 less the 0.2-point margin; an arm that ends at 0.985 reaches 0.968 at
    epoch 3 x 0.468 / 0.485."""
    config = study_config()
    found = league(*synthetic(config, {**FINAL, "_r256": 0.985}), config)
    ref = found["reference"]
    assert ref["lr"] == 0.1 and ref["target"] == pytest.approx(0.968, abs=0.003)
    (table,) = found["batch_sizes"]
    arms = {e["arm"]: e for e in table["arms"]}
    sgd = arms["SGD"]
    assert sgd["updates"] == 147 and sgd["equal_updates"]["updates"] == 147
    assert sgd["equal_updates"]["gap"]["mean"] == pytest.approx(0.47 * 147 / 2346 - (0.94 - 0.5), abs=0.003)
    assert sgd["epochs_to_target"]["reached"] == 0  # 0.94 never reaches 0.97
    ramp = arms["ramp"]
    assert ramp["epochs_to_target"]["reached"] == 10
    assert ramp["epochs_to_target"]["median"] == pytest.approx(3 * 0.468 / 0.485, abs=0.05)
    answer = table["answer"]
    assert answer["arm"] == "ramp" and answer["gap"]["mean"] == pytest.approx(0.97 - 0.985, abs=0.003)
    # the reference needs about 0.468 / 0.47 of its 2,346 steps (the seeds that end above the
    # target), the ramp 0.468 / 0.485 of its 187: on hardware where a step costs the same, the
    # reference's 2 ms each, paired over the seeds where both reach it
    saved = answer["seconds_saved"]
    assert saved["mean"] == pytest.approx((2346 * 0.468 / 0.47 - 187 * 0.468 / 0.485) * 0.002, rel=0.05)
    assert saved["n"] == found["reference"]["steps_to_target"]["reached"] >= 5 and saved["lo"] < saved["mean"]
    assert ramp["epochs_to_target"]["ci"]["lo"] <= ramp["epochs_to_target"]["median"] <= ramp["epochs_to_target"]["ci"]["hi"]


def test_the_league_design_tunes_each_arm_over_its_window_and_rules_take_one_lr():
    config = study_config(micro_batch=256)
    arms = {a.name: a for a in league_arms(config, 1024)}
    assert [c.lr for c in arms["SGD"].cells] == [0.4, 0.8] and arms["SGD"].standard
    assert [c.name() for c in arms["ramp"].cells] == ["bs1024_lr0.4_r256", "bs1024_lr0.8_r256"]
    assert [c.name() for c in arms["linear scaling + 1-epoch warm-up"].cells] == ["bs1024_lr1.6_w1"]
    assert arms["Adam"].standard and not arms["ramp"].standard and arms["linear scaling"].kind == "rule"
    accumulated = [c.name() for c in design(config) if c.group == "accumulation"]
    assert accumulated == ["bs1024_lr0.4_a256"]  # the middle of the grid's window


def test_accumulation_rows_say_what_it_saves_and_that_the_update_is_the_same():
    config = study_config(micro_batch=256)
    cells, _ = synthetic(config, FINAL)
    cells.loc[cells["recipe"] == "_a256", "peak_memory_mb"] = 300.0
    cells.loc[cells["recipe"] == "_a256", "epoch_seconds"] = 6.0
    (row,) = accumulation(cells, config)
    assert row["micro_batch"] == 256 and row["peak_memory_mb"] == 300.0 and row["whole_peak_memory_mb"] == 500.0
    assert row["epoch_seconds"] == 6.0 and row["largest_val_acc_difference"] < 0.01


@pytest.mark.parametrize(
    "change, message",
    [
        ({"recipes": {"ramp": {"recipe": "_ramp", "learning_rates": {1024: [0.4]}}}}, "remedies.recipes.ramp.recipe: cell recipe '_ramp' is not understood"),
        ({"recipes": {"ramp": {"recipe": "_r256", "learning_rates": {4096: [0.4]}}}}, "remedies.recipes.ramp.learning_rates: no window for batch size 1024"),
        ({"micro_batch": 1024}, "remedies.micro_batch: 1024 is not smaller than the batch size 1024"),
        ({"reference_batch_size": 128}, "remedies.reference_batch_size: 128 is not in grid.batch_sizes"),
    ],
)
def test_a_bad_league_is_an_error_that_names_its_key(change, message):
    with pytest.raises(ConfigError, match=message):
        study_config(**change)
