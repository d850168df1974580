"""The arithmetic of the prepared GPU check (benchmarks/gpu_check.py, the edge that runs it):
the study's config without Snakemake, each cell's training job, the comparison of CUDA cells
with the CPU's, the projection of a study's wall time from measured rates, and the targets.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from batchlab import study
from batchlab.analysis.stats import seed_interval
from batchlab.cells import Cell, job_fields
from batchlab.config import MNIST_TRAIN, fill_defaults, validate_config
from batchlab.train.plan import iterations_per_epoch

# the targets on one H200
TARGETS = {"step_us_bs1_s5_graphs": 50.0, "study_wall_s": 120.0, "full_projection_min": 60.0}


def merge(base: dict, overlay: dict) -> dict:
    """overlay on base, mapping into mapping, as Snakemake applies a --configfile."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def study_config(raw: dict, schema: dict) -> dict:
    """The config as the workflow sees it: validated where jsonschema is installed, else (a stock
    GPU environment) with the schema's defaults filled and the committed config trusted."""
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        return fill_defaults(raw, schema)
    return validate_config(raw, schema)


def job_settings(config: dict, cell: Cell) -> dict:
    """What the train rule hands the job of one cell (workflow/rules/train.smk's params)."""
    return {
        **job_fields(cell.name()),
        "seeds": tuple(study.seeds(config)),
        "train": study.train_params(config),
        "measure": study.measure_params(config),
        "optimizer": study.optimizer_settings(config, cell.recipe.optimizer),
    }


@dataclass(frozen=True)
class CellSteps:
    cell: str
    model: str
    batch_size: int
    seeds: int
    steps_per_seed: int  # epochs x ceil(N / b)


def cell_steps(config: dict) -> list[CellSteps]:
    """Each cell of the study's design and the steps every one of its seeds takes."""
    n_train = MNIST_TRAIN - config["train"].get("validation_size", 0)
    return [
        CellSteps(
            c.name(),
            config["train"]["model"],
            c.batch_size,
            len(study.seeds(config)),
            (c.recipe.epochs or config["train"]["epochs"]) * iterations_per_epoch(n_train, c.batch_size),
        )
        for c in study.design(config)
    ]


def projection(cells: list[CellSteps], ms_per_seed_step: dict[int, float], overhead: float, speedup: float) -> dict:
    """A study's wall time from measured rates, labelled as the projection it is: each cell's
    seed-steps at the measured ms per seed-step of its batch size (the nearest measured batch
    size where its own is missing), times `overhead` (a cell's wall time over its steps' time,
    measured on other cells), one cell at a time and with `speedup` from running several at once."""
    sizes = sorted(ms_per_seed_step)
    serial_s = 0.0
    for c in cells:
        nearest = min(sizes, key=lambda b: abs(math.log(b / c.batch_size)))
        serial_s += c.seeds * c.steps_per_seed * ms_per_seed_step[nearest] / 1000 * overhead
    return {
        "kind": "projection from measured per-seed-step rates, not a run",
        "cells": len(cells),
        "seed_steps": sum(c.seeds * c.steps_per_seed for c in cells),
        "overhead_factor": overhead,
        "one_at_a_time_min": serial_s / 60,
        "several_at_once_speedup": speedup,
        "several_at_once_min": serial_s / 60 / speedup,
    }


def compare_with_cpu(cuda: list[dict], cpu: list[dict], keys=("val_loss", "val_acc")) -> dict:
    """Each cell's CUDA seeds (rows: cell, seed, status, val_loss, val_acc, ...) against its CPU
    seeds: the CUDA seeds' mean inside the CPU seeds' 95% prediction interval (batchlab.analysis.stats
    seed_interval), per key; cells whose seeds did not all finish are counted apart."""
    by_cell: dict[str, dict[str, list[dict]]] = {}
    for side, rows in (("cuda", cuda), ("cpu", cpu)):
        for row in rows:
            by_cell.setdefault(row["cell"], {"cuda": [], "cpu": []})[side].append(row)
    out = {"compared": 0, "within": 0, "outside": [], "not_finished": [], "missing_on_cpu": []}
    for cell, sides in sorted(by_cell.items()):
        if not sides["cuda"]:
            continue
        if not sides["cpu"]:
            out["missing_on_cpu"].append(cell)
            continue
        if any(r["status"] != "ok" for r in sides["cuda"] + sides["cpu"]):
            out["not_finished"].append(cell)
            continue
        out["compared"] += 1
        misses = {}
        for key in keys:
            lo, hi = seed_interval([r[key] for r in sides["cpu"]])
            value = sum(r[key] for r in sides["cuda"]) / len(sides["cuda"])
            if not lo <= value <= hi:
                misses[key] = {"cuda_mean": value, "cpu_interval": [lo, hi]}
        if misses:
            out["outside"].append({"cell": cell, **misses})
        else:
            out["within"] += 1
    return out


def verdict(measured: float | None, target: float) -> dict:
    """A target's verdict: met, or missed by how much (measured / target)."""
    if measured is None or not math.isfinite(measured):
        return {"target": target, "measured": None, "met": None, "note": "not measured"}
    return {"target": target, "measured": measured, "met": measured <= target, "times_target": measured / target}


def seed_rows(metrics: dict) -> list[dict]:
    """A finished cell's seeds (its metrics.json) as rows for compare_with_cpu."""
    return [
        {
            "cell": metrics["cell"],
            "seed": s["seed"],
            "status": s["status"],
            **{k: s.get(f"final_{k}") for k in ("train_loss", "val_loss", "val_acc", "test_acc")},
        }
        for s in metrics["seeds"]
    ]
