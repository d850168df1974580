"""Snakemake adapter: every cell's outputs -> tidy tables and metrics.json (see batchlab.tables)."""

import json

from batchlab.cli import run_step
from batchlab.curves import loss_curves_at_best
from batchlab.io import write_json, write_parquet, write_text
from batchlab.tables import Settings, study_tables


def main(log, input, output, params):
    chosen = {}
    for path in input.choice:  # the lrs the checkpoint chose for the equal-updates runs
        with open(path) as handle:
            chosen = json.load(handle)["chosen"]
    settings = Settings(
        study=params.study,
        smooth_samples=params.smooth_samples,
        loss_target=params.loss_target,
        target_val_acc=params.target_val_acc,
        noise_smoothing_probes=params.noise_smoothing_probes,
        max_points_per_curve=params.max_points_per_curve,
    )
    cell_paths = zip(input.metrics, input.epochs, input.losses, input.probes, strict=True)
    t = study_tables(cell_paths, chosen, settings)
    write_parquet(output.probes, t.probes)
    write_parquet(output.targets, t.targets)
    write_json(output.analysis, t.analysis)
    write_parquet(output.bands, t.bands)
    write_parquet(output.cells, t.cells)
    write_text(output.cells_csv, t.cells.to_csv(index=False))
    write_parquet(output.settings, t.settings)
    write_parquet(output.best_lr, t.best)
    write_text(output.best_lr_csv, t.best.to_csv(index=False))
    write_text(output.loss_curves_csv, loss_curves_at_best(t.curves, t.best).to_csv(index=False))
    write_parquet(output.epochs, t.epochs)
    write_parquet(output.curves, t.curves)
    write_json(output.metrics, t.metrics)
    log(f"aggregated {len(t.cells)} seeds of {t.cells['cell'].nunique()} cells; best lr per batch size:\n{t.best.to_string(index=False)}")


run_step(lambda log: main(log, snakemake.input, snakemake.output, snakemake.params), snakemake.log[0])  # noqa: F821
