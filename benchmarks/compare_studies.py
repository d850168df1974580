"""Two runs of a study side by side: whether every cell's per-iteration losses are bit-identical,
and which fields of analysis.json differ. For a change that should not move the arithmetic (a
refactor, a new layout): train the study before and after it, then

    .venv/bin/python benchmarks/compare_studies.py BEFORE_DIR AFTER_DIR

Exits 1 when a loss differs or a non-timing field of analysis.json does."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# fields measured in seconds (or derived from them): they differ between any two runs. A field
# is a timing when its key ends with one of these, or sits under measure_share
TIMING_ENDINGS = ("seconds", "_s")
# verdicts decided on the clock (their `key`): every number in them is a timing
TIMED_VERDICTS = ("epoch_time",)


def same_losses(before: Path, after: Path) -> tuple[list[str], list[str]]:
    """(identical cells, cells whose losses differ or are missing on one side)."""
    same, differ = [], []
    names = sorted({p.parent.name for root in (before, after) for p in (root / "results/runs").glob("*/losses.parquet")})
    for name in names:
        a, b = (root / "results/runs" / name / "losses.parquet" for root in (before, after))
        if not (a.exists() and b.exists()):
            differ.append(f"{name} (only in {'after' if b.exists() else 'before'})")
            continue
        x, y = pd.read_parquet(a).sort_values(["seed", "step"]), pd.read_parquet(b).sort_values(["seed", "step"])
        equal = x[["seed", "step"]].to_numpy().tolist() == y[["seed", "step"]].to_numpy().tolist() and np.array_equal(
            x["loss"].to_numpy().view(np.uint32), y["loss"].to_numpy().view(np.uint32)
        )
        (same if equal else differ).append(name)
    return same, differ


def differences(a, b, path="") -> list[str]:
    """The paths at which two JSON values differ (NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b else [path]


def is_timing(path: str, analysis: dict) -> bool:
    if path.startswith(".verdicts["):
        index = int(path[len(".verdicts[") : path.index("]")])
        if analysis["verdicts"][index].get("key") in TIMED_VERDICTS:
            return True
    keys = [part.split("[")[0] for part in path.split(".")]
    return keys[-1].endswith(TIMING_ENDINGS) or "measure_share" in keys


def main(before: Path, after: Path) -> int:
    same, differ = same_losses(before, after)
    print(f"per-iteration losses: {len(same)} cells bit-identical, {len(differ)} not")
    for name in differ:
        print(f"  differs: {name}")
    a, b = (json.loads((root / "results/summary/analysis.json").read_text()) for root in (before, after))
    diffs = differences(a, b)
    timing = [d for d in diffs if is_timing(d, b)]
    other = [d for d in diffs if not is_timing(d, b)]
    print(f"analysis.json: {len(timing)} timing fields differ, {len(other)} other fields")
    for path in other:
        print(f"  differs: {path}")
    for path in timing:
        print(f"  timing: {path}")
    return 1 if differ or other else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
