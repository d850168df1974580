"""Snakemake adapter: all cells' logs -> tidy tables and metrics.json (see batchlab.aggregate)."""

import json

import pandas as pd

from batchlab.aggregate import (
    CELL_KEYS,
    best_learning_rates,
    by_setting,
    cells_table,
    critical_batch,
    downsample_curve,
    grid_mask,
    headline_metrics,
    noise_table,
    solution2_pairs,
    steps_to_target_table,
    summarize_cell,
)
from batchlab.analysis import series_difference
from batchlab.cli import run_step
from batchlab.io import write_json, write_parquet, write_text


def main(log, input, output, params):
    rows, epoch_tables, curves, probe_tables, all_losses = [], [], [], [], {}
    paths = zip(input.metrics, input.epochs, input.losses, input.probes, strict=True)
    for metrics_path, epochs_path, losses_path, probes_path in paths:
        with open(metrics_path) as handle:
            metrics = json.load(handle)
        epochs = pd.read_parquet(epochs_path)
        losses = pd.read_parquet(losses_path, columns=["loss"])["loss"].to_numpy()
        probes = noise_table(pd.read_parquet(probes_path), params.noise_smoothing_probes)
        all_losses[metrics["cell"]] = losses
        rows.append(
            summarize_cell(
                metrics,
                epochs,
                losses,
                params.smooth_samples,
                params.loss_target,
                probes=probes,
                target_acc=params.target_test_acc,
                noise_window=params.noise_smoothing_probes,
            )
        )
        keys = {k: metrics.get(k, "") for k in CELL_KEYS}
        epoch_tables.append(epochs.assign(**keys))
        probe_tables.append(probes.assign(**keys))
        curve = downsample_curve(
            losses,
            metrics["batch_size"],
            metrics["iterations_per_epoch"],
            params.smooth_samples,
            params.max_points_per_curve,
        )
        curves.append(curve.assign(**keys))
    cells = cells_table(rows)
    cells["in_grid"] = grid_mask(cells, params.grid)
    curves = pd.concat(curves, ignore_index=True)
    curves["in_grid"] = grid_mask(curves, params.grid)
    targets = steps_to_target_table(cells)
    equivalence = []
    for split_cell, plain_cell, momentum in solution2_pairs(cells):
        if plain_cell in all_losses:
            diff = series_difference(all_losses[split_cell], all_losses[plain_cell])
            equivalence.append({"solution2": split_cell, "plain": plain_cell, "momentum": momentum, **diff})
    probes = pd.concat(probe_tables, ignore_index=True)
    probes["in_grid"] = grid_mask(probes, params.grid)
    write_parquet(output.probes, probes)
    write_parquet(output.targets, targets)
    write_json(
        output.analysis,
        {
            "target_test_acc": params.target_test_acc,
            "critical_batch": critical_batch(targets),
            "solution2_equivalence": equivalence,
        },
    )
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
    epochs = pd.concat(epoch_tables, ignore_index=True)
    epochs["in_grid"] = grid_mask(epochs, params.grid)
    write_parquet(output.epochs, epochs)
    write_parquet(output.curves, curves)
    write_json(output.metrics, headline_metrics(cells, best, critical_batch(targets)))
    log(f"aggregated {len(cells)} cells; best lr per batch size:\n{best.to_string(index=False)}")


run_step(lambda log: main(log, snakemake.input, snakemake.output, snakemake.params), snakemake.log[0])  # noqa: F821
