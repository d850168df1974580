"""Where a study stands, read from its files alone (no Snakemake, no lock, no process ids, so it
holds on a cluster and after a run was killed): each cell done, running, interrupted, failed or
waiting; for a running cell its progress line; an ETA for the rest from the speed of the cells
that finished.

A cell is *done* when its metrics.json reads; *failed* when its log or the newest Snakemake log
says so; *running* while its log keeps growing (a training job logs a progress line at least
every window, 10 s), *interrupted* once it has been silent for three windows; *waiting* else.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from batchlab.analysis.selection import seed_failed
from batchlab.cells import FILES, cell_name, format_lr
from batchlab.follow.failures import failed_jobs
from batchlab.follow.manifest import read_manifest

PROGRESS = re.compile(
    r"epoch (?P<epoch>\d+)/(?P<epochs>\d+) step (?P<step>\d+)/(?P<steps>\d+) \| (?P<training>\d+)/(?P<seeds>\d+)"
    r" seeds training \| (?P<rate>[\d.]+) samples/s \| recent loss (?P<loss>\S+) \| cell ETA (?P<eta>[\d.]+) s"
)
SILENT_WINDOWS = 3  # a running cell silent for this many windows is interrupted
GROUP_ORDER = ["grid", "optimizers", "remedies", "solution2", "equal_updates"]


@dataclass
class CellStatus:
    cell: str
    groups: list[str]
    batch_size: int
    epochs: int
    state: str = "waiting"  # done, running, interrupted, failed, waiting
    fates: dict = field(default_factory=dict)  # done: seeds by outcome
    progress: dict | None = None  # running: the last progress line's fields
    job_seconds: float | None = None  # done: the job's time
    reason: str = ""


def last_progress(log_text: str) -> dict | None:
    """The fields of the last progress line of a training log (None: none yet, or an older
    format)."""
    matches = list(PROGRESS.finditer(log_text))
    if not matches:
        return None
    found = matches[-1]
    fields = found.groupdict()
    return {k: float(v) if k in ("rate", "eta") else (fields[k] if k == "loss" else int(v)) for k, v in fields.items()}


def done_fates(metrics_path: Path, planned_seeds=None) -> tuple[dict | None, float | None, str]:
    """(seeds by outcome, the job's seconds, '') of a finished cell, or (None, None, why):
    why is 'outdated' when it holds other seeds than the run plans."""
    try:
        record = json.loads(metrics_path.read_text())
        seeds = record["seeds"]
        held = sorted(int(s["seed"]) for s in seeds)
    except (OSError, ValueError, KeyError, TypeError):
        return None, None, f"{metrics_path} cannot be read; delete its folder to train the cell again"
    if planned_seeds is not None and held != sorted(planned_seeds):
        return None, None, "outdated"
    fates = {"ok": 0, "diverged": 0, "collapsed": 0, "failed to learn": 0}
    for s in seeds:
        status = s.get("status", "ok")
        if status == "ok" and seed_failed("ok", s.get("final_val_acc")):
            status = "failed to learn"
        fates[status] = fates.get(status, 0) + 1
    seconds = seeds[0].get("train_and_eval_seconds") if seeds else None
    return fates, seconds, ""


def benchmark_seconds(path: Path) -> float | None:
    try:
        lines = path.read_text().splitlines()
        return float(lines[1].split("\t")[0])
    except (OSError, IndexError, ValueError):
        return None


def current(path: Path, manifest: dict, cell: str) -> bool:
    """Whether a cell's file belongs to this run: written since the run started, or left by an
    earlier run of a cell this run does not retrain (unknown: the file counts)."""
    to_run = manifest.get("to_run")
    return to_run is None or cell not in to_run or path.stat().st_mtime >= manifest.get("started_unix", 0.0)


def cell_status(root: Path, entry: dict, now: float, manifest: dict, failed: set[str]) -> CellStatus:
    c = CellStatus(entry["cell"], entry["groups"], int(entry["batch_size"]), int(entry["epochs"]))
    run, log = root / "results/runs" / c.cell, root / "logs/train" / f"{c.cell}.log"
    metrics, outdated = run / FILES["metrics"], False
    if metrics.exists() and current(metrics, manifest, c.cell):
        fates, seconds, why = done_fates(metrics, manifest.get("seeds"))
        if fates is not None:
            c.state, c.fates = "done", fates
            c.job_seconds = benchmark_seconds(root / "results/benchmarks/train" / f"{c.cell}.tsv") or seconds
            return c
        if why != "outdated":
            c.state, c.reason = "failed", why
            return c
        outdated = True  # another seed list: this run trains it again, and its old log says nothing
    started = manifest.get("started_unix", 0.0)
    if not log.exists() or not current(log, manifest, c.cell) or (outdated and log.stat().st_mtime < started):
        c.state = "failed" if c.cell in failed else "waiting"
        c.reason = "its job failed before writing a log (see the Snakemake log)" if c.cell in failed else ""
        return c
    text = log.read_text(errors="replace")
    errors = [ln for ln in text.splitlines() if ln.startswith("batchlab error:") or ln.startswith("Traceback")]
    if errors or c.cell in failed:
        c.state, c.reason = "failed", (errors[-1] if errors else "its job failed (see its log)")
        return c
    c.progress = last_progress(text)
    silent = now - log.stat().st_mtime
    if silent <= SILENT_WINDOWS * float(manifest.get("window_seconds", 10.0)):
        c.state = "running"
    else:
        c.state = "interrupted"
        kept = (root / "results/checkpoints" / f"{c.cell}.pt").exists()
        c.reason = f"silent for {silent:.0f} s" + ("; its checkpoint is kept, a rerun resumes it" if kept else "")
    return c


def current_choice(root: Path, manifest: dict) -> dict:
    """The lrs the equal-updates checkpoint chose, where its choice belongs to this run (a run
    that reruns the checkpoint makes an older choice stale)."""
    choice = root / "results/summary/equal_updates.json"
    if not choice.exists():
        return {}
    if manifest.get("later_rerun") and choice.stat().st_mtime < manifest.get("started_unix", 0.0):
        return {}
    try:
        return json.loads(choice.read_text()).get("chosen") or {}
    except ValueError:
        return {}


def later_cells(root: Path, manifest: dict) -> list[dict]:
    """The runs planned after the grid, named once the checkpoint chose their lr."""
    chosen, out = current_choice(root, manifest), []
    for run in manifest.get("later", []):
        b = int(run["batch_size"])
        lr = chosen.get(str(b))
        name = cell_name(b, format_lr(lr) if lr is not None else "?", run["suffix"])
        out.append({"cell": name, "groups": [run["group"]], "batch_size": b, "epochs": run["epochs"], "variant": ""})
    return out


def newest_snakemake_failures(root: Path) -> set[str]:
    logs = sorted((root / ".snakemake/log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return set()
    jobs = failed_jobs(logs[-1].read_text(errors="replace"))
    return {Path(j["log"]).stem for j in jobs if j["rule"] == "train" and j["log"]}


def study_status(root: Path, now: float | None = None) -> dict:
    """Every cell's status, the counts by group, and the ETA."""
    root = Path(root)
    manifest = read_manifest(root)
    now = time.time() if now is None else now
    failed = newest_snakemake_failures(root)
    later = later_cells(root, manifest)
    if manifest.get("later_rerun") and manifest.get("to_run") is not None:
        # the checkpoint reruns, so the runs after it do too: their old outputs are not done
        manifest = {**manifest, "to_run": manifest["to_run"] + [e["cell"] for e in later]}
    cells = [cell_status(root, e, now, manifest, failed) for e in manifest["cells"] + later]
    settled = not any(c.state in ("running", "waiting") for c in cells)
    return {"manifest": manifest, "cells": cells, "eta": eta(cells, manifest), "complete": all(c.state == "done" for c in cells),
            "settled": settled}  # fmt: skip


def eta(cells: list[CellStatus], manifest: dict) -> dict:
    """Seconds until every cell is done, from the measured job time per epoch of the finished
    cells at each batch size (the nearest measured batch size where one has none), run as many
    at a time as run now (or the run's cores)."""
    done = [c for c in cells if c.state == "done" and c.job_seconds]
    left = [c for c in cells if c.state in ("running", "waiting", "interrupted")]
    if not left:
        return {"seconds": 0.0, "basis": "nothing left to train"}
    if not done:
        return {"seconds": None, "basis": "too little to go on: no cell has finished yet"}
    per_epoch: dict[int, list[float]] = {}
    for c in done:
        per_epoch.setdefault(c.batch_size, []).append(c.job_seconds / c.epochs)
    rate = {b: statistics.median(v) for b, v in per_epoch.items()}

    def seconds(c: CellStatus) -> float:
        if c.state == "running" and c.progress:
            return c.progress["eta"]
        b = min(rate, key=lambda m: abs(math.log(m / c.batch_size)))
        return rate[b] * c.epochs

    work = [seconds(c) for c in left]
    running, cores = sum(c.state == "running" for c in cells), manifest.get("cores")
    threads = int(((manifest.get("config") or {}).get("train") or {}).get("threads") or 1)
    if cores and not manifest.get("gpu_jobs"):
        at_once = max(1, min(int(cores) // threads, len(left)))
    else:  # GPU jobs, or no --cores: as many as run now
        at_once = max(1, running)
    rough = sorted({c.batch_size for c in left if not (c.state == "running" and c.progress)} - set(rate))
    basis = f"from {len(done)} finished cells' speed, {at_once} at a time"
    if rough:
        basis += f"; batch {', '.join(map(str, rough))} from the nearest measured batch size"
    return {"seconds": max(max(work), sum(work) / at_once), "basis": basis}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def counts(cells: list[CellStatus]) -> dict:
    out = {k: 0 for k in ("done", "running", "waiting", "interrupted", "failed")}
    for c in cells:
        out[c.state] += 1
    return out


def render(status: dict) -> list[str]:
    """The status as lines of text: the study, then a line per group, then each running,
    interrupted or failed cell."""
    cells, m = status["cells"], status["manifest"]
    n = counts(cells)
    head = f"{n['done']}/{len(cells)} cells done · {n['running']} running · {n['waiting']} waiting"
    head += f" · {n['interrupted']} interrupted · {n['failed']} failed"
    if status["complete"]:
        head = f"study complete: {len(cells)}/{len(cells)} cells done"
    else:
        head += f" · ETA {duration(status['eta']['seconds'])} ({status['eta']['basis']})"
    lines = [f"batchlab study started {m['started']}: {len(cells)} cells of {len(m['seeds'])} seeds ({m['model']})", head]
    groups = sorted({g for c in cells for g in c.groups}, key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else 99, g))
    for g in groups:
        mine = [c for c in cells if g in c.groups]
        k = counts(mine)
        fates = {}
        for c in mine:
            for what, count in c.fates.items():
                if what != "ok":
                    fates[what] = fates.get(what, 0) + count
        seeds = ", ".join(f"{v} {k2}" for k2, v in fates.items() if v)
        line = f"  {g:<14}{k['done']:>3}/{len(mine):<3} done  {k['running']} running  {k['waiting']} waiting"
        line += (f"  {k['interrupted']} interrupted" if k["interrupted"] else "") + (f"  {k['failed']} failed" if k["failed"] else "")
        lines.append(line + (f"  · seeds: {seeds}" if seeds else ""))
    for c in cells:
        if c.state == "running":
            p = c.progress
            what = (
                f"epoch {p['epoch']}/{p['epochs']} step {p['step']:,}/{p['steps']:,}  {p['rate']:,.0f} samples/s"
                f"  loss {p['loss']}  ETA {duration(p['eta'])}"
                if p
                else "starting (no progress line yet)"
            )
            lines.append(f"  running      {c.cell:<22}{what}")
        elif c.state in ("interrupted", "failed"):
            lines.append(f"  {c.state:<13}{c.cell:<22}{c.reason}")
    return lines
