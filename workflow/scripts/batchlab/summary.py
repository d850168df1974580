"""The study's summary, listed once: every file aggregate writes to results/summary/, what it
holds and how DVC tracks it. The aggregate and report rules, both adapters, the tables
aggregate builds (batchlab.analysis.tables.Tables), the report's inputs
(batchlab.report.inputs.Inputs), `batchlab peek` and a test of dvc.yaml all follow this list."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

FOLDER = "results/summary"


@dataclass(frozen=True)
class SummaryFile:
    name: str  # the aggregate rule's output and the report rule's input of that name
    file: str  # under FOLDER
    holds: str  # the field of Tables (and of the report's Inputs) it is written from
    dvc: str = "out"  # out: cached by DVC; git: committed to git (cache: false); metric: both that and a DVC metric

    @property
    def path(self) -> str:
        return f"{FOLDER}/{self.file}"

    @property
    def kind(self) -> str:
        return Path(self.file).suffix[1:]


FILES = (
    SummaryFile("cells", "cells.parquet", "cells"),
    SummaryFile("cells_csv", "cells.csv", "cells", dvc="git"),
    SummaryFile("settings", "settings.parquet", "settings"),
    SummaryFile("best_lr", "best_lr.parquet", "best_lr"),
    SummaryFile("best_lr_csv", "best_lr.csv", "best_lr", dvc="git"),
    SummaryFile("loss_curves_csv", "loss_curves.csv", "loss_curves", dvc="git"),
    SummaryFile("epochs", "epochs.parquet", "epochs"),
    SummaryFile("curves", "curves.parquet", "curves"),
    SummaryFile("bands", "bands.parquet", "bands"),
    SummaryFile("probes", "probes.parquet", "probes"),
    SummaryFile("targets", "targets.parquet", "targets"),
    SummaryFile("analysis", "analysis.json", "analysis", dvc="git"),
    SummaryFile("metrics", "metrics.json", "metrics", dvc="metric"),
)
BY_NAME = {f.name: f for f in FILES}
# what the report reads back, each into the Inputs field of its name: each table once, in its
# richest form (the csv files are exports)
REPORT_INPUTS = tuple(f.name for f in FILES if f.kind in ("parquet", "json"))
# what Tables holds: every field a file is written from
FIELDS = tuple(dict.fromkeys(f.holds for f in FILES))


def outputs() -> dict[str, str]:
    """The aggregate rule's outputs: {name: path}."""
    return {f.name: f.path for f in FILES}


def write(tables, paths) -> None:
    """Every summary file from the tables (anything with the FIELDS as attributes) to the paths
    given by name (the rule's outputs), each written atomically."""
    from batchlab.io import write_json, write_parquet, write_text

    for f in FILES:
        value, dest = getattr(tables, f.holds), paths[f.name]
        if f.kind == "parquet":
            write_parquet(dest, value)
        elif f.kind == "csv":
            write_text(dest, value.to_csv(index=False))
        else:
            write_json(dest, value)


def read(paths) -> dict:
    """What the report reads, by name (its Inputs field): {name: frame or record}, from the paths
    given by name (the report rule's inputs)."""
    import pandas as pd

    out = {}
    for name in REPORT_INPUTS:
        if BY_NAME[name].kind == "parquet":
            out[name] = pd.read_parquet(paths[name])
        else:
            out[name] = json.loads(Path(paths[name]).read_text())
    return out
