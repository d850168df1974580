"""When a huge batch cannot be avoided: lr scaling rules and warm-up (Goyal et al. 2017)."""

from __future__ import annotations

import pandas as pd

from batchlab.analysis.rows import rows_of
from batchlab.report import charts
from batchlab.report.encodings import thin
from batchlab.report.fmt import ci_text, fmt_num, fmt_pct, fmt_points, html_table
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section
from batchlab.train.settings import LAYER_WISE


def findings(s: dict, planned: int, best: pd.DataFrame | None = None) -> list[str]:
    ref, out = s["reference"], []
    tuned = {int(r.batch_size): r for r in best.itertuples()} if best is not None and len(best) else {}
    if ref.get("val_acc"):
        out.append(f"Reference: batch {ref['batch_size']} at lr {ref['lr']:g} reaches {ci_text(ref['val_acc'], fmt_pct)} validation accuracy after {planned} epochs.")
    rows = {(r["batch_size"], r["variant"]): r for r in s["rows"]}
    for entry in s["per_batch"]:
        b = entry["batch_size"]
        none = rows.get((b, "none scaling"))
        text = f"Batch {b}: with no remedy (lr {none['lr']:g}) validation accuracy is {ci_text(none['val_acc'], fmt_pct)}" if none else f"Batch {b}"
        at = "" if ", lr " in entry["best_variant"] else f" at lr {entry['best_lr']:g}"
        text += f"; the best remedy on validation is {entry['best_variant']}{at}"
        if "gain" in entry:
            text += f", against no remedy on the test set {fmt_points(entry['gain'])}: {entry['verdict']} ({entry['why']})"
        lin = rows.get((b, "linear scaling"))
        lin_w = next((r for (bb, v), r in rows.items() if bb == b and v.startswith("linear scaling +")), None)
        if lin and lin_w:
            text += (
                f". Linear scaling alone: {ci_text(lin['val_acc'], fmt_pct)} ({lin['failed']}/{lin['seeds']} seeds failed);"
                f" with warm-up: {ci_text(lin_w['val_acc'], fmt_pct)} ({lin_w['failed']}/{lin_w['seeds']} failed)"
            )
        if b in tuned:
            t = tuned[b]
            text += f". Plain SGD at the grid's best lr for batch {b} ({t.best_lr:g}) reaches {100 * t.best_val_acc:.1f}% on validation"
        out.append(text + ".")
    return out


# the recipes of the layer-wise optimizers (batchlab.train.settings): _lars, _lamb
LAYER_WISE_RECIPES = tuple(f"_{name}" for name in LAYER_WISE)


def charted(rows: list[dict]) -> list[dict]:
    """The rows a chart draws: every scaling rule, and of each layer-wise optimizer (LARS,
    LAMB, trained over a window) its best lr on validation alone, so the chart stays legible."""
    out, best = [], {}
    for r in rows:
        kind = next((k for k in LAYER_WISE_RECIPES if r["recipe"].startswith(k)), None)
        if kind is None:
            out.append(r)
        elif kind not in best or r["val_acc"]["mean"] > best[kind]["val_acc"]["mean"]:
            best[kind] = r
    return out + list(best.values())


def figures(study: Inputs, s: dict) -> list:
    rem = study.config["remedies"]
    ref_b, ref_lr = rem["reference_batch_size"], rem["reference_lr"]
    ref_label = f"reference: batch {ref_b}, lr {ref_lr:g}"
    ref_acc = rows_of(study.probes, ref_b, ref_lr, "").assign(variant=ref_label)
    ref_curves = rows_of(study.curves, ref_b, ref_lr, "").assign(variant=ref_label)
    out = []
    for b in sorted(rem["batch_sizes"]):
        mine = charted([r for r in s["rows"] if r["batch_size"] == b])
        if not mine:
            continue
        label = {r["recipe"] + str(r["lr"]): r["variant"] if ", lr " in r["variant"] else f"{r['variant']} (lr {r['lr']:g})" for r in mine}
        acc = [rows_of(study.probes, b, r["lr"], r["recipe"]).assign(variant=label[r["recipe"] + str(r["lr"])]) for r in mine]
        loss = [rows_of(study.curves, b, r["lr"], r["recipe"]).assign(variant=label[r["recipe"] + str(r["lr"])]) for r in mine]
        out.append((
            f"remedies-accuracy-bs{b}",
            charts.variants(pd.concat([ref_acc, *acc], ignore_index=True), "epoch", "val_acc", f"Batch {b}: validation accuracy against epoch (equal epochs)", "validation accuracy"),
            "",
        ))  # fmt: skip
        out.append((
            f"remedies-loss-bs{b}",
            charts.variants(thin(pd.concat([ref_curves, *loss], ignore_index=True)), "step", "loss_smooth", f"Batch {b}: smoothed training loss against iteration (equal steps)", "training loss", log_x=True),
            "",
        ))  # fmt: skip
    return out


def table(s: dict) -> pd.DataFrame:
    ref_b = s["reference"]["batch_size"]
    return pd.DataFrame([
        {
            "batch size": r["batch_size"], "variant": r["variant"], "lr": f"{r['lr']:g}",
            "validation acc after all epochs": ci_text(r["val_acc"], fmt_pct), "failed seeds": f"{r['failed']}/{r['seeds']}",
            "train loss at its last step": fmt_num(r["loss_at_last_step"]), f"batch {ref_b} at the same step": fmt_num(r["reference_loss_at_step"]),
        }
        for r in s["rows"]
    ])  # fmt: skip


def section(study: Inputs) -> Section | None:
    s = study.summaries.get("remedies")
    if not s:
        return None
    rem, planned = study.config["remedies"], study.config["train"]["epochs"]
    return Section(
        "remedies",
        "When a huge batch cannot be avoided",
        f"Goyal et al. (2017): scale the learning rate with the batch size (lr = {rem['reference_lr']:g} ×"
        f" (b/{rem['reference_batch_size']})^p, p = 0 none, ½ square root, 1 linear) and warm it up linearly over the"
        f" first {rem['warmup_epochs']:g} epoch(s)"
        + (f"; and {' and '.join(n.upper() for n in rem.get('optimizers') or [])} (You et al. 2017, 2019), layer-wise"
           " trust ratios made for huge batches, each over its own window of lrs (the charts draw each one's best on"
           " validation)" if rem.get("optimizers") else "")
        + ". Compared at equal epochs (accuracy after all epochs) and at equal"
        f" steps (the smoothed training loss of the reference batch {rem['reference_batch_size']} at the large batch's"
        " last step). The best remedy is chosen on validation and compared with no remedy on the test set, paired by seed.",
        charts=figures(study, s),
        tables=[html_table(table(s))] if s["rows"] else [],
        findings=findings(s, planned, study.best_lr),
    )
