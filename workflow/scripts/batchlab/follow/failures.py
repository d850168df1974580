"""What failed in a run, said once at its end: each failed job's cell and the reason its log gives.

Snakemake reports a failed job where it happens, in the middle of the output of the jobs that
go on (--keep-going); this reads its log file afterwards and names them together, with the
Slurm log of the Slurm job it ran in where there is one (a cell's own, or its group job's).
"""

from __future__ import annotations

import re
from pathlib import Path

ERROR_BLOCK = re.compile(r"^Error in rule (?P<rule>\w+):\n(?P<body>(?:[ \t]+.*\n?)*)", re.M)
# a group job (several cells in one Slurm job): its Slurm log, then each of its jobs, indented
GROUP_BLOCK = re.compile(r"^[ \t]+message: Error in group (?P<group>\S+)\n(?P<body>(?:[ \t]+.*\n?)*)", re.M)
LOG_LINE = re.compile(
    r"^(?P<indent>[ \t]+)log: (?P<paths>.+?)(?: \(check log file\(s\) for error details\))?$", re.M
)
RULE_LINE = re.compile(r"^[ \t]+(?:local)?rule (?P<rule>\w+):$")
SLURM_LOGS = ".snakemake/slurm_logs/"


def _paths(text: str) -> list[str]:
    return [p for p in (s.strip() for s in text.split(", ")) if p]


def _own_and_slurm(paths: list[str]) -> tuple[str | None, str | None]:
    """A job's own log (its first) and the Slurm log the executor added to the list."""
    own = [p for p in paths if SLURM_LOGS not in p]
    slurm = [p for p in paths if SLURM_LOGS in p]
    return (own[0] if own else None), (slurm[0] if slurm else None)


def _rule_jobs(match: re.Match) -> list[dict]:
    log = LOG_LINE.search(match["body"])
    own, slurm = _own_and_slurm(_paths(log["paths"])) if log else (None, None)
    return [{"rule": match["rule"], "log": own, "slurm_log": slurm, "group": None}]


def _group_jobs(match: re.Match) -> list[dict]:
    """Every job of a failed group job: Snakemake lists them all (the Slurm job failed as one)."""
    lines = match["body"].splitlines()
    top = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
    slurm, jobs, rule = None, [], None
    for line in lines:
        found = RULE_LINE.match(line)
        if found:
            rule = found["rule"]
            continue
        log = LOG_LINE.match(line)
        if not log:
            continue
        own, in_slurm = _own_and_slurm(_paths(log["paths"]))
        if len(log["indent"]) == top and slurm is None:
            slurm = in_slurm or own  # the group's own log line names its Slurm log
        elif own and rule:
            jobs.append({"rule": rule, "log": own, "slurm_log": None, "group": match["group"]})
    for job in jobs:
        job["slurm_log"] = slurm
    return jobs


def failed_jobs(snakemake_log: str) -> list[dict]:
    """{'rule', 'log', 'slurm_log', 'group'} for every failed job of a Snakemake log (its own
    "Error in rule" block, or its group's "Error in group" block), in order, once each."""
    found = [(m.start(), _rule_jobs(m)) for m in ERROR_BLOCK.finditer(snakemake_log)]
    found += [(m.start(), _group_jobs(m)) for m in GROUP_BLOCK.finditer(snakemake_log)]
    out, seen = [], set()
    for _, jobs in sorted(found, key=lambda f: f[0]):
        for job in jobs:
            key = (job["rule"], job["log"])
            if key not in seen:
                seen.add(key)
                out.append(job)
    return out


def _lines(log_path: str | None, workdir: Path) -> list[str] | None:
    if not log_path or not (workdir / log_path).exists():
        return None
    return [ln.strip() for ln in (workdir / log_path).read_text(errors="replace").splitlines() if ln.strip()]


def reason(log_path: str | None, workdir: Path) -> str:
    """The job's own last word: its batchlab error line, else the last line of its log."""
    lines = _lines(log_path, workdir)
    if lines is None:
        return "no log"
    errors = [ln for ln in lines if ln.startswith("batchlab error:")]
    return (errors or lines or ["empty log"])[-1]


def _shown(path: str, workdir: Path) -> str:
    """A path as short as it is true: relative to the working directory where it lies in it."""
    try:
        return str(Path(path).relative_to(workdir.resolve()))
    except ValueError:
        return path


def summary(snakemake_log: str, workdir: Path) -> str | None:
    jobs = failed_jobs(snakemake_log)
    if not jobs:
        return None
    lines = [f"batchlab: {len(jobs)} job(s) failed; every other job that could run has finished:"]
    for job in jobs:
        name = Path(job["log"]).stem if job["log"] else "?"
        what = f"cell {name}" if job["rule"] == "train" else f"rule {job['rule']}"
        why = reason(job["log"], workdir)
        if job["group"] and not why.startswith("batchlab error:"):
            # a cell of a group job that failed because another cell of it did, or never ran
            ended = f"its own log ends: {why}" if _lines(job["log"], workdir) else "it did not start"
            why = f"its group's Slurm job failed ({ended})"
        where = f"log: {job['log']}"
        if job["slurm_log"]:
            label = f"Slurm log of group {job['group']}" if job["group"] else "Slurm log"
            where += f"; {label}: {_shown(job['slurm_log'], workdir)}"
        lines.append(f"  {what}: {why} ({where})")
    lines.append("Fix the cause and run the same command again: finished cells are kept.")
    return "\n".join(lines)
