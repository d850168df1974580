"""What failed in a run, said once at its end: each failed job's cell and the reason its log gives.

Snakemake reports a failed job where it happens, in the middle of the output of the jobs that
go on (--keep-going); this reads its log file afterwards and names them together.
"""

from __future__ import annotations

import re
from pathlib import Path

ERROR_BLOCK = re.compile(r"^Error in rule (?P<rule>\w+):\n(?P<body>(?:[ \t]+.*\n?)*)", re.M)


def failed_jobs(snakemake_log: str) -> list[dict]:
    """{'rule', 'log'} for every "Error in rule" block of a Snakemake log, in order, once each."""
    out, seen = [], set()
    for match in ERROR_BLOCK.finditer(snakemake_log):
        log = re.search(r"^\s+log: (\S+)", match["body"], re.M)
        key = (match["rule"], log[1] if log else None)
        if key not in seen:
            seen.add(key)
            out.append({"rule": key[0], "log": key[1]})
    return out


def reason(log_path: str | None, workdir: Path) -> str:
    """The job's own last word: its batchlab error line, else the last line of its log."""
    if not log_path or not (workdir / log_path).exists():
        return "no log"
    lines = [ln.strip() for ln in (workdir / log_path).read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("batchlab error:")]
    return (errors or lines or ["empty log"])[-1]


def summary(snakemake_log: str, workdir: Path) -> str | None:
    jobs = failed_jobs(snakemake_log)
    if not jobs:
        return None
    lines = [f"batchlab: {len(jobs)} job(s) failed; every other job that could run has finished:"]
    for job in jobs:
        name = Path(job["log"]).stem if job["log"] else "?"
        what = f"cell {name}" if job["rule"] == "train" else f"rule {job['rule']}"
        lines.append(f"  {what}: {reason(job['log'], workdir)} (log: {job['log']})")
    lines.append("Fix the cause and run the same command again: finished cells are kept.")
    return "\n".join(lines)
