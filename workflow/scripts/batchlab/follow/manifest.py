"""The study a run was started with, written once at its start (logs/manifest.json): every
cell the design names, with its groups, the runs planned after the grid, and the validated
config, so that `batchlab status` and `batchlab peek` count the cells of --configfile and
--config overrides too, without asking Snakemake."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from batchlab import BatchlabError, __version__
from batchlab.io import write_json
from batchlab.study import design, equal_updates_plan, seeds

MANIFEST = Path("logs/manifest.json")
WINDOW_SECONDS = 10.0  # a training job logs a progress line at least this often (batchlab.train.loop)


def manifest(
    config: dict, cores: int | None = None, to_run: list[str] | None = None, later_rerun: bool = True, gpu_jobs: bool = False
) -> dict:
    """to_run: the cells this run (re)trains, as Snakemake planned them (None: not known); a
    finished cell among them whose outputs predate the run is not done yet. later_rerun: the
    equal-updates checkpoint reruns, so the runs after it are retrained too. gpu_jobs:
    training jobs hold a GPU each (the cores do not bound how many run)."""
    epochs = config["train"]["epochs"]
    cells = [
        {
            "cell": c.name(),
            "groups": sorted({r.group for r in c.roles}),
            "variant": c.variant,
            "batch_size": c.batch_size,
            "lr": c.lr,
            "epochs": c.recipe.epochs or epochs,
        }
        for c in design(config)
    ]
    later = [
        {"group": "equal_updates", "batch_size": p.batch_size, "epochs": p.epochs, "suffix": p.recipe.suffix()}
        for p in equal_updates_plan(config)
    ]
    return {
        "batchlab": __version__,
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "started_unix": time.time(),
        "to_run": to_run,
        "later_rerun": later_rerun,
        "gpu_jobs": gpu_jobs,
        "cores": cores,
        "seeds": seeds(config),
        "model": config["train"]["model"],
        "window_seconds": WINDOW_SECONDS,
        "cells": cells,
        "later": later,
        "config": config,
    }


def write_manifest(root: Path, config: dict, **kw) -> None:
    write_json(root / MANIFEST, manifest(config, **kw))


def read_manifest(root: Path) -> dict:
    """The manifest of the study under root, or a BatchlabError that says what to do."""
    path = root / MANIFEST
    if not path.is_file():
        raise BatchlabError(
            f"no study under {root.resolve()}: {MANIFEST} is missing (it is written when a run starts: `make study`,"
            " `snakemake --cores N` or `dvc repro`; run this from the project's folder or pass it)"
        )
    try:
        record = json.loads(path.read_text())
        record["cells"], record["config"]  # noqa: B018 (a manifest has both)
    except (ValueError, KeyError, TypeError):
        raise BatchlabError(f"{path} is not a batchlab manifest; start the study again to rewrite it") from None
    config = record["config"]
    # JSON wrote the batch sizes of lr windows as strings: the grid's and each optimizer's
    for group in [config.get("grid", {}), *(config.get("optimizers") or {}).values()]:
        windows = group.get("learning_rates") if isinstance(group, dict) else None
        if isinstance(windows, dict):
            group["learning_rates"] = {int(k): v for k, v in windows.items()}
    return record
