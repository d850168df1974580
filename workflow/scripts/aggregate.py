"""Snakemake adapter: all cells' logs -> tidy tables and metrics.json (see batchlab.aggregate)."""

import json

import pandas as pd

from batchlab.aggregate import (
    CELL_KEYS,
    best_learning_rates,
    by_setting,
    cells_table,
    downsample_curve,
    headline_metrics,
    summarize_cell,
)
from batchlab.cli import run_step
from batchlab.io import write_json, write_parquet, write_text


def main(log, input, output, params):
    rows, epoch_tables, curves = [], [], []
    for metrics_path, epochs_path, losses_path in zip(input.metrics, input.epochs, input.losses, strict=True):
        with open(metrics_path) as handle:
            metrics = json.load(handle)
        epochs = pd.read_parquet(epochs_path)
        losses = pd.read_parquet(losses_path, columns=["loss"])["loss"].to_numpy()
        rows.append(summarize_cell(metrics, epochs, losses, params.smooth_samples, params.loss_target))
        keys = {k: metrics[k] for k in CELL_KEYS}
        epoch_tables.append(epochs.assign(**keys))
        curve = downsample_curve(
            losses,
            metrics["batch_size"],
            metrics["iterations_per_epoch"],
            params.smooth_samples,
            params.max_points_per_curve,
        )
        curves.append(curve.assign(**keys))
    cells = cells_table(rows)
    curves = pd.concat(curves, ignore_index=True)
    settings = by_setting(cells)
    best = best_learning_rates(settings)
    write_parquet(output.cells, cells)
    write_text(output.cells_csv, cells.to_csv(index=False))
    write_parquet(output.settings, settings)
    write_parquet(output.best_lr, best)
    write_text(output.best_lr_csv, best.to_csv(index=False))
    # DVC plots: smoothed loss against epoch at each batch size's best lr (long format)
    at_best = curves.merge(best[["batch_size", "best_lr"]].rename(columns={"best_lr": "lr"}))
    write_text(
        output.loss_curves_csv,
        at_best[["batch_size", "lr", "seed", "epoch", "loss_smooth"]].to_csv(index=False),
    )
    write_parquet(output.epochs, pd.concat(epoch_tables, ignore_index=True))
    write_parquet(output.curves, curves)
    write_json(output.metrics, headline_metrics(cells, best))
    log(f"aggregated {len(cells)} cells; best lr per batch size:\n{best.to_string(index=False)}")


run_step(lambda log: main(log, snakemake.input, snakemake.output, snakemake.params), snakemake.log[0])  # noqa: F821
