"""Each claim with its verdict, the numbers behind it and what its test can and cannot show
(the verdicts are computed in aggregate, batchlab.analysis.verdicts)."""

from __future__ import annotations

import pandas as pd

from batchlab.report.fmt import html_table
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def section(study: Inputs) -> Section | None:
    if not study.verdicts:
        return None
    table = pd.DataFrame(study.verdicts, columns=["claim", "verdict", "evidence", "test"])
    seeds = int(study.grid["seed"].nunique())
    return Section(
        "verdicts",
        "Verdicts on the original claims",
        f"Each claim of the original post, tested on this study's data over its {seeds} seed(s). Where two"
        " settings are compared, the test is the paired difference over their shared seeds (95% t-interval;"
        " seeds share initial weights and data order across cells): 'supported' when it excludes 0 on the"
        " claim's side, 'not supported' when it excludes 0 on the other or lies within a margin too small to"
        " matter, 'inconclusive' when it holds 0 and reaches beyond that margin or fewer than 3 seeds are"
        " shared; 'mixed' when the data point both ways. Best lrs are chosen on the validation set and"
        " compared on the test set.",
        tables=[html_table(table.rename(columns={"test": "what this test can and cannot show"}), css_class="data verdicts")],
    )
