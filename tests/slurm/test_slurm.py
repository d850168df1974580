"""The study on a real one-node Slurm cluster (Debian's slurm-wlm), through profiles/slurm.

The fixture installs slurm-wlm and munge when they are missing, writes a slurm.conf from
`slurmd -C`, starts munged, slurmctld and slurmd, waits for the node to be idle, and stops
exactly the daemons it started.
"""

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import BASIC_CONFIG, copy_workflow, snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_PACKAGES = ["slurm-wlm", "munge"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*cmd, **kw):
    return subprocess.run(list(cmd), capture_output=True, text=True, **kw)


def ensure_packages():
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Slurm is not installed and cannot be: installing slurm-wlm needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = run("apt-get", "install", "-y", "-q", "--no-install-recommends", *SLURM_PACKAGES, env=env)
    if done.returncode != 0:
        run("apt-get", "update", "-q", env=env)
        done = run("apt-get", "install", "-y", "-q", "--no-install-recommends", *SLURM_PACKAGES, env=env)
    assert done.returncode == 0, f"apt-get install {' '.join(SLURM_PACKAGES)} failed:\n{done.stderr}"


def slurm_conf(base: Path, host: str, node_line: str, ports: tuple[int, int]) -> str:
    return "\n".join(
        [
            "ClusterName=batchlab-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ports[0]}",
            f"SlurmdPort={ports[1]}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            f"StateSaveLocation={base}/state",
            f"SlurmdSpoolDir={base}/spool",
            f"SlurmctldPidFile={base}/slurmctld.pid",
            f"SlurmdPidFile={base}/slurmd.pid",
            f"SlurmctldLogFile={base}/slurmctld.log",
            f"SlurmdLogFile={base}/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "MinJobAge=300",
            "SchedulerType=sched/backfill",
            f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN",
            f"PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("starting munged, slurmctld and slurmd needs root")
    ensure_packages()
    base = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (base / sub).mkdir()
    host = socket.gethostname().split(".")[0]
    probe = run("slurmd", "-C")
    node = next(line for line in probe.stdout.splitlines() if line.startswith("NodeName="))
    memory = int(re.search(r"RealMemory=(\d+)", node).group(1))
    node = re.sub(r"RealMemory=\d+", f"RealMemory={memory - 1024}", node)
    node = re.sub(r"NodeName=\S+", f"NodeName={host}", node)
    # Job steps (srun inside a job) read the default location whatever SLURM_CONF said at
    # submission, as on a real cluster's nodes: install ours there, restore the original after.
    conf = Path("/etc/slurm/slurm.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    original = conf.read_bytes() if conf.exists() else None
    conf.write_text(slurm_conf(base, host, node, (free_port(), free_port())))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[tuple[str, Path]] = []
    try:
        yield from _start_and_wait(base, conf, env, started)
    finally:
        if original is None:
            conf.unlink(missing_ok=True)
        else:
            conf.write_bytes(original)
        for _name, pidfile in reversed(started):
            try:
                pid = int(pidfile.read_text().strip())
                os.kill(pid, 15)
            except (OSError, ValueError):
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)


def _start_and_wait(base: Path, conf: Path, env: dict, started: list):
    if run("pgrep", "-x", "munged").returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        if not Path("/etc/munge/munge.key").exists():
            assert run("mungekey", "--create").returncode == 0
            shutil.chown("/etc/munge/munge.key", "munge", "munge")
        assert run("runuser", "-u", "munge", "--", "/usr/sbin/munged").returncode == 0
        started.append(("munged", Path("/run/munge/munged.pid")))
    done = run("slurmctld", "-f", str(conf), env=env)
    assert done.returncode == 0, done.stderr
    started.append(("slurmctld", base / "slurmctld.pid"))
    done = run("slurmd", "-f", str(conf), env=env)
    assert done.returncode == 0, done.stderr
    started.append(("slurmd", base / "slurmd.pid"))
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        state = run("sinfo", "-h", "-o", "%t", env=env).stdout.strip()
        if state == "idle":
            break
        time.sleep(0.5)
    else:
        logs = "\n".join(
            (base / f).read_text()[-2000:] for f in ("slurmctld.log", "slurmd.log") if (base / f).exists()
        )
        pytest.fail(f"the Slurm node did not become idle within 60 s (state {state!r}):\n{logs}")
    yield env


def slurm_job_logs(work: Path) -> dict[str, list[Path]]:
    """The Slurm log of each training job, by cell folder name."""
    logs: dict[str, list[Path]] = {}
    for log in (work / ".snakemake/slurm_logs/rule_train").glob("*/*.log"):
        logs.setdefault(log.parent.name, []).append(log)
    return logs


def test_study_runs_as_slurm_jobs_with_identical_results(slurm_cluster, tiny_study, tmp_path, mnist_mirror):
    work = copy_workflow(tmp_path / "w")
    (work / "tiny.yaml").write_text(BASIC_CONFIG)
    env = {**slurm_cluster, "BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    done = subprocess.run(
        [
            "timeout",
            "-s",
            "INT",
            "-k",
            "30",
            "600",
            str(Path(os.sys.executable).parent / "snakemake"),
            "--profile",
            "profiles/slurm",
            "--configfile",
            "tiny.yaml",
        ],
        cwd=work,
        env={**env, "PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    logs = slurm_job_logs(work)
    cells = sorted(p.name for p in (work / "results/runs").iterdir())
    assert len(cells) == 4  # the basic grid: 2 batch sizes x 2 lrs, all in the tiny study too
    for cell in cells:
        b, lr = re.fullmatch(r"bs(\d+)_lr([\d.]+)", cell).groups()
        # the plugin names log folders by the wildcard values (the recipe is empty here)
        keys = [k for k in logs if k.rstrip("_") == f"{b}_{lr}"]
        assert keys, f"no Slurm job log for {cell}: {sorted(logs)}"
        job_log = logs[keys[0]][0].read_text()
        assert f"cell {cell}: seeds [0, 1]" in job_log  # one Slurm job per cell, both seeds in it
        assert "start-up: " in job_log
        slurm = pd.read_parquet(work / "results/runs" / cell / "losses.parquet")
        local = pd.read_parquet(tiny_study / "results/runs" / cell / "losses.parquet")
        pd.testing.assert_frame_equal(slurm, local)  # same seeds on CPU: identical losses
    assert not (work / ".snakemake/slurm_logs/rule_fetch").exists()  # a local rule
    assert (work / "results/report/index.html").exists()


def test_failing_cell_is_reported_with_its_slurm_log(slurm_cluster, tmp_path, mnist_mirror):
    work = copy_workflow(tmp_path / "w")
    env = {**slurm_cluster, "BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    # a cell asked for by path with a learning rate of 0 fails in its training job
    done = snakemake(
        work,
        "results/runs/bs1000_lr0/metrics.json",
        "--profile",
        "profiles/slurm",
        "--config",
        "train={'epochs': 1}",
        env=env,
        timeout=600,
    )
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "Error in rule train" in out
    match = re.search(r"(\S*\.snakemake/slurm_logs/rule_train/\S+/\d+\.log)", out)
    assert match, out[-4000:]
    log = Path(match.group(1))
    log = log if log.is_absolute() else work / log
    assert "learning rate must be a positive number, got 0" in log.read_text()
