"""Snakemake adapter: every cell's outputs -> tidy tables and metrics.json (see batchlab.aggregate)."""

import pandas as pd

from batchlab.aggregate import (
    CELL_KEYS,
    best_learning_rates,
    by_setting,
    cells_table,
    critical_batch,
    downsample_curve,
    headline_metrics,
    noise_table,
    roles_columns,
    steps_to_target_table,
    summarize_cell,
)
from batchlab.analysis import series_difference
from batchlab.cli import run_step
from batchlab.io import write_json, write_parquet, write_text
from batchlab.runs import per_seed, read_cell
from batchlab.study import solution2_pairs


def main(log, input, output, params):
    rows, epoch_tables, curves, probe_tables, all_losses = [], [], [], [], {}
    paths = zip(input.metrics, input.epochs, input.losses, input.probes, strict=True)
    for cell_paths in paths:
        for metrics, epochs, losses, raw_probes in per_seed(*read_cell(*cell_paths)):
            probes = noise_table(raw_probes, params.noise_smoothing_probes)
            all_losses[metrics["cell"], metrics["seed"]] = losses
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
    roles = roles_columns(cells, params.study)
    cells = pd.concat([cells, roles], axis=1)
    in_grid = cells.set_index(CELL_KEYS)["in_grid"]

    def with_roles(frame):
        return frame.join(in_grid, on=CELL_KEYS)

    curves = with_roles(pd.concat(curves, ignore_index=True))
    targets = steps_to_target_table(cells)
    equivalence = []
    for split_cell, plain_cell, momentum in solution2_pairs(params.study):
        for seed in sorted({s for c, s in all_losses if c == split_cell}):
            if (plain_cell, seed) in all_losses:
                diff = series_difference(all_losses[split_cell, seed], all_losses[plain_cell, seed])
                equivalence.append(
                    {"solution2": split_cell, "plain": plain_cell, "seed": seed, "momentum": momentum, **diff}
                )
    probes = with_roles(pd.concat(probe_tables, ignore_index=True))
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
    # DVC plots: smoothed loss against epoch at each batch size's best lr (long format), grid
    # cells only (a warm-up cell can share a batch size and lr with one)
    at_best = curves[curves["in_grid"]].merge(best[["batch_size", "best_lr"]].rename(columns={"best_lr": "lr"}))
    write_text(
        output.loss_curves_csv,
        at_best[["batch_size", "lr", "seed", "epoch", "loss_smooth"]].to_csv(index=False),
    )
    epochs = with_roles(pd.concat(epoch_tables, ignore_index=True))
    write_parquet(output.epochs, epochs)
    write_parquet(output.curves, curves)
    write_json(output.metrics, headline_metrics(cells, best, critical_batch(targets)))
    log(f"aggregated {len(cells)} seeds of {cells['cell'].nunique()} cells; best lr per batch size:\n{best.to_string(index=False)}")


run_step(lambda log: main(log, snakemake.input, snakemake.output, snakemake.params), snakemake.log[0])  # noqa: F821
