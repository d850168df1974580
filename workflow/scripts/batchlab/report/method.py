"""How the verdicts were decided: the family Holm's correction runs over, and the split-half
replication (both computed in aggregate: batchlab.analysis.family, batchlab.analysis.replication)."""

from __future__ import annotations

import pandas as pd

from batchlab.report.fmt import fmt_num, html_table
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def family(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"verdict": r["key"], "hypothesis": r["hypothesis"], "p (largest over the near-optimal lrs)": fmt_num(r["p"], 2),
          "Holm level": fmt_num(r["level"], 2), "adjusted p": fmt_num(r["adjusted_p"], 2)} for r in rows]
    )  # fmt: skip


def replication(rep: dict) -> pd.DataFrame:
    a, b = rep["halves"]
    return pd.DataFrame(
        [{"claim": r["claim"], "all seeds": r["whole"], f"seeds {a[0]}-{a[-1]}": r["first_half"], f"seeds {b[0]}-{b[-1]}": r["second_half"],
          "halves disagree": "yes" if r["disagree"] else "no"} for r in rep["verdicts"]]
    )  # fmt: skip


def section(study: Inputs) -> Section | None:
    rows, rep = study.analysis.get("family") or [], study.analysis.get("replication")
    if not rows:
        return None
    tables = [html_table(family(rows))]
    text = (
        f"The family: {len(rows) // 2} verdicts, two one-sided hypotheses each ('for': on the claim's side of 0;"
        " 'against': short of its margin), tested together by Holm's step-down at 5%: the smallest p at 5% / m,"
        " the next at 5% / (m - 1), and so on until one fails. A verdict read at several near-optimal lrs"
        " enters with its largest p (shown at every lr)."
    )
    if rep:
        tables.append(html_table(replication(rep)))
        agree = "agree" if rep["agree"] else "DISAGREE on at least one claim"
        text += (
            " Split-half replication: every verdict decided again on each half of the seeds alone, a study of its"
            " own, each hypothesis at 5% without the family's correction (five seeds cannot go below p = 1/32); a"
            f" half may be inconclusive where the whole is not. Here the halves {agree}."
        )
    return Section("method", "Method: the family of tests and the split-half replication", text, tables=tables)
