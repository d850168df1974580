"""The study on a real one-node Slurm cluster (Debian's slurm-wlm), through profiles/slurm.

The fixture installs slurm-wlm and munge when they are missing, writes a slurm.conf from
`slurmd -C` (with one GPU GRES backed by /dev/null, so that Slurm counts and hands out a GPU on
a machine without one), starts munged, slurmctld and slurmd, waits for the node to be idle, and
stops exactly the daemons it started.
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

from conftest import BASIC_CONFIG, copy_workflow

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
            "GresTypes=gpu",
            "ReturnToService=2",
            "MinJobAge=300",
            "SchedulerType=sched/backfill",
            f"{node_line} Gres=gpu:1 NodeAddr=127.0.0.1 State=UNKNOWN",
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
    gres = conf.with_name("gres.conf")  # slurmd reads it next to slurm.conf
    conf.parent.mkdir(parents=True, exist_ok=True)
    originals = {path: path.read_bytes() if path.exists() else None for path in (conf, gres)}
    conf.write_text(slurm_conf(base, host, node, (free_port(), free_port())))
    # a GPU GRES needs a device file; /dev/null lets Slurm count one without a GPU
    gres.write_text("AutoDetect=off\nName=gpu File=/dev/null\n")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[tuple[str, Path]] = []
    try:
        yield from _start_and_wait(base, conf, env, started)
    finally:
        for path, original in originals.items():
            if original is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(original)
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


def run_through_profile(work: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """snakemake --profile profiles/slurm in work, stopped with SIGINT (which cancels its Slurm
    jobs) if it runs past 10 minutes."""
    venv_bin = Path(os.sys.executable).parent
    return subprocess.run(
        [
            "timeout",
            "-s",
            "INT",
            "-k",
            "30",
            "600",
            str(venv_bin / "snakemake"),
            "--profile",
            "profiles/slurm",
            *args,
        ],
        cwd=work,
        env={**env, "PATH": f"{venv_bin}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
    )


def group_cells(work: Path) -> None:
    """Turn on the profile's grouping as its comment says (uncomment `groups` and
    `group-components`), and ask one GPU per training cell, as on a GPU partition."""
    profile = work / "profiles/slurm/config.yaml"
    text = profile.read_text()
    edits = {
        "\n#groups: ": "\ngroups: ",
        "\n#group-components: ": "\ngroup-components: ",
        "# gpu: 1\n": "gpu: 1\n",
    }
    for commented, line in edits.items():
        assert commented in text, f"profiles/slurm/config.yaml has no {commented!r} to uncomment"
        text = text.replace(commented, line)
    profile.write_text(text)


def test_study_runs_as_slurm_jobs_with_identical_results(slurm_cluster, tiny_study, tmp_path, mnist_mirror):
    work = copy_workflow(tmp_path / "w")
    (work / "tiny.yaml").write_text(BASIC_CONFIG)
    env = {**slurm_cluster, "BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    done = run_through_profile(work, env, "--configfile", "tiny.yaml")
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


def test_cells_of_one_batch_size_share_one_slurm_job_and_its_gpu(
    slurm_cluster, tiny_study, tmp_path, mnist_mirror
):
    """The profile's grouping on, one GPU per cell: 4 cells of 2 batch sizes run as 2 Slurm
    jobs, each holding the 2 cells of its batch size one after the other on one GPU."""
    work = copy_workflow(tmp_path / "w")
    (work / "tiny.yaml").write_text(BASIC_CONFIG)
    group_cells(work)
    env = {**slurm_cluster, "BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    done = run_through_profile(work, env, "--configfile", "tiny.yaml")
    assert done.returncode == 0, done.stderr[-5000:]
    # the plugin's line for each sbatch it ran
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+\.log)\)", done.stderr)
    assert len(submitted) == 2, done.stderr[-5000:]  # ceil(4 cells / 2 cells per group)
    cells = sorted(p.name for p in (work / "results/runs").iterdir())
    assert len(cells) == 4
    held_by_jobs = []
    for jobid, path in submitted:
        log = Path(path)
        group = re.fullmatch(r"group_cells_(\d+)_train", log.parent.name)
        assert group and log.parent.parent == work / ".snakemake/slurm_logs", path
        text = log.read_text()
        held = re.findall(r"^cell (\S+): seeds \[0, 1\]", text, re.M)
        assert sorted(held) == [c for c in cells if c.startswith(f"bs{group[1]}_")], text[-3000:]
        # one after another: the second cell starts once the first is done
        assert text.index(f"cell {held[1]}: seeds") > text.index("1 of 2 steps (50%) done")
        job = run("scontrol", "show", "job", "-d", jobid, env=slurm_cluster).stdout  # kept for MinJobAge
        assert "JOB_GRES=gpu:1" in job, job  # one GPU for the two cells
        assert "NumCPUs=1 " in job and "MinMemoryNode=4000M" in job, job  # what one cell asks
        assert "TimeLimit=08:00:00" in job, job  # 2 x the cells' 240 min, run in series
        held_by_jobs += held
    assert sorted(held_by_jobs) == cells  # each cell in one Slurm job, none trained twice
    assert not (work / ".snakemake/slurm_logs/rule_train").exists()
    for cell in cells:
        slurm = pd.read_parquet(work / "results/runs" / cell / "losses.parquet")
        local = pd.read_parquet(tiny_study / "results/runs" / cell / "losses.parquet")
        pd.testing.assert_frame_equal(slurm, local)
    assert (work / "results/report/index.html").exists()


@pytest.mark.parametrize("grouped", [False, True], ids=["one-job-per-cell", "grouped"])
def test_failing_cell_is_reported_with_its_slurm_log(slurm_cluster, tmp_path, mnist_mirror, grouped):
    work = copy_workflow(tmp_path / "w")
    if grouped:
        group_cells(work)
    env = {**slurm_cluster, "BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    # a cell asked for by path with a learning rate of 0 fails in its training job
    done = run_through_profile(
        work, env, "results/runs/bs1000_lr0/metrics.json", "--config", "train={'epochs': 1}"
    )
    assert done.returncode not in (0, 124), done.stderr[-4000:]
    out = done.stdout + done.stderr
    assert ("Error in group cells_1000" if grouped else "Error in rule train") in out
    folder = "group_cells_1000_train" if grouped else "rule_train/1000_0_"
    match = re.search(rf"(\S*\.snakemake/slurm_logs/{folder}/(\d+)\.log)", out)
    assert match, out[-4000:]
    log = Path(match.group(1))
    log = log if log.is_absolute() else work / log
    assert "learning rate must be a positive number, got 0" in log.read_text()
    # the run's last word names the cell, its reason, its log and the Slurm log it ran under
    where = "Slurm log of group cells_1000" if grouped else "Slurm log"
    assert (
        "  cell bs1000_lr0: batchlab error: learning rate must be a positive number, got 0"
        f" (log: logs/train/bs1000_lr0.log; {where}: .snakemake/slurm_logs/{folder}/{match[2]}.log)"
    ) in done.stderr, done.stderr[-3000:]
