"""Does a study replicate? Its verdicts and optima beside those of its reruns, as Markdown tables
(the README's), from batchlab.analysis.reruns: the same comparison the report's method section
draws.

    .venv/bin/python benchmarks/replication.py NAME=FOLDER NAME=FOLDER [...]

Each FOLDER holds a study's summary (analysis.json and best_lr.csv: results/summary/ or a
studies/<name>/ copy); the first is the study the others rerun.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from batchlab.analysis.reruns import compare_runs  # noqa: E402


def interval(o: dict | None) -> str:
    if o is None:
        return "absent"
    if not (math.isfinite(o["lo"]) and math.isfinite(o["hi"])):
        return f"{o['lr_opt']:.3g} (no interval)"
    return f"{o['lr_opt']:.3g} [{o['lo']:.3g}, {o['hi']:.3g}]"


def main() -> None:
    folders = dict(arg.split("=", 1) for arg in sys.argv[1:])
    runs = {
        name: (json.loads((Path(f) / "analysis.json").read_text())["verdicts"], pd.read_csv(Path(f) / "best_lr.csv"))
        for name, f in folders.items()
    }
    out = compare_runs(runs)
    names = out["runs"]
    print("| claim | " + " | ".join(names) + " | compatible |")
    print("| --- |" + " --- |" * (len(names) + 1))
    for v in out["verdicts"]:
        print(f"| {v['claim']} | " + " | ".join(v["runs"][n] for n in names) + f" | {'yes' if v['compatible'] else 'NO'} |")
    print()
    print("| batch size | " + " | ".join(f"optimum lr, {n}" for n in names) + " | intervals overlap |")
    print("| --- |" + " --- |" * (len(names) + 1))
    for o in out["optima"]:
        both = o["overlap"]
        print(f"| {o['batch_size']} | " + " | ".join(interval(o["runs"][n]) for n in names) + f" | {'n/a' if both is None else 'yes' if both else 'NO'} |")


if __name__ == "__main__":
    main()
