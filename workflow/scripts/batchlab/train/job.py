"""One training job: every seed of one cell, trained together, and the cell's outputs written.

Phases: configure (the cell's CellConfig and device), load the data, take the seeds that are
already stored (batchlab.train.seed_store), train the others as one ensemble (resuming from the cell's
checkpoint), store them, write the outputs. Outputs hold every seed, with a `seed` column.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from batchlab import __version__
from batchlab.cli import process_age_s, run_step
from batchlab.closure import source_hash, trainer_code
from batchlab.data.tensors import load_prepared, to_device
from batchlab.io import write_json, write_parquet
from batchlab.train.cell_config import CellConfig, check_cell, make_config, seed_groups
from batchlab.train.checkpoint import load_checkpoint, save_checkpoint
from batchlab.train.devices import (
    claim_gpu,
    cuda_available,
    cuda_graphs,
    jobs_per_gpu,
    pinned_by_scheduler,
    resolve_device,
)
from batchlab.train.loop import train_cell
from batchlab.train.models import BN_VARIANT, input_shape
from batchlab.train.probes import PROBE_COLUMNS
from batchlab.train.records import EPOCH_COLUMNS, SeedResult
from batchlab.train.seed_store import SeedStore, file_hash, seed_key


@dataclass(frozen=True)
class Job:
    """What Snakemake hands a training job."""

    cell: str  # the cell's name, e.g. bs64_lr0.02 or bs1024_lr0.08_momentum_k8
    batch_size: int
    lr: float
    recipe: str  # its recipe's suffix, e.g. _momentum_k8 ("" for plain training)
    recipe_fields: dict  # the recipe parsed (batchlab.cells.job_fields): optimizer, bn, warmup_epochs, ...
    seeds: tuple[int, ...]
    train: dict  # the config group `train`
    measure: dict  # the config group `measure`
    optimizer: dict  # the settings of the cell's optimizer (batchlab.study.optimizer_settings)
    data_path: str
    outputs: dict  # losses, epochs, probes, metrics
    checkpoint: str
    store: str  # folder of this cell's stored seeds
    log_path: str
    threads: int = 1
    # the files whose contents key the stored seeds (the rule's code inputs); empty: the train/
    # and data/ modules this module imports, read from the source (batchlab.closure.trainer_code;
    # 0.08 s a job saved by passing them)
    code: tuple[str, ...] = ()


def run(job: Job) -> None:
    run_step(lambda log: main(job, log), job.log_path)


def cell_config(job: Job) -> CellConfig:
    train, recipe = job.train, job.recipe_fields
    return make_config(
        batch_size=job.batch_size,
        lr=job.lr,
        seeds=tuple(sorted(job.seeds)),
        epochs=recipe["epochs"] or train["epochs"],
        model=BN_VARIANT[train["model"]] if recipe["bn"] else train["model"],
        optimizer=recipe["optimizer"],
        **job.optimizer,
        schedule=train.get("schedule", "constant"),
        divergence_loss=train["divergence_loss"],
        validation_size=train.get("validation_size", 0),
        warmup_epochs=recipe["warmup_epochs"],
        splits=recipe["splits"],
        micro_batch=recipe["micro_batch"],
        ghost_batch=recipe["ghost_batch"],
        ramp_from=recipe["ramp_from"],
        ramp_every=recipe["ramp_every"],
        ramp_scaled=recipe["ramp_scaled"],
        init_jitter=train.get("init_jitter", 0.0),
        group_size=group_size(train.get("seeds_together") or {}, job.batch_size),
        **job.measure,
    )


def group_size(seeds_together: dict, batch_size: int) -> int:
    """Seeds trained together at this batch size: train.seeds_together's entry for it, else 0
    (all of the cell's at once)."""
    return int({int(b): n for b, n in seeds_together.items()}.get(batch_size, 0))


def pick_device(requested: str):
    """(device, lock): the lock on a claimed GPU must be held until the job ends."""
    device = torch.device(resolve_device(requested, cuda_available()))
    if device.type != "cuda" or pinned_by_scheduler(os.environ):
        return device, None
    # Snakemake counts GPUs (--resources gpu=N); which one this job gets is ours to pick
    lock_dir = os.environ.get("BATCHLAB_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "batchlab-gpu-locks")
    index, lock = claim_gpu(torch.cuda.device_count(), lock_dir, jobs_per_gpu(os.environ))
    torch.cuda.set_device(index)
    return torch.device("cuda", index), lock


def main(job: Job, log) -> None:
    t0, started = time.monotonic(), process_age_s()
    cfg = cell_config(job)
    check_cell(cfg)  # before the data are loaded: a bad cell fails at once
    graphs = cuda_graphs(os.environ)  # and so does a bad BATCHLAB_CUDA_GRAPHS
    device, _gpu_lock = pick_device(job.train["device"])
    torch.set_num_threads(job.threads)
    data = to_device(load_prepared(job.data_path), input_shape(cfg.model), device, cfg.validation_size)
    context = {
        "code": source_hash([Path(p) for p in job.code] or trainer_code()),
        "data": file_hash(job.data_path),
        "torch": torch.__version__,
        "device": device.type,
    }
    t_data = time.monotonic()
    log(f"cell {job.cell}: seeds {list(cfg.seeds)} on {device} with {job.threads} thread(s)")
    log(
        f"data: {data.n_train:,} training images, selection on the {data.selection_set} set"
        f" ({data.select_x.shape[0]:,} images), {data.test_x.shape[0]:,} test images"
    )
    startup = {"process_start_to_job": started, "data_load": t_data - t0}
    log(
        f"start-up: {started or float('nan'):.2f} s from process start to the job's code (Python,"
        f" Snakemake's preamble, imports), data load {t_data - t0:.2f} s"
    )

    store = SeedStore(job.store, log)
    stored = {s: store.get(s, seed_key(cfg.of_seed(s), context)) for s in cfg.seeds}
    kept = {s: hit for s, hit in stored.items() if hit is not None}
    if kept:
        log(f"seeds {sorted(kept)} are stored from an earlier run of this cell: not trained again")
    todo = tuple(s for s in cfg.seeds if s not in kept)
    fresh, extra = {}, {}
    if todo:
        fresh, extra = train_seeds(replace(cfg, seeds=todo), data, device, job, log, graphs)
        for seed in fresh.values():
            store.put(seed, seed_key(cfg.of_seed(seed.seed), context), extra)
    results = {**{s: r for s, (r, _) in kept.items()}, **fresh}
    extras = {**{s: e for s, (_, e) in kept.items()}, **{s: extra for s in fresh}}
    seeds = [results[s] for s in cfg.seeds]
    write_outputs(job, cfg, data.n_train, device, seeds, extras, startup)
    for s in seeds:
        log(f"cell {job.cell} seed {s.seed}: {s.status}" + (f" ({s.stop_reason})" if s.stop_reason else ""))
    Path(job.checkpoint).unlink(missing_ok=True)  # finished: the outputs are the record


def memory_mb(device: torch.device, peak: bool = True) -> float:
    """On CUDA the memory held by tensors (now, or its peak); on the CPU the process's peak
    resident set (getrusage), which only grows: read before and after training, the difference
    is what training added to the job's peak."""
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) if peak else torch.cuda.memory_allocated(device)) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def train_seeds(cfg: CellConfig, data, device, job: Job, log, graphs: bool = True) -> tuple[dict, dict]:
    resume = load_checkpoint(job.checkpoint, cfg, log)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = memory_mb(device, peak=False)
    t0 = time.monotonic()
    result = train_cell(
        cfg,
        data,
        device,
        resume=resume,
        on_epoch_end=lambda s: save_checkpoint(job.checkpoint, cfg, s),
        log=log,
        cuda_graphs=graphs,
    )
    if result.first_step_seconds is not None:
        log(f"first step {result.first_step_seconds:.3f} s (the steps after it: see the epoch lines)")
    log(f"peak memory {memory_mb(device):.0f} MiB ({before:.0f} MiB before training)")
    extra = {
        "ensemble_size": max(len(group) for group in seed_groups(cfg)),  # seeds trained together
        "step_implementation": result.step_implementation,
        "measure_seconds": result.measure_seconds,
        "first_step_seconds": result.first_step_seconds,
        "train_and_eval_seconds": time.monotonic() - t0,
        "resumed_from_epoch": result.resumed_from_epoch,
        "memory_before_training_mb": before,
        "peak_memory_mb": memory_mb(device),
        "device": str(device),
        "threads": job.threads,
    }
    return {s.seed: s for s in result.seeds}, extra


