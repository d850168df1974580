"""The training loss iteration by iteration: at one fixed lr, and each batch size at its best."""

from __future__ import annotations

from batchlab.analysis.rows import at_lr
from batchlab.report import charts
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def section(study: Inputs) -> Section:
    rep = study.config["report"]
    ref_lr = study.summaries.get("reference_lr", rep["reference_lr"])
    curves, bands = study.grid_curves, study.bands
    at_ref = at_lr(curves, ref_lr)
    bands_ref = at_lr(bands, ref_lr) if len(bands) else bands
    at_best = study.at_best(curves)
    bands_best = study.at_best(bands) if len(bands) else bands
    return Section(
        "loss-curves",
        "Training loss, iteration by iteration",
        f"Faint lines: the training loss of every iteration (log-spaced points kept for drawing); bold"
        f" lines: its mean over the last {rep['smooth_samples']:,} samples' worth of iterations, so every"
        " batch size is smoothed over the same amount of data, one line per seed; shaded: the 95% interval"
        f" over seeds of the smoothed loss. Left: the learning rate held fixed at {ref_lr:g}; below: each"
        " batch size at its own best lr.",
        charts=[
            ("loss-vs-iteration-fixed-lr", charts.loss_curves(at_ref, bands_ref, "step", f"Loss against iteration, lr {ref_lr:g}"), ""),
            ("loss-vs-epoch-fixed-lr", charts.loss_curves(at_ref, bands_ref, "epoch", f"Loss against epoch, lr {ref_lr:g}"), ""),
            ("loss-vs-iteration-best-lr", charts.loss_curves(at_best, bands_best, "step", "Loss against iteration, each batch size at its best lr"), ""),
            ("loss-vs-epoch-best-lr", charts.loss_curves(at_best, bands_best, "epoch", "Loss against epoch, each batch size at its best lr"), ""),
        ],
    )
