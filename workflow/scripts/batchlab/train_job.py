"""One training job: train a cell and write its outputs; resumes from its last checkpoint.

The Snakemake adapter (workflow/scripts/train.py) calls run() through batchlab.warm, in a child
forked from the warm-start server or in its own process; both import this module afresh.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from batchlab import __version__
from batchlab.checkpoint import load_checkpoint, save_checkpoint
from batchlab.cli import run_step
from batchlab.config import cell_name, parse_recipe
from batchlab.data import load_prepared, to_device
from batchlab.devices import claim_gpu, cuda_available, pinned_by_scheduler, resolve_device
from batchlab.io import write_json, write_parquet
from batchlab.models import input_shape
from batchlab.train import PROBE_COLUMNS, CellConfig, iterations_per_epoch, train_cell


def run(
    *,
    log_path: str,
    wildcards: dict,
    train: dict,
    measure: dict,
    checkpoint: str,
    data_path: str,
    outputs: dict,
    threads: int,
    startup: dict,
) -> None:
    """Train the cell named by wildcards (bs, lr, seed, recipe) and write its outputs."""
    run_step(
        lambda log: main(log, wildcards, train, measure, checkpoint, data_path, outputs, threads, startup),
        log_path,
    )


def main(log, wildcards, train, measure, checkpoint, data_path, outputs, threads, startup):
    t_called = time.monotonic()
    recipe = parse_recipe(wildcards["recipe"])
    cfg = CellConfig(
        batch_size=int(wildcards["bs"]),
        lr=float(wildcards["lr"]),
        seed=int(wildcards["seed"]),
        epochs=train["epochs"],
        model=train["model"],
        optimizer=train["optimizer"],
        momentum=train["momentum"] if recipe["momentum"] is None else recipe["momentum"],
        weight_decay=train["weight_decay"],
        divergence_loss=train["divergence_loss"],
        warmup_epochs=recipe["warmup_epochs"],
        splits=recipe["splits"],
        **measure,
    )
    device = torch.device(resolve_device(train["device"], cuda_available()))
    if device.type == "cuda" and not pinned_by_scheduler(os.environ):
        # Snakemake counts GPUs (--resources gpu=N); which one this job gets is ours to pick
        lock_dir = os.environ.get("BATCHLAB_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "batchlab-gpu-locks")
        index, gpu_lock = claim_gpu(torch.cuda.device_count(), lock_dir)  # held until the job ends
        torch.cuda.set_device(index)
        device = torch.device("cuda", index)
    torch.set_num_threads(threads)
    data = to_device(load_prepared(data_path), input_shape(cfg.model), device)
    t_data = time.monotonic()
    name = cell_name(cfg.batch_size, cfg.lr, cfg.seed, wildcards["recipe"])
    log(f"cell {name}: {cfg} on {device} with {threads} thread(s)")
    overhead = startup_seconds(startup, t_called, t_data)
    log(startup_line(startup, overhead))

    resume = load_checkpoint(checkpoint, cfg)
    result = train_cell(
        cfg,
        data,
        device,
        resume=resume,
        on_epoch_end=lambda state: save_checkpoint(checkpoint, cfg, state),
        log=log,
    )
    t_trained = time.monotonic()
    if result.first_step_seconds is not None:
        log(f"first step {result.first_step_seconds:.3f} s (the steps after it: see the epoch lines)")
    ipe = iterations_per_epoch(data.n_train, cfg.batch_size)
    steps = len(result.losses)
    write_parquet(
        outputs["losses"],
        pd.DataFrame(
            {
                "step": range(1, steps + 1),
                "epoch": result.epoch_of_step,
                "loss": result.losses,
            }
        ),
    )
    write_parquet(
        outputs["epochs"],
        pd.DataFrame(
            result.epochs,
            columns=[
                "epoch",
                "iterations",
                "samples",
                "seconds",
                "samples_per_s",
                "ms_per_step",
                "running_loss",
                "train_loss",
                "train_acc",
                "test_loss",
                "test_acc",
                "top_class_share",
            ],
        ),
    )
    write_parquet(outputs["probes"], pd.DataFrame(result.probes, columns=PROBE_COLUMNS))
    write_json(
        outputs["metrics"],
        {
            **result.summary(),
            "cell": name,
            "recipe": wildcards["recipe"],
            "iterations_per_epoch": ipe,
            "device": str(device),
            "threads": threads,
            "resumed_from_epoch": resume.epoch if resume else None,
            "train_seconds": float(sum(row["seconds"] for row in result.epochs)),
            "start": startup["mode"],
            "overhead_seconds": {
                **overhead,
                "first_step": result.first_step_seconds,
                "train_and_eval": t_trained - t_data,
            },
            "process": process_usage(),
            "versions": {"batchlab": __version__, "torch": torch.__version__},
        },
    )
    log(f"cell {name}: {result.status}" + (f" ({result.stop_reason})" if result.stop_reason else ""))
    Path(checkpoint).unlink(missing_ok=True)  # finished: the outputs are the record


def process_usage() -> dict:
    """This process's peak resident memory and CPU time so far. Snakemake's benchmark of a warm
    job measures its client, which waits; this is the job's own (a forked job's resident memory
    counts the pages it shares with the server)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "cpu_seconds": usage.ru_utime + usage.ru_stime}


def startup_seconds(startup: dict, called: float, data_loaded: float) -> dict:
    """A job's start-up, in seconds: its process, the hand-off to a warm child, imports, data."""
    handoff = startup["child_start"] - startup["client_start"] if startup["mode"] == "warm" else 0.0
    return {
        "process_start_to_script": startup.get("process_age_s"),
        "handoff": handoff,
        "imports": startup["imports_s"],
        "data_load": data_loaded - called,
    }


def startup_line(startup: dict, overhead: dict) -> str:
    how = (
        "warm (forked from the warm-start server)"
        if startup["mode"] == "warm"
        else f"cold ({startup['why_cold']})"
    )
    parts = [
        f"{label} {overhead[key]:.2f} s" for key, label in STARTUP_LABELS if overhead.get(key) is not None
    ]
    total = sum(v for v in overhead.values() if v is not None)
    return f"start-up: {how}: " + ", ".join(parts) + f"; {total:.2f} s in all"


STARTUP_LABELS = (
    ("process_start_to_script", "process start"),
    ("handoff", "hand-off"),
    ("imports", "imports"),
    ("data_load", "data load"),
)
