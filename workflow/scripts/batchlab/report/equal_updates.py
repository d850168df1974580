"""Stuck, or short of steps? A large batch given as many updates as a small one (Hoffer et al.
2017), against the small one at its best lr."""

from __future__ import annotations

import pandas as pd

from batchlab.analysis.rows import rows_of
from batchlab.report import charts
from batchlab.report.fmt import ci_text, fmt_pct, fmt_points, html_table
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def section(study: Inputs) -> Section | None:
    runs = study.summaries.get("equal_updates") or []
    eq = study.config.get("equal_updates") or {}
    if not runs:
        return None
    verdict = next((v for v in study.verdicts if v["key"] == "local_minima"), {})
    compared = {(r["batch_size"], r["lr"]): r for r in verdict.get("runs", [])}
    ref = int(eq["reference_batch_size"])
    ref_row = study.best_lr[study.best_lr["batch_size"] == ref]
    rows, frames = [], []
    if len(ref_row):
        ref_lr = float(ref_row["best_lr"].iloc[0])
        ref_probes = study.at_best(study.probes)
        frames.append(ref_probes[ref_probes["batch_size"] == ref].assign(variant=f"batch {ref} at its best lr {ref_lr:g}"))
    for r in runs:
        c = compared.get((r["batch_size"], r["lr"]), {})
        rows.append({
            "run": f"batch {r['batch_size']} at lr {r['lr']:g}",
            "updates (epochs)": f"{r['updates']:,} ({r['epochs']})",
            "validation acc": ci_text(r["val_acc"], fmt_pct),
            "final train loss": ci_text(r["train_loss"]),
            f"minus batch {ref} at its best lr (test, paired)": fmt_points(c.get("test_acc_minus_reference", {})),
            "gained by the extra updates (test)": fmt_points(c.get("gain_from_updates", {})),
            "failed seeds": f"{r['failed']}/{r['seeds']}",
        })  # fmt: skip
        p = study.probes
        mine = rows_of(p, r["batch_size"], r["lr"], r["recipe"])
        frames.append(mine.assign(variant=f"batch {r['batch_size']} at lr {r['lr']:g}, {r['updates']:,} updates"))
    data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    figures = []
    if len(data):
        data = data[data["step"] > 0]
        figures.append((
            "equal-updates-accuracy",
            charts.variants(data, "step", "val_acc", "Validation accuracy against updates", "validation accuracy", log_x=True),
            "",
        ))  # fmt: skip
    return Section(
        "equal-updates",
        "Stuck in a worse minimum, or short of steps?",
        f"Hoffer et al. (2017): a large batch trained for the same number of epochs makes far fewer updates. Here"
        f" each large batch is trained again, at the lr the grid selected for it on validation (a Snakemake"
        f" checkpoint picks it after the grid), for as many updates as batch {ref} makes in"
        f" {study.config['train']['epochs']} epochs (whole epochs, so a few more); its end point is compared with"
        f" batch {ref} at its best lr, seed by seed. Verdict on \"stuck in local minima\": {verdict.get('verdict', 'n/a')}.",
        charts=figures,
        tables=[html_table(pd.DataFrame(rows))],
        tables_first=True,
    )
