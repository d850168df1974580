"""The gradient noise scale B_simple and the critical batch size."""

from __future__ import annotations

import altair as alt
import numpy as np

from batchlab.analysis.stats import is_finite
from batchlab.report.encodings import HEIGHT, WIDTH, batch_color, log_scale, spec
from batchlab.report.fmt import ci_text, fmt_num, fmt_pct
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section

PUBLIC_B_SIMPLE = (870, 900)  # a public replication's MNIST measurement (issue 7)


def chart(data) -> dict:
    line = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("recent_train_loss:Q", title="training loss (log scale, falling to the right)", scale=log_scale(reverse=True)),
            y=alt.Y("b_simple:Q", title="B_simple = tr(Σ)/|G|² (log scale)", scale=log_scale()),
            color=batch_color(sorted(data["batch_size"].unique())),
            detail="seed:N",
            tooltip=["batch_size:O", "lr:Q", "seed:N", "epoch:Q", "recent_train_loss:Q", "b_simple:Q"],
        )
    )
    return spec(line.properties(title="Gradient noise scale as the loss falls (each batch size at its best lr)", width=WIDTH, height=HEIGHT))


def findings(s: dict, fit: dict) -> list[str]:
    if not s.get("usable"):
        return ["No probe gave a usable noise-scale estimate (the smoothed |G|² was never positive)."]
    rho, early, late = s["rho"], s["early"], s["late"]
    way = "grows" if is_finite(rho) and rho < -0.3 else "shrinks" if is_finite(rho) and rho > 0.3 else "does not change steadily"
    end, at_target = s["b_simple_end"], s["b_simple_at_target"]
    out = [
        f"B_simple {way} as the training loss falls: median {fmt_num(early)} over the probes with the highest"
        f" quarter of losses and {fmt_num(late)} over the lowest quarter (Spearman between loss and B_simple {fmt_num(rho, 2)}).",
        f"At the end of training (median training loss {fmt_num(s['final_loss'])}), B_simple is {ci_text(end)};"
        f" at the probe where each seed first reached the target accuracy, {ci_text(at_target)} (each batch size"
        " at its best lr, averaged over the batch sizes within a seed; 95% intervals over seeds). By batch size,"
        " at the target: " + "; ".join(f"{r['batch_size']}: {ci_text(r['at_target'])}" for r in s.get("b_simple_by_batch", [])) + ".",
    ]
    lo, hi = PUBLIC_B_SIMPLE
    if is_finite(end.get("mean")):
        out.append(
            f"A public replication measured B_simple of about {lo}-{hi} on MNIST; ours is {end['mean'] / ((lo + hi) / 2):.2g}× that at"
            " the end. B_simple depends on how far training has gone, on the model and on the learning rate, so a"
            " study that trains longer, or another network, lands elsewhere."
        )
    if is_finite(fit.get("b_crit")):
        stage = at_target if is_finite(at_target.get("mean")) else end
        when = "when the target is reached" if stage is at_target else "at the end (no seed's probe reached the target)"
        ratio = max(stage["mean"], fit["b_crit"]) / min(stage["mean"], fit["b_crit"]) if is_finite(stage.get("mean")) else float("nan")
        out.append(
            f"The two estimates of the critical batch size at the same stage of training: B_simple {fmt_num(stage.get('mean'))}"
            f" {when}, B_crit {fmt_num(fit['b_crit'])} from the steps to that target ({fmt_num(ratio, 2)}× apart; McCandlish et"
            " al. find B_simple a rough, usually within an order of magnitude, predictor of B_crit)."
        )
    share = s.get("measure_share", {})
    if is_finite(share.get("median")):
        out.append(
            f"Measuring the noise scale and the sharpness took {fmt_pct(share['median'])} of a cell's training time"
            f" (median; at most {fmt_pct(share['max'])})."
        )
    return out


def section(study: Inputs) -> Section | None:
    if study.targets.empty or "noise" not in study.summaries:
        return None
    mea, rep = study.config["measure"], study.config["report"]
    data = study.at_best(study.probes) if len(study.probes) else study.probes
    if len(data):
        data = data[np.isfinite(data["b_simple"]) & (data["b_simple"] > 0)]
    draws = mea.get("noise_draws", 1)
    return Section(
        "noise-scale",
        "Gradient noise scale and the critical batch size",
        "McCandlish et al. (2018): B_simple = tr(Σ)/|G|², the batch size at which the gradient's noise and signal"
        " are equal, predicts the critical batch size beyond which larger batches stop paying off. Estimated from"
        f" squared gradient norms at two batch sizes (B_small = {mea['noise_batch'] // mea['noise_micro_batches']},"
        f" B_big = {mea['noise_batch']}, {draws} draw(s) of random training images averaged at each measurement),"
        f" in the curve each averaged over {rep['noise_smoothing_probes']} measurements before the ratio is taken.",
        charts=[("noise-scale-vs-loss", chart(data), "")] if len(data) else [],
        findings=findings(study.summaries["noise"], study.critical),
    )
