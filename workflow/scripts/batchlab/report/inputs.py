"""What every section reads: aggregate's tables, its analysis (verdicts, fits, summaries), the
config, and the previous version's headline metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from batchlab.analysis.rows import at_best_lr, grid_cells


def _empty() -> pd.DataFrame:
    return pd.DataFrame()


@dataclass
class Inputs:
    cells: pd.DataFrame
    settings: pd.DataFrame
    best_lr: pd.DataFrame
    epochs: pd.DataFrame
    curves: pd.DataFrame
    config: dict
    analysis: dict = field(default_factory=dict)
    bands: pd.DataFrame = field(default_factory=_empty)
    probes: pd.DataFrame = field(default_factory=_empty)
    targets: pd.DataFrame = field(default_factory=_empty)
    metrics: dict | None = None
    previous: dict | None = None

    @cached_property
    def grid(self) -> pd.DataFrame:
        """The cells of the (batch size, lr, seed) grid."""
        return grid_cells(self.cells)

    @cached_property
    def grid_curves(self) -> pd.DataFrame:
        return grid_cells(self.curves)

    @cached_property
    def grid_epochs(self) -> pd.DataFrame:
        return grid_cells(self.epochs)

    @property
    def summaries(self) -> dict:
        return self.analysis.get("summaries") or {}

    @property
    def verdicts(self) -> list[dict]:
        return self.analysis.get("verdicts") or []

    @property
    def critical(self) -> dict:
        """The B_crit fit, with the nulls JSON wrote for NaN read back as NaN."""
        fit = self.analysis.get("critical_batch") or {}
        return {k: float("nan") if v is None else v for k, v in fit.items()}

    def at_best(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of a grid frame at each batch size's best lr."""
        return at_best_lr(grid_cells(frame), self.best_lr)
