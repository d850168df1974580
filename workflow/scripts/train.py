"""Snakemake adapter: train one cell (see batchlab.train); resumes from its last checkpoint."""

import os
import tempfile
import time
from pathlib import Path

from batchlab.cli import process_age_s, run_step

T_START = time.perf_counter()
AGE_AT_START = process_age_s()

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from batchlab import __version__  # noqa: E402
from batchlab.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from batchlab.config import cell_name, parse_recipe  # noqa: E402
from batchlab.data import load_prepared, to_device  # noqa: E402
from batchlab.devices import claim_gpu, cuda_available, pinned_by_scheduler, resolve_device  # noqa: E402
from batchlab.io import write_json, write_parquet  # noqa: E402
from batchlab.models import input_shape  # noqa: E402
from batchlab.train import PROBE_COLUMNS, CellConfig, iterations_per_epoch, train_cell  # noqa: E402


def main(log, wildcards, params, input, output, threads):
    t_imported = time.perf_counter()
    train, measure = params.train, params.measure
    recipe = parse_recipe(wildcards.recipe)
    cfg = CellConfig(
        batch_size=int(wildcards.bs),
        lr=float(wildcards.lr),
        seed=int(wildcards.seed),
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
    data = to_device(load_prepared(input.data), input_shape(cfg.model), device)
    t_data = time.perf_counter()
    name = cell_name(cfg.batch_size, cfg.lr, cfg.seed, wildcards.recipe)
    log(f"cell {name}: {cfg} on {device} with {threads} thread(s)")

    resume = load_checkpoint(params.checkpoint, cfg)
    result = train_cell(
        cfg,
        data,
        device,
        resume=resume,
        on_epoch_end=lambda state: save_checkpoint(params.checkpoint, cfg, state),
        log=log,
    )
    t_trained = time.perf_counter()
    ipe = iterations_per_epoch(data.n_train, cfg.batch_size)
    steps = len(result.losses)
    write_parquet(
        output.losses,
        pd.DataFrame(
            {
                "step": range(1, steps + 1),
                "epoch": result.epoch_of_step,
                "loss": result.losses,
            }
        ),
    )
    write_parquet(
        output.epochs,
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
    write_parquet(output.probes, pd.DataFrame(result.probes, columns=PROBE_COLUMNS))
    write_json(
        output.metrics,
        {
            **result.summary(),
            "cell": name,
            "recipe": wildcards.recipe,
            "iterations_per_epoch": ipe,
            "device": str(device),
            "threads": threads,
            "resumed_from_epoch": resume.epoch if resume else None,
            "train_seconds": float(sum(row["seconds"] for row in result.epochs)),
            "overhead_seconds": {
                "process_start_to_script": AGE_AT_START,
                "imports": t_imported - T_START,
                "data_load": t_data - t_imported,
                "train_and_eval": t_trained - t_data,
            },
            "versions": {"batchlab": __version__, "torch": torch.__version__},
        },
    )
    log(f"cell {name}: {result.status}" + (f" ({result.stop_reason})" if result.stop_reason else ""))
    Path(params.checkpoint).unlink(missing_ok=True)  # finished: the outputs are the record


run_step(  # noqa: F821 (snakemake is injected by the script directive)
    lambda log: main(
        log, snakemake.wildcards, snakemake.params, snakemake.input, snakemake.output, snakemake.threads
    ),
    snakemake.log[0],
)
