"""Snakemake adapter: every cell's outputs -> tidy tables and metrics.json (see batchlab.aggregate)."""

import json

import pandas as pd

from batchlab.aggregate import (
    CELL_KEYS,
    best_learning_rates,
    by_setting,
    cells_table,
    critical_batch,
    downsample_curve,
    grid_cells,
    headline_metrics,
    loss_curves_at_best,
    noise_table,
    roles_columns,
    seed_bands,
    solution2_equivalence,
    steps_to_target_table,
    summarize_cell,
)
from batchlab.cli import run_step
from batchlab.io import write_json, write_parquet, write_text
from batchlab.optimum import lr_exponent, lr_optima
from batchlab.runs import per_seed, read_cell
from batchlab.study import solution2_pairs
from batchlab.summaries import all_summaries
from batchlab.verdicts import paired_verdicts


def collect(input, params):
    """Every seed of every cell: its summary row, and its epochs, probes, curve and losses."""
    rows, epochs, probes, curves, losses = [], [], [], [], {}
    paths = zip(input.metrics, input.epochs, input.losses, input.probes, strict=True)
    for cell_paths in paths:
        for metrics, seed_epochs, seed_losses, raw_probes in per_seed(*read_cell(*cell_paths)):
            seed_probes = noise_table(raw_probes, params.noise_smoothing_probes)
            losses[metrics["cell"], metrics["seed"]] = seed_losses
            rows.append(
                summarize_cell(
                    metrics,
                    seed_epochs,
                    seed_losses,
                    params.smooth_samples,
                    params.loss_target,
                    probes=seed_probes,
                    target_acc=params.target_val_acc,
                    noise_window=params.noise_smoothing_probes,
                )
            )
            keys = {k: metrics.get(k, "") for k in CELL_KEYS}
            epochs.append(seed_epochs.assign(**keys))
            probes.append(seed_probes.assign(**keys))
            curve = downsample_curve(
                seed_losses,
                metrics["batch_size"],
                metrics["iterations_per_epoch"],
                params.smooth_samples,
                params.max_points_per_curve,
            )
            curves.append(curve.assign(**keys))
    return rows, epochs, probes, curves, losses


def main(log, input, output, params):
    rows, epoch_tables, probe_tables, curve_tables, losses = collect(input, params)
    cells = cells_table(rows)
    chosen = {}
    for path in input.choice:  # the lrs the checkpoint chose for the equal-updates runs
        with open(path) as handle:
            chosen = json.load(handle)["chosen"]
    cells = pd.concat([cells, roles_columns(cells, params.study, chosen)], axis=1)
    in_grid = cells.set_index(CELL_KEYS)["in_grid"]

    def with_roles(tables):
        return pd.concat(tables, ignore_index=True).join(in_grid, on=CELL_KEYS)

    curves, probes, epochs = with_roles(curve_tables), with_roles(probe_tables), with_roles(epoch_tables)
    targets = steps_to_target_table(cells)
    critical = critical_batch(targets, cells)
    settings = by_setting(cells)
    optima = lr_optima(grid_cells(cells))
    best = best_learning_rates(settings).merge(optima, on="batch_size", how="left")
    exponent = lr_exponent(grid_cells(cells), optima, critical.get("b_crit"))
    write_parquet(output.probes, probes)
    write_parquet(output.targets, targets)
    write_json(
        output.analysis,
        {
            "target_val_acc": params.target_val_acc,
            "critical_batch": critical,
            "solution2_equivalence": solution2_equivalence(losses, solution2_pairs(params.study)),
            "verdicts": paired_verdicts(cells, epochs, probes, best, params.study, exponent),
            "lr_exponent": exponent,
            "summaries": all_summaries(cells, settings, best, targets, probes, curves, params.study),
        },
    )
    write_parquet(output.bands, seed_bands(curves[curves["in_grid"].astype(bool)]))
    write_parquet(output.cells, cells)
    write_text(output.cells_csv, cells.to_csv(index=False))
    write_parquet(output.settings, settings)
    write_parquet(output.best_lr, best)
    write_text(output.best_lr_csv, best.to_csv(index=False))
    write_text(output.loss_curves_csv, loss_curves_at_best(curves, best).to_csv(index=False))
    write_parquet(output.epochs, epochs)
    write_parquet(output.curves, curves)
    write_json(output.metrics, headline_metrics(cells, best, critical))
    log(f"aggregated {len(cells)} seeds of {cells['cell'].nunique()} cells; best lr per batch size:\n{best.to_string(index=False)}")


run_step(lambda log: main(log, snakemake.input, snakemake.output, snakemake.params), snakemake.log[0])  # noqa: F821
