"""Every finished cell's outputs -> the study's tables and analysis, in memory: what the
aggregate rule writes (the files batchlab.summary lists), and what `batchlab peek` renders a
partial report from."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from batchlab.analysis.aggregate import (
    best_learning_rates,
    by_setting,
    cells_table,
    headline_metrics,
    roles_columns,
    solution2_equivalence,
    steps_to_target_table,
)
from batchlab.analysis.cell_summary import noise_table, summarize_cell
from batchlab.analysis.claims_optimizers import compare_optimizers
from batchlab.analysis.curves import downsample_curve, loss_curves_at_best, seed_bands
from batchlab.analysis.fits import critical_batch
from batchlab.analysis.gradient import summary as gradient_summary
from batchlab.analysis.lr_law import lr_law
from batchlab.analysis.lr_response import response_table, stability_map
from batchlab.analysis.replication import compare, halves, of_seeds
from batchlab.analysis.reruns import compare_runs
from batchlab.analysis.rows import CELL_KEYS, grid_cells
from batchlab.analysis.runs import per_seed, read_cell
from batchlab.analysis.summaries import all_summaries
from batchlab.analysis.verdicts import paired_verdicts
from batchlab.study import aggregate_params, solution2_pairs


@dataclass(frozen=True)
class Settings:
    """The report group's knobs aggregate needs, and the study's design (batchlab.study)."""

    study: dict
    smooth_samples: int
    loss_target: float
    target_val_acc: float
    noise_smoothing_probes: int
    max_points_per_curve: int

    @classmethod
    def from_config(cls, config: dict) -> Settings:
        return cls(**aggregate_params(config))


@dataclass
class Tables:
    """The study's summary in memory: one field per kind of summary file (batchlab.summary)."""

    cells: pd.DataFrame
    settings: pd.DataFrame
    best_lr: pd.DataFrame
    loss_curves: pd.DataFrame  # each batch size at its best lr, for DVC's plots
    epochs: pd.DataFrame
    curves: pd.DataFrame
    bands: pd.DataFrame
    probes: pd.DataFrame
    targets: pd.DataFrame
    analysis: dict
    metrics: dict


def collect(cell_paths, s: Settings):
    """Every seed of every cell: its summary row, and its epochs, probes, curve and losses.
    cell_paths: (metrics, epochs, losses, probes) paths of each cell."""
    rows, epochs, probes, curves, losses = [], [], [], [], {}
    for paths in cell_paths:
        for metrics, seed_epochs, seed_losses, raw_probes in per_seed(*read_cell(*paths)):
            seed_probes = noise_table(raw_probes, s.noise_smoothing_probes)
            losses[metrics["cell"], metrics["seed"]] = seed_losses
            rows.append(
                summarize_cell(
                    metrics, seed_epochs, seed_losses, s.smooth_samples, s.loss_target,
                    probes=seed_probes, target_acc=s.target_val_acc, noise_window=s.noise_smoothing_probes,
                )
            )  # fmt: skip
            keys = {k: metrics.get(k, "") for k in CELL_KEYS}
            epochs.append(seed_epochs.assign(**keys))
            probes.append(seed_probes.assign(**keys))
            b, ipe = metrics["batch_size"], metrics["iterations_per_epoch"]
            curves.append(downsample_curve(seed_losses, b, ipe, s.smooth_samples, s.max_points_per_curve).assign(**keys))
    return rows, epochs, probes, curves, losses


