"""The GPU check's arithmetic (batchlab.bench.gpu_check), on synthetic inputs whose answers are known:
the config as the workflow sees it without Snakemake, each cell's job, the CUDA-against-CPU
verdict both ways, the projection, the targets."""

import math
from pathlib import Path

import pytest
import yaml

from batchlab import study
from batchlab.analysis.stats import seed_interval
from batchlab.bench import gpu_check as check
from batchlab.config import fill_defaults, validate_config

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/params.schema.yaml").read_text())


def params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_filling_defaults_without_jsonschema_gives_what_validation_gives_for_the_committed_configs():
    for overlay in ({}, yaml.safe_load((ROOT / "config/full.yaml").read_text())):
        raw = check.merge(params(), overlay)
        assert fill_defaults(raw, SCHEMA) == validate_config(raw, SCHEMA)


def test_an_overlay_merges_mapping_into_mapping_and_replaces_the_rest():
    base = {"grid": {"batch_sizes": [1, 2], "seeds": [0]}, "train": {"epochs": 3}}
    merged = check.merge(base, {"grid": {"batch_sizes": [8]}, "train": {"model": "cnn"}})
    assert merged == {"grid": {"batch_sizes": [8], "seeds": [0]}, "train": {"epochs": 3, "model": "cnn"}}
    assert base["grid"]["batch_sizes"] == [1, 2]  # the base is left alone


def test_each_cell_gets_what_the_train_rule_hands_its_job():
    raw = params()
    raw["remedies"]["enabled"] = True  # the huge-batch league's cells (config/huge-batch-cpu.yaml)
    config = validate_config(raw, SCHEMA)
    cells = {c.name(): c for c in study.design(config)}
    lars = check.job_settings(config, cells["bs1024_lr4_lars"])
    assert lars["seeds"] == tuple(config["grid"]["seeds"])
    assert lars["optimizer"] == {"momentum": 0.9, "trust_coefficient": 0.001, "weight_decay": 0.0}
    assert "threads" not in lars["train"] and lars["measure"]["noise_at_val_acc"] == config["report"]["target_val_acc"]


def rows(cell, values, key="val_loss", status="ok"):
    return [{"cell": cell, "seed": i, "status": status, key: v, "val_acc": 0.9} for i, v in enumerate(values)]


def test_cuda_cells_inside_the_cpu_seed_interval_pass_and_outside_it_are_named():
    cpu = rows("a", [0.30, 0.31, 0.29, 0.30, 0.32]) + rows("b", [0.30, 0.31, 0.29, 0.30, 0.32])
    cuda = rows("a", [0.305, 0.30, 0.31, 0.30, 0.31]) + rows("b", [0.50, 0.52, 0.51, 0.49, 0.50])
    out = check.compare_with_cpu(cuda, cpu)
    assert (out["compared"], out["within"]) == (2, 1)
    assert [o["cell"] for o in out["outside"]] == ["b"] and "val_loss" in out["outside"][0]
    lo, hi = seed_interval([0.30, 0.31, 0.29, 0.30, 0.32])
    assert lo < 0.30 < hi < 0.50


def test_cells_whose_seeds_did_not_finish_or_have_no_cpu_run_are_counted_apart():
    cpu = rows("a", [0.3, 0.31], status="diverged") + rows("c", [0.3, 0.31])
    cuda = rows("a", [0.3, 0.31]) + rows("b", [0.3, 0.31]) + rows("c", [0.3, 0.31])
    out = check.compare_with_cpu(cuda, cpu)
    assert out["not_finished"] == ["a"] and out["missing_on_cpu"] == ["b"] and out["compared"] == 1


def test_the_projection_is_seed_steps_at_the_measured_rates_times_the_overhead():
    cells = [check.CellSteps("x", "cnn", 64, 5, 1000), check.CellSteps("y", "cnn", 100, 2, 500)]
    p = check.projection(cells, {64: 0.6, 256: 3.0}, overhead=1.5, speedup=2.0)
    serial_s = (5 * 1000 * 0.6 + 2 * 500 * 0.6) / 1000 * 1.5  # 100 is nearer 64 than 256 on a log scale
    assert math.isclose(p["one_at_a_time_min"], serial_s / 60)
    assert math.isclose(p["several_at_once_min"], serial_s / 120)
    assert p["seed_steps"] == 6000 and "projection" in p["kind"]


def test_cell_steps_follow_the_study_design():
    config = validate_config(check.merge(params(), yaml.safe_load((ROOT / "config/full.yaml").read_text())), SCHEMA)
    steps = {c.cell: c for c in check.cell_steps(config)}
    n_train = 60000 - config["train"]["validation_size"]
    assert steps["bs64_lr0.04"].steps_per_seed == config["train"]["epochs"] * -(-n_train // 64)
    assert len(steps) == len(study.design(config)) and {c.model for c in steps.values()} == {"cnn"}


@pytest.mark.parametrize(("measured", "met"), [(40.0, True), (50.0, True), (75.0, False), (None, None)])
def test_a_target_is_met_or_missed_by_how_much(measured, met):
    v = check.verdict(measured, 50.0)
    assert v["met"] is met
    if measured is not None:
        assert math.isclose(v["times_target"], measured / 50.0)
