"""The report's version stamp: which code, config, data and software produced it."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import subprocess
from pathlib import Path

from batchlab import __version__

PACKAGES = ("torch", "numpy", "pandas", "pyarrow", "altair", "vl-convert-python", "snakemake")


# what a run of the study itself rewrites: results (committed summaries among them) and DVC's
# lock file. Changes there do not make the code, config or data differ from the commit.
RUN_OUTPUTS = ("results", "dvc.lock")


def git_state(workdir: str | Path) -> dict:
    """Commit of the checkout at workdir and whether its code, config or data differ from it
    (the study's own outputs aside); None values outside a git checkout."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(workdir), *args], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git(
        "status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){p}" for p in RUN_OUTPUTS)
    )
    return {"commit": commit, "dirty": bool(status)}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"batchlab": __version__, "python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def version_stamp(
    git: dict, params_hash: str, data_checksums: dict, devices: list[str], now: dt.datetime
) -> dict:
    return {
        "batchlab": __version__,
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "params_hash": params_hash,
        "data_md5": {name: rec["md5_decompressed"] for name, rec in sorted(data_checksums.items())},
        "packages": package_versions(),
        "devices": sorted(set(devices)),
        "host": platform.node(),
        "date": now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def git_show(workdir: str | Path, rev: str, path: str) -> str | None:
    """The text of path at revision rev, or None (no git, no such revision or file)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(workdir), "show", f"{rev}:{path}"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
