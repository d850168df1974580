"""A report of what has finished (results/report/partial.html), while the study runs: the
cells done so far through the same tables and sections as the full report, marked partial at
the top, each verdict waiting while the cells it reads are missing. It writes only its own
file and reads nothing Snakemake or DVC is writing."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from batchlab import BatchlabError
from batchlab.analysis.tables import Settings, study_tables
from batchlab.analysis.verdicts import waiting_for
from batchlab.cells import FILES
from batchlab.config import params_hash
from batchlab.follow.status import current_choice, study_status
from batchlab.io import write_text
from batchlab.provenance import git_state, version_stamp
from batchlab.report import Inputs, build_sections, render_html, vega_bundle
from batchlab.summary import REPORT_INPUTS

PARTIAL = Path("results/report/partial.html")


def missing_by_group(cells) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in cells:
        if c.state != "done":
            for g in c.groups:
                out[g] = out.get(g, 0) + 1
    return out


def peek(root: Path) -> tuple[Path, str]:
    """Write the partial report; (its path, a line saying what it holds)."""
    root = Path(root)
    status = study_status(root)
    config = status["manifest"]["config"]
    done = [c for c in status["cells"] if c.state == "done"]
    if not done:
        raise BatchlabError("no cell has finished yet, so there is nothing to report; try again once `make status` shows one done")
    if not any("grid" in c.groups for c in done):
        raise BatchlabError("no cell of the grid has finished yet (the report is built on it); try again once `make status` shows one")
    runs = root / "results/runs"
    paths = [tuple(runs / c.cell / f for f in FILES.values()) for c in done]
    chosen = current_choice(root, status["manifest"])
    t = study_tables(paths, chosen, Settings.from_config(config))
    missing = missing_by_group(status["cells"])
    analysis = {**t.analysis, "verdicts": waiting_for(t.analysis["verdicts"], missing)}
    read = {name: getattr(t, name) for name in REPORT_INPUTS}  # what the full report reads back
    study = Inputs(**{**read, "analysis": analysis}, config=config)
    checksums_path = root / "data/mnist/raw/checksums.json"
    checksums = json.loads(checksums_path.read_text()) if checksums_path.exists() else {}
    stamp = version_stamp(git_state(root), params_hash(config), checksums, list(t.cells["device"].dropna()), dt.datetime.now(dt.UTC))
    total = len(status["cells"])
    waits = sum(v["verdict"] == "waiting" for v in analysis["verdicts"])
    if len(done) == total:
        banner = f"All {total} cells are done: the full report is {PARTIAL.with_name('index.html')} once aggregate has run."
    else:
        banner = f"Partial report: {len(done)} of {total} cells done" + (f"; {waits} verdict(s) wait for the rest" if waits else "") + "."
    page = render_html(config["report"]["title"] + " (partial)", build_sections(study), stamp, vega_bundle(), banner)
    write_text(root / PARTIAL, page)
    return root / PARTIAL, banner
