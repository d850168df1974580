"""How fast and how far: validation accuracy per epoch at each batch size's best lr."""

from __future__ import annotations

from batchlab.report import charts
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def section(study: Inputs) -> Section:
    target = study.config["report"]["loss_target"]
    chart = charts.per_epoch(
        study.at_best(study.epochs), "val_acc", "Validation accuracy per epoch at each batch size's best lr", "validation accuracy"
    )
    return Section(
        "convergence",
        "How fast and how far",
        "Validation accuracy after each epoch, each batch size at its best lr. 'Iterations to target' in the"
        f" table above counts iterations until the smoothed training loss first reaches {target:g}.",
        charts=[("validation-accuracy-vs-epoch", chart, "")],
    )
