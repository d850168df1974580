"""The original post's Solution 2: one forward pass, k updates from k slices of the batch."""

from __future__ import annotations

import pandas as pd

from batchlab.analysis.rows import rows_of
from batchlab.analysis.stats import AGREE_REL
from batchlab.config import round_lr
from batchlab.report import charts
from batchlab.report.encodings import thin
from batchlab.report.fmt import ci_text, fmt_pct, html_table
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section
from batchlab.study import momentum_of


def equivalence(pairs: list[dict], m: float, k: int, lr: float) -> str:
    """Solution 2 against plain training at k x lr, from aggregate's loss comparison."""
    first = max(p["first_update_rel"] for p in pairs)
    agree = [p["agree_steps"] for p in pairs]
    span = f"{min(agree)}" if min(agree) == max(agree) else f"{min(agree)}-{max(agree)}"
    together = (
        "they agree only before the first update"
        if max(agree) <= 1
        else f"they agree within {AGREE_REL:g} for the first {span} of {pairs[0]['steps']:,} iterations"
    )
    text = (
        f"Momentum {m:g}: after the first update the training losses of Solution 2 (k = {k}, lr {lr:g}) and of plain"
        f" training at lr {round_lr(k * lr):g} differ by {first:.1g} (relative, largest over {len(pairs)} seed(s)); {together}"
    )
    if all(p["first_update_rel"] <= AGREE_REL for p in pairs):
        grows = (
            f" Rounding differences then grow at this large lr (largest difference {max(p['max_abs'] for p in pairs):.2g}"
            " by the end), as between any two summation orders."
            if min(agree) < pairs[0]["steps"]
            else ""
        )
        return text + ": the same step, to float rounding." + grows
    return text + ": a different step from the first update on; the equivalence does not hold."


def section(study: Inputs) -> Section | None:
    sol = study.config.get("solution2") or {}
    rows = study.summaries.get("solution2") or []
    if not sol.get("enabled") or not rows:
        return None
    b, k, lr = sol["batch_size"], sol["splits"], sol["lr"]
    table = pd.DataFrame([
        {
            "momentum": f"{r['momentum']:g}", "training": r["training"], "updates per batch": r["updates_per_batch"],
            "validation acc after all epochs": ci_text(r["val_acc"], fmt_pct), "final train loss": ci_text(r["train_loss"]),
            "failed seeds (diverged, collapsed or failed to learn)": f"{r['failed']}/{r['seeds']}",
        }
        for r in rows
    ])  # fmt: skip
    figures = []
    momenta = [momentum_of(study.config, name) for name in sol["optimizers"]]
    for m in momenta:
        c = study.curves
        frames = [
            rows_of(c, b, r["lr"], r["recipe"]).assign(variant=r["training"])
            for r in rows
            if r["momentum"] == m
        ]
        if frames:
            data = thin(pd.concat(frames, ignore_index=True))
            figures.append((
                f"solution2-m{m:g}".replace(".", "_"),
                charts.variants(data, "step", "loss_smooth", f"Batch {b}, momentum {m:g}: smoothed training loss", "training loss", log_x=True),
                "",
            ))  # fmt: skip
    pairs = study.analysis.get("solution2_equivalence", [])
    found = [equivalence(mine, m, k, lr) for m in momenta if (mine := [e for e in pairs if e["momentum"] == m])]
    return Section(
        "solution2",
        "Solution 2: one forward pass, k updates",
        f"One forward pass over a batch of {b}, then k = {k} updates, each from the mean loss of one k-th of it. The"
        " naive version fails in PyTorch: after the first optimizer.step() the weights saved in the graph have changed"
        " in place. batchlab takes all k gradients from the graph first, then applies them in turn. All k gradients are"
        " therefore taken at the same weights: for plain SGD the k updates sum to lr × Σ g_j = (k × lr) × g_batch, one"
        f" full-batch step with k times the learning rate (here {round_lr(k * lr):g}). With momentum the velocity grows"
        " between the k updates, so the equivalence is no longer exact.",
        charts=figures,
        tables=[html_table(table)],
        findings=found,
    )