def study_tables(cell_paths, chosen: dict, s: Settings, gradient: pd.DataFrame | None = None, reruns: dict | None = None) -> Tables:
    """The tables of the cells given; `chosen`: the lrs the equal-updates checkpoint picked;
    gradient: the gradient at shared weights (batchlab.train.shared_weights), where measured;
    reruns: {name: (verdicts, best lr table)} of committed reruns of this study, compared with
    it (batchlab.analysis.reruns)."""
    rows, epoch_tables, probe_tables, curve_tables, losses = collect(cell_paths, s)
    cells = cells_table(rows)
    cells = pd.concat([cells, roles_columns(cells, s.study, chosen)], axis=1)
    in_grid = cells.set_index(CELL_KEYS)["in_grid"]

    def with_roles(tables):
        return pd.concat(tables, ignore_index=True).join(in_grid, on=CELL_KEYS)

    curves, probes, epochs = with_roles(curve_tables), with_roles(probe_tables), with_roles(epoch_tables)
    targets = steps_to_target_table(cells)
    critical = critical_batch(targets, cells)
    settings = by_setting(cells)
    verdicts, best, response, law, compared = decided(cells, settings, epochs, s, gradient=gradient)
    summaries = all_summaries(cells, settings, best, targets, probes, curves, s.study)
    analysis = {
        "target_val_acc": s.target_val_acc,
        "critical_batch": critical,
        "solution2_equivalence": solution2_equivalence(losses, solution2_pairs(s.study)),
        "verdicts": verdicts,
        "family": family_table(verdicts),
        "replication": split_half(cells, epochs, s, verdicts, gradient),
        "lr_response": [{"batch_size": int(r["batch_size"]), "curve": r["curve"]} for r in response.to_dict("records")],
        "lr_law": law,
        "stability": stability_map(response, grid_cells(cells)),
        "noise_scales": noise_scales(law, critical, summaries),
        "gradient_shared_weights": gradient_summary(gradient) if gradient is not None and len(gradient) else [],
        "reruns": compare_runs({"this run": (verdicts, best), **(reruns or {})}),
        "optimizers": compared,
        "summaries": summaries,
    }
    bands = seed_bands(curves[curves["in_grid"].astype(bool)])
    return Tables(
        cells, settings, best, loss_curves_at_best(curves, best), epochs, curves, bands, probes, targets,
        analysis, headline_metrics(cells, best, critical),
    )  # fmt: skip


def decided(cells: pd.DataFrame, settings: pd.DataFrame, epochs: pd.DataFrame, s: Settings, corrected: bool = True, gradient=None):
    """(verdicts, best lr table, lr response table, lr law, optimizer comparison) of the cells
    given (settings: their by_setting table): the whole study, or one half of its seeds
    (corrected=False: without the family's correction)."""
    response, reps = response_table(grid_cells(cells))
    law = lr_law(response, reps)
    best = best_learning_rates(settings).merge(response.drop(columns=["best_lr", "curve"]), on="batch_size", how="left")
    compared = compare_optimizers(cells, s.study)
    verdicts = paired_verdicts(cells, epochs, best, s.study, response, law, compared, s.target_val_acc, corrected, gradient)
    return verdicts, best, response, law, compared


def split_half(cells: pd.DataFrame, epochs: pd.DataFrame, s: Settings, whole: list[dict], gradient=None) -> dict | None:
    """Every verdict on each half of the seeds, each hypothesis at 5% alone (five seeds cannot pass
    the family's correction: batchlab.analysis.replication); None under 4 seeds."""
    first, second = halves(cells["seed"].unique())
    if len(first) < 2:
        return None
    found = []
    for h in (first, second):
        half = of_seeds(cells, h)
        found.append(decided(half, by_setting(half), of_seeds(epochs, h), s, corrected=False, gradient=of_seeds(gradient, h))[0])
    return compare(whole, *found, (first, second))


def family_table(verdicts: list[dict]) -> list[dict]:
    """The family Holm's correction runs over: each decided verdict's two hypotheses, their
    p-values, the level each was tested at and its adjusted p."""
    rows = []
    for v in verdicts:
        d = v.get("decision")
        if d:
            for side in ("for", "against"):
                rows.append({"key": v["key"], "hypothesis": side, "p": d[f"p_{side}"], "level": d[f"holm_{side}"], "adjusted_p": d[f"adjusted_{side}"]})
    return rows


def noise_scales(law: dict, critical: dict, summaries: dict) -> list[dict]:
    """One quantity, three estimates: B_noise of the lr law, B_crit of the steps to the target,
    B_simple of the gradient noise (at the end of training, each batch size at its best lr)."""
    b_noise = law.get("b_noise") or {}
    noise = (summaries.get("noise") or {}).get("b_simple_end") or {}
    return [
        {"estimate": "B_noise", "from": "the lr law lr_max · b / (b + B_noise)", "value": b_noise.get("value"), "lo": b_noise.get("lo"), "hi": b_noise.get("hi")},
        {"estimate": "B_crit", "from": "steps to the target accuracy, S_min (1 + B_crit / b)", "value": critical.get("b_crit"), "lo": critical.get("b_crit_lo"), "hi": critical.get("b_crit_hi")},
        {"estimate": "B_simple", "from": "the gradient noise tr(Σ) / |G|², end of training", "value": noise.get("mean"), "lo": noise.get("lo"), "hi": noise.get("hi")},
    ]
