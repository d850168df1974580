"""Warm starts: jobs forked from a server that imported PyTorch once, with real processes,
sockets and signals. Each job here is a client process, as a Snakemake script is."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from batchlab import warm
from conftest import wait_for

SCRIPTS = Path(warm.__file__).resolve().parents[1]

JOBS = """
import json, os, sys, time
from pathlib import Path

def record(path, startup, code=0):
    import batchlab
    print("out from the job", flush=True)
    print("err from the job", file=sys.stderr, flush=True)
    Path(path).write_text(json.dumps({
        "startup": startup, "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
        "x": os.environ.get("X"), "umask": os.umask(0o022), "batchlab": batchlab.__file__,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "torch_loaded": "torch" in sys.modules,
    }))
    sys.exit(int(code))

def fail(startup):
    raise RuntimeError("the job broke")

def die(startup):
    import signal
    os.kill(os.getpid(), signal.SIGKILL)

def nap(path, startup):
    Path(path).write_text(str(os.getppid()))
    time.sleep(2)
    Path(path + ".done").write_text("yes")

def wait(path, startup):
    Path(path).write_text(str(os.getpid()))
    try:
        time.sleep(120)
    except KeyboardInterrupt:
        Path(path + ".interrupted").write_text("yes")
        raise
"""

CLIENT = """
import sys
sys.path[:0] = [{jobs!r}, {scripts!r}]
from batchlab import warm
warm.exit_with(warm.run("jobs", sys.argv[1], dict(zip(sys.argv[2::2], sys.argv[3::2]))))
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A private server folder for this module; its servers are stopped at the end."""
    path = tmp_path_factory.mktemp("warm")
    path.chmod(0o700)
    yield path
    stop_and_wait(path)


def stop_and_wait(path: Path) -> None:
    for pid in warm.stop_all(path, wait_s=10):
        assert not warm.process_running(pid), f"server {pid} did not exit"


def private_folder(path: Path) -> Path:
    """A folder for servers of one test: theirs alone."""
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def jobs(tmp_path) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "jobs.py").write_text(JOBS)
    return folder


def client(jobs: Path, folder: Path, function: str, *args: str, env: dict | None = None, **kw):
    """Start one job's process, as Snakemake would: python running the adapter."""
    full_env = {**os.environ, "BATCHLAB_WARM_DIR": str(folder), "BATCHLAB_WARM_IDLE": "30", **(env or {})}
    code = CLIENT.format(jobs=str(jobs), scripts=str(SCRIPTS))
    return subprocess.Popen(
        [sys.executable, "-c", code, function, *args],
        cwd=jobs,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def started(jobs: Path, folder: Path, function: str, marker: str):
    """A job that writes a pid to jobs/marker once it runs: its client process and that pid."""
    job = client(jobs, folder, function, "path", str(jobs / marker))
    path = jobs / marker
    wait_for(lambda: path.exists() and path.read_text().strip(), 60, "the job to start")
    return job, int(path.read_text())


def finish(process) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def record(jobs, folder, name="r.json", env=None, code="0"):
    done = finish(client(jobs, folder, "record", "path", str(jobs / name), "code", code, env=env))
    return done, json.loads((jobs / name).read_text())


def test_a_job_runs_in_a_child_of_the_server_with_its_own_process_state(jobs, folder):
    (rc, out, err), first = record(jobs, folder, "first.json", env={"X": "forty-two"})
    assert rc == 0, err
    (rc2, _, err2), second = record(jobs, folder, "second.json", env={"X": "forty-two"})
    assert rc2 == 0, err2
    for result in (first, second):
        assert result["startup"]["mode"] == "warm"
        assert result["torch_loaded"]  # imported by the server, before the fork
        assert result["cwd"] == str(jobs) and result["x"] == "forty-two"
        assert result["batchlab"] == str(SCRIPTS / "batchlab" / "__init__.py")
    # one server: the second job did not start another, and found it at once
    assert first["ppid"] == second["ppid"] and second["pid"] != first["pid"]
    handoff = second["startup"]["child_start"] - second["startup"]["client_start"]
    assert handoff < 1.0
    # the job's output reaches the client's own stdout and stderr
    assert "out from the job" in out and "err from the job" in err


def test_the_jobs_exit_status_and_errors_reach_the_client(jobs, folder):
    (rc, _, _), _ = record(jobs, folder, code="3")
    assert rc == 3
    rc, _, err = finish(client(jobs, folder, "fail"))
    assert rc == 1
    assert "RuntimeError: the job broke" in err and "Traceback" in err


def test_the_job_gets_the_clients_umask(jobs, folder):
    path = jobs / "umask.json"
    rc, _, err = finish(client(jobs, folder, "record", "path", str(path), umask=0o077))
    assert rc == 0, err
    result = json.loads(path.read_text())
    assert result["startup"]["mode"] == "warm" and result["umask"] == 0o077


def test_killing_the_client_with_sigkill_kills_the_job(jobs, folder):
    job, pid = started(jobs, folder, "wait", "pid")
    assert pid != job.pid  # the job runs in the server's child, not in the client
    job.kill()
    job.wait()
    wait_for(lambda: not warm.process_running(pid), 5, "the job to die with its client")


def test_sigterm_and_sigint_are_forwarded_and_the_client_dies_the_same_way(jobs, folder):
    for sig in (signal.SIGTERM, signal.SIGINT):
        marker = jobs / f"pid{sig}"
        job, pid = started(jobs, folder, "wait", marker.name)
        job.send_signal(sig)
        rc, _, err = finish(job)
        assert rc == -sig, err
        assert not warm.process_running(pid)
        # SIGINT reaches Python in the job as KeyboardInterrupt (where a trainer can clean up)
        assert Path(f"{marker}.interrupted").exists() == (sig == signal.SIGINT)


def test_a_job_killed_outright_kills_its_client_the_same_way(jobs, folder):
    rc, _, err = finish(client(jobs, folder, "die"))
    assert rc == -signal.SIGKILL, err


def test_sigterm_stops_the_server_after_its_running_job_finishes(jobs, tmp_path):
    folder = private_folder(tmp_path / "term")
    marker = jobs / "napping"
    job, server = started(jobs, folder, "nap", marker.name)  # the job writes its parent's pid
    os.kill(server, signal.SIGTERM)
    wait_for(lambda: not list(folder.glob("*.sock")), 5, "the server to stop taking jobs")
    assert warm.process_running(server)  # still waiting for its job
    rc, _, err = finish(job)
    assert rc == 0, err
    assert Path(f"{marker}.done").exists()
    wait_for(lambda: not warm.process_running(server), 10, "the server to exit")


def test_warm_start_is_off_when_asked_and_inside_a_slurm_job(jobs, folder):
    for env, reason in (
        ({"BATCHLAB_WARM_START": "0"}, "BATCHLAB_WARM_START=0"),
        ({"SLURM_JOB_ID": "1234"}, "inside a batch-scheduler job (SLURM_JOB_ID=1234)"),
    ):
        (rc, _, err), result = record(jobs, folder, env=env)
        assert rc == 0, err
        assert result["startup"]["mode"] == "cold" and result["startup"]["why_cold"] == reason
        assert "imports_s" in result["startup"]


def test_a_system_without_pidfds_runs_jobs_cold(monkeypatch):
    """An old kernel or a container's seccomp profile: pidfd_open fails with ENOSYS or EPERM."""

    def refused(pid, flags=0):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", refused)
    assert warm.why_not_warm({}) == "this system refuses pidfd_open ([Errno 38] Function not implemented)"
    monkeypatch.undo()
    assert warm.why_not_warm({}) is None


def test_a_folder_others_can_write_is_refused_and_the_job_runs_cold(jobs, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (rc, _, err), result = record(jobs, shared)
    assert rc == 0, err
    assert result["startup"]["mode"] == "cold"
    assert (
        result["startup"]["why_cold"] == f"{shared} is not a folder that only this user may enter (chmod 700)"
    )
    assert not list(shared.iterdir())
    shared.chmod(0o750)  # others may not write, but could connect: refused as well
    (rc, _, err), result = record(jobs, shared)
    assert rc == 0, err
    assert result["startup"]["mode"] == "cold" and not list(shared.iterdir())


def test_a_stale_socket_is_replaced_and_concurrent_first_jobs_share_one_new_server(jobs, tmp_path):
    folder = private_folder(tmp_path / "fresh")
    env = {**os.environ, "BATCHLAB_WARM_DIR": str(folder), "BATCHLAB_WARM_IDLE": "30"}
    env.pop("BATCHLAB_WARM_START", None)
    stale = folder / f"{warm.server_key(sys.executable, env)}.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale))  # a socket file nobody listens on: a server that was killed
    dead.close()
    try:
        started = [client(jobs, folder, "record", "path", str(jobs / f"c{i}.json")) for i in range(3)]
        for job in started:
            rc, _, err = finish(job)
            assert rc == 0, err
    finally:
        stop_and_wait(folder)
    results = [json.loads((jobs / f"c{i}.json").read_text()) for i in range(3)]
    assert {r["startup"]["mode"] for r in results} == {"warm"}
    assert len({r["ppid"] for r in results}) == 1


def test_an_idle_server_exits_and_removes_its_socket(jobs, tmp_path):
    folder = private_folder(tmp_path / "idle")
    (rc, _, err), result = record(jobs, folder, env={"BATCHLAB_WARM_IDLE": "1"})
    assert rc == 0, err
    assert result["startup"]["mode"] == "warm"
    wait_for(lambda: not warm.process_running(result["ppid"]), 10, "the idle server to exit")
    assert not list(folder.glob("*.sock"))


def test_a_bad_idle_time_leaves_the_job_cold_with_the_reason(jobs, tmp_path):
    folder = private_folder(tmp_path / "idle-time")
    (rc, _, err), result = record(jobs, folder, env={"BATCHLAB_WARM_IDLE": "soon"})
    assert rc == 0, err
    assert result["startup"]["why_cold"] == "BATCHLAB_WARM_IDLE='soon' is not a number of seconds"


def test_a_server_that_cannot_start_leaves_the_job_cold_with_the_reason(jobs, tmp_path):
    folder = private_folder(tmp_path / "broken")
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "torch.py").write_text("raise ImportError('this torch is broken')\n")
    (rc, _, err), result = record(jobs, folder, env={"PYTHONPATH": str(shadow)})
    assert rc == 0, err
    why = result["startup"]["why_cold"]
    assert why.startswith("the warm-start server exited at start (status 1; see ") and why.endswith(".log)")
    assert "ImportError: this torch is broken" in Path(why.split("see ")[1][:-1]).read_text()


def test_something_else_at_the_socket_path_leaves_the_job_cold(jobs, tmp_path):
    folder = private_folder(tmp_path / "occupied")
    env = {**os.environ, "BATCHLAB_WARM_DIR": str(folder), "BATCHLAB_WARM_IDLE": "30"}
    (folder / f"{warm.server_key(sys.executable, env)}.sock").mkdir()
    (rc, _, err), result = record(jobs, folder)
    assert rc == 0, err
    assert result["startup"]["mode"] == "cold" and "Is a directory" in result["startup"]["why_cold"]


def test_a_server_killed_under_a_running_job_takes_the_job_down_and_says_so(jobs, tmp_path):
    folder = private_folder(tmp_path / "doomed")
    job, child = started(jobs, folder, "wait", "pid")
    server = int(next(folder.glob("*.pid")).read_text())
    os.kill(server, signal.SIGKILL)
    rc, _, err = finish(job)
    assert rc == 1 and "died while job process" in err
    wait_for(lambda: not warm.process_running(child), 5, "the orphaned job to be killed by its client")


def test_jobs_started_under_other_limits_get_a_server_of_their_own(jobs, folder):
    (rc, _, err), plain = record(jobs, folder, "plain.json")
    assert rc == 0, err
    done = finish(
        client(jobs, folder, "record", "path", str(jobs / "nice.json"), preexec_fn=lambda: os.nice(5))
    )
    assert done[0] == 0, done[2]
    niced = json.loads((jobs / "nice.json").read_text())
    assert niced["startup"]["mode"] == "warm" and niced["nice"] == plain["nice"] + 5
    assert niced["ppid"] != plain["ppid"]  # a child of the default server would run at its nice value