def write_outputs(job, cfg, n_train, device, seeds: list[SeedResult], extras: dict, startup: dict):
    plan = cfg.plan(n_train)
    ends = np.cumsum(plan.iters)  # the last step of each epoch
    losses = []
    for s in seeds:
        steps = np.arange(len(s.losses))
        epoch = np.minimum(np.searchsorted(ends, steps, side="right") + 1, cfg.epochs).astype(np.int32)
        losses.append(pd.DataFrame({"seed": s.seed, "step": steps + 1, "epoch": epoch, "loss": s.losses}))
    write_parquet(job.outputs["losses"], pd.concat(losses, ignore_index=True))
    epochs = [row for s in seeds for row in s.epochs]
    write_parquet(job.outputs["epochs"], pd.DataFrame(epochs, columns=EPOCH_COLUMNS))
    probes = [row for s in seeds for row in s.probes]
    write_parquet(job.outputs["probes"], pd.DataFrame(probes, columns=PROBE_COLUMNS))
    record = cfg.of_seed(0)
    del record["seed"]
    write_json(
        job.outputs["metrics"],
        {
            **record,
            "cell": job.cell,
            "recipe": job.recipe,
            "seeds": [{**s.summary(cfg.splits), **extras[s.seed]} for s in seeds],
            "iterations_per_epoch": plan.iters[-1],  # the last epoch's (a ramp's grow)
            "epoch_batch_sizes": list(plan.batch_sizes),
            "n_train": n_train,
            "selection_set": "test" if cfg.validation_size == 0 else "validation",
            "device": str(device),
            "threads": job.threads,
            "startup_seconds": startup,
            "versions": {"batchlab": __version__, "torch": torch.__version__},
        },
    )
