"""How the report writes numbers and tables: every section formats with these."""

from __future__ import annotations

import html
import math

import pandas as pd

from batchlab.analysis.stats import is_finite

# a verdict's mark in the tables: at a glance, before its words
MARKS = {"supported": "✔", "not supported": "✘", "depends on the lr": "≈", "mixed": "◐", "inconclusive": "?", "waiting": "…"}


def fmt_int(n) -> str:
    return f"{int(round(n)):,}" if is_finite(n) else "n/a"


def fmt_num(x, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if is_finite(x) else "n/a"


def fmt_pct(x) -> str:
    return f"{100 * x:.1f}%" if is_finite(x) else "n/a"


def fmt_points(d: dict) -> str:
    """A paired difference of accuracies (batchlab.analysis.stats.Paired.as_dict) in points."""
    if not is_finite(d.get("mean")):
        return "n/a"
    if not (is_finite(d.get("lo")) and is_finite(d.get("hi"))):
        return f"{100 * d['mean']:+.2f} points ({d.get('n', 0)} paired seed(s): no interval)"
    return f"{100 * d['mean']:+.2f} points [{100 * d['lo']:+.2f}, {100 * d['hi']:+.2f}] over {d['n']} paired seeds"


def ci_text(ci: dict | None, fmt=fmt_num) -> str:
    """A mean with its 95% interval: '0.5 [0.25, 0.75]', or '(1 seed)' where there is none."""
    if not ci or not is_finite(ci.get("mean")):
        return "n/a"
    if is_finite(ci.get("lo")) and is_finite(ci.get("hi")):
        return f"{fmt(ci['mean'])} [{fmt(ci['lo'])}, {fmt(ci['hi'])}]"
    return f"{fmt(ci['mean'])} (1 seed)"


def cell_label(b: int, lr: float) -> str:
    return f"batch {b} at lr {lr:g}"


def grid_edge(value) -> str | None:
    """'lowest', 'highest' or None (a missing value read back from parquet is NaN, not None)."""
    return value if isinstance(value, str) and value else None


def mark(verdict: str) -> str:
    return MARKS.get(verdict, "?")


def html_table(frame: pd.DataFrame, css_class: str = "data") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False)
    )
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def nan(value) -> float:
    """None (a NaN written to JSON) back to NaN."""
    return float("nan") if value is None else float(value)


def finite_or(value, default=math.nan):
    return value if is_finite(value) else default
