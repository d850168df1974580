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
        f"Each claim of the original post, tested on this study's data over its {seeds} seed(s) by a rule fixed"
        " before the data (its 'what this test can and cannot show'). Two settings are compared seed by seed (seeds"
        " share initial weights and data order across cells), by exact one-sided sign-flip tests that assume no"
        " normal distribution: 'supported' when the difference lies on the claim's side of 0, 'not supported' when"
        " it falls short of a margin too small to matter (or lies the other way). A claim read 'at the best lr' is"
        " read at every near-optimal lr (every pair, where two batch sizes are compared: the lrs the paired test"
        " cannot show worse than the best by 0.2 points of validation accuracy), and decided only where every"
        " reading agrees; 'depends on the lr' where they disagree, with the range they found. Holm's correction"
        " over the family of verdicts (both hypotheses of each; listed under Method) keeps the chance of any false"
        " decision at 5%. Intervals shown are 95% t-intervals, for the size of an effect; the decision is the"
        " sign-flip test's. Best lrs are chosen on the validation set and compared on the test set.",
        tables=[html_table(table.rename(columns={"test": "what this test can and cannot show"}), css_class="data verdicts")],
    )
