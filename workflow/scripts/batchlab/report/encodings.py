"""The chart encodings every section shares: sizes, the batch-size colour, log axes, and the
thinning that keeps a chart under Altair's row limit."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

ALTAIR_MAX_ROWS = 5000
LOSS_CLIP = 3.0  # losses above this are drawn at it
WIDTH, HEIGHT = 440, 260
SMALL = 300


def spec(chart: alt.TopLevelMixin) -> dict:
    return chart.to_dict()


def batch_color(sort="ascending") -> alt.Color:
    return alt.Color("batch_size:O", title="batch size", sort=sort, scale=alt.Scale(scheme="viridis"))


def log_scale(**kw) -> alt.Scale:
    return alt.Scale(type="log", nice=False, **kw)


def batch_x(title: str = "batch size (log scale)") -> alt.X:
    return alt.X("batch_size:Q", title=title, scale=log_scale())


def thin(curves: pd.DataFrame, max_rows: int = ALTAIR_MAX_ROWS // 2) -> pd.DataFrame:
    """Every k-th point of each curve, so a chart stays under Altair's row limit."""
    if len(curves) <= max_rows:
        return curves
    k = math.ceil(len(curves) / max_rows)
    return curves[curves.groupby(["batch_size", "lr", "seed"]).cumcount() % k == 0]
