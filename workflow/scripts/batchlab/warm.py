"""Warm start: run a job in a process forked from a server that has already imported PyTorch.

Importing PyTorch (a CUDA build) costs 2-3 s of every training job on a CPU, and a default
study has a hundred jobs. The first job on a machine starts a small server that imports
torch, numpy and pandas once, then forks one child per job. The job's own process (the
Snakemake script) stays a thin client: it hands the child its stdin, stdout and stderr, its
working folder, environment, umask and sys.path, forwards the signals it gets, and exits with
the child's status. The child imports batchlab afresh from the client's sys.path, so an edit
to the package takes effect in the next job. The server watches each client's pidfd and kills
its child the moment the client is gone (kill -9 included).

A server is shared only by jobs started alike: same host, interpreter, installed preloaded
packages, import-relevant environment, cgroup, CPU affinity, nice value and resource limits
(all in its key), so a job never escapes the limits it was started under. Warm starts are off
under a batch scheduler (a job's work must stay inside its allocation) and with
BATCHLAB_WARM_START=0. Whenever a server cannot be reached or started, the job runs in its own
process instead (a cold start) and says why.

Environment: BATCHLAB_WARM_START (1; 0 turns warm starts off), BATCHLAB_WARM_IDLE (seconds a
server waits for the next job before it exits; 60), BATCHLAB_WARM_DIR (its sockets and logs, a
folder only this user may enter; $TMPDIR/batchlab-warm-$UID). `python -m batchlab.warm stop`
stops the servers of that folder once their running jobs are done.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import importlib.util
import json
import os
import resource
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

PROTOCOL = 2
PRELOAD = ("torch", "numpy", "pandas", "pyarrow.parquet")
DEFAULT_IDLE_S = 60.0
START_TIMEOUT_S = 120.0
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes
SCHEDULER_VARIABLES = (
    "SLURM_JOB_ID",
    "PBS_JOBID",
    "LSB_JOBID",
    "FLUX_JOB_ID",
    "SGE_O_HOST",
    "_CONDOR_JOB_AD",
)
# environment variables that can change what an import does; they are part of a server's key
KEY_PREFIXES = (
    "ARROW_",
    "CONDA_PREFIX",
    "CUDA_",
    "KMP_",
    "LD_",
    "MALLOC_",
    "MKL_",
    "NVIDIA_",
    "OMP_",
    "OPENBLAS_",
    "PYTHON",
    "PYTORCH_",
    "TORCH",
    "VIRTUAL_ENV",
)
KEY_LIMITS = (
    "RLIMIT_AS",
    "RLIMIT_CORE",
    "RLIMIT_CPU",
    "RLIMIT_DATA",
    "RLIMIT_FSIZE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_NOFILE",
    "RLIMIT_NPROC",
    "RLIMIT_RSS",
    "RLIMIT_STACK",
)
FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCONT,
    signal.SIGTSTP,
)
_HEADER = struct.Struct("!I")


class Unavailable(Exception):
    """A warm start cannot be had here; the job runs cold."""


def why_not_warm(env: dict[str, str]) -> str | None:
    """The reason warm starts are off for a job with this environment, or None."""
    if env.get("BATCHLAB_WARM_START", "1").strip().lower() in ("0", "false", "no", "off"):
        return "BATCHLAB_WARM_START=0"
    for name in SCHEDULER_VARIABLES:
        if env.get(name):
            return f"inside a batch-scheduler job ({name}={env[name]})"
    if not hasattr(os, "pidfd_open") or not hasattr(socket, "send_fds"):
        return "this Python has no pidfd_open / send_fds"
    try:  # the kernel (Linux >= 5.3) or a seccomp profile may refuse it
        os.close(os.pidfd_open(os.getpid()))
    except OSError as exc:
        return f"this system refuses pidfd_open ({exc})"
    return None


def idle_seconds(env: dict[str, str]) -> float:
    raw = env.get("BATCHLAB_WARM_IDLE", "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_IDLE_S
    except ValueError:
        raise Unavailable(f"BATCHLAB_WARM_IDLE={raw!r} is not a number of seconds") from None
    return max(value, 1.0)


def server_folder(env: dict[str, str]) -> Path:
    """The folder of the servers' sockets: created private, refused when anyone else may enter it
    (whoever can connect to a server can run code as this user)."""
    base = env.get("BATCHLAB_WARM_DIR") or os.path.join(tempfile.gettempdir(), f"batchlab-warm-{os.getuid()}")
    folder = Path(base)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError as exc:
        raise Unavailable(f"cannot use {folder}: {exc}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise Unavailable(f"{folder} is not a folder that only this user may enter (chmod 700)")
    return folder


def server_key(executable: str, env: dict[str, str]) -> str:
    """What a job's process inherits and a forked child would not: jobs share a server only
    when all of it is equal."""
    relevant = sorted((k, v) for k, v in env.items() if k.startswith(KEY_PREFIXES))
    packages = []
    for name in PRELOAD:
        spec = importlib.util.find_spec(name.split(".")[0])
        origin = spec.origin if spec and spec.origin else ""
        packages.append((name, origin, os.stat(origin).st_mtime_ns if origin else 0))
    try:
        cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        cgroup = ""
    limits = [resource.getrlimit(getattr(resource, name)) for name in KEY_LIMITS if hasattr(resource, name)]
    blob = json.dumps(
        [
            PROTOCOL,
            socket.gethostname(),
            executable,
            sys.version,
            relevant,
            packages,
            cgroup,
            sorted(os.sched_getaffinity(0)),
            os.getpriority(os.PRIO_PROCESS, 0),
            limits,
            hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the client (a job's process)


def run(
    module: str, function: str, kwargs: dict, startup: dict | None = None, env: dict | None = None
) -> int:
    """Call module.function(**kwargs, startup=...) in a warm child, or here when that fails.

    kwargs must be JSON values. startup tells the job how it started: the given entries, "mode"
    ("warm" or "cold", with "why_cold"), "client_start", "child_start", "imports_s" (monotonic
    clock, the same in every process). Returns the exit status to leave with (negative: killed
    by that signal)."""
    env = dict(os.environ if env is None else env)
    startup = {**(startup or {}), "client_start": time.monotonic()}
    reason = why_not_warm(env)
    if reason is None:
        try:
            return _run_warm(module, function, kwargs, env, {**startup, "mode": "warm"})
        except Unavailable as exc:
            reason = str(exc)
    return run_here(module, function, kwargs, {**startup, "mode": "cold", "why_cold": reason})


def exit_with(status: int) -> None:
    """Leave this process the way the job's process left: with its code, or by its signal."""
    if status < 0:
        if -status not in (signal.SIGKILL, signal.SIGSTOP):  # these two cannot have a handler
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
        status = 128 - status
    sys.exit(status)


def run_here(module: str, function: str, kwargs: dict, startup: dict) -> int:
    """Import and call in this process; SystemExit becomes the status, as in a script."""
    t = time.monotonic()
    target = getattr(importlib.import_module(module), function)
    startup = {**startup, "imports_s": time.monotonic() - t, "call_start": time.monotonic()}
    try:
        target(**kwargs, startup=startup)
    except SystemExit as exc:
        return _exit_code(exc)
    return 0


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _run_warm(module: str, function: str, kwargs: dict, env: dict[str, str], startup: dict) -> int:
    """Unavailable for anything that goes wrong before a child has taken the job; after that,
    the child's status (the job never runs twice)."""
    try:
        path = server_folder(env) / f"{server_key(sys.executable, env)}.sock"
        if len(str(path)) > MAX_SOCKET_PATH:
            raise Unavailable(
                f"the socket path {path} is too long; set BATCHLAB_WARM_DIR to a shorter folder"
            )
        request = {
            "module": module,
            "function": function,
            "kwargs": kwargs,
            "cwd": os.getcwd(),
            "umask": _umask(),
            "env": env,
            "sys_path": sys.path,
            "argv": sys.argv,
            "startup": startup,
        }
        # A server that is exiting (idle) may drop a new connection unanswered: then once more,
        # with a server started afresh. The child answers with its pid before it does anything,
        # so no answer means no child ran.
        for _attempt in (1, 2):
            conn = _connect(path) or _start_server(path, env)
            try:
                _send_request(conn, request, _stdio())
                replies = conn.makefile("rb")
                first = replies.readline()
            except OSError:
                first = b""
            if first:
                break
            conn.close()
        else:
            raise Unavailable(f"the warm-start server at {path} dropped the job twice")
    except OSError as exc:
        raise Unavailable(f"warm start failed: {exc}") from None
    with conn:  # a child has the job: from here on, its status and nothing else
        return _wait_for_child(json.loads(first)["pid"], replies, path)


def _wait_for_child(pid: int, replies, path: Path) -> int:
    """Forward this process's signals to the job's child until the server reports its status."""
    try:
        child = os.pidfd_open(pid)  # signals go to this very process, never to a reused pid
    except ProcessLookupError:
        child = None
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: _forward(child, signum)) for sig in FORWARDED_SIGNALS
    }
    try:
        last = replies.readline()
    except OSError:
        last = b""
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    try:
        if not last:
            _forward(child, signal.SIGKILL)
            print(
                f"batchlab: the warm-start server at {path} died while job process {pid} ran", file=sys.stderr
            )
            return 1
        return int(json.loads(last)["status"])
    finally:
        if child is not None:
            os.close(child)


def _forward(child: int | None, signum: int) -> None:
    if child is None:
        return
    try:
        signal.pidfd_send_signal(child, signum)
    except ProcessLookupError:
        return
    if signum == signal.SIGTSTP:  # Ctrl-Z: stop the job, then this process, as a terminal would
        handler = signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)
        signal.signal(signal.SIGTSTP, handler)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _stdio() -> list[int]:
    """This process's stdin, stdout and stderr, /dev/null in place of a closed one."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def _connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:  # no file, or a stale one from a server that is gone
        conn.close()
        return None
    return conn


def _start_server(path: Path, env: dict[str, str]) -> socket.socket:
    """Start the server for this key (one client at a time does it) and connect to it."""
    idle = idle_seconds(env)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another job may be starting it right now
        conn = _connect(path)
        if conn is not None:
            return conn
        path.unlink(missing_ok=True)
        package_root = str(Path(__file__).resolve().parents[1])
        server_env = {
            **env,
            "PYTHONPATH": os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")])),
        }
        log_path = path.with_suffix(".log")
        with open(log_path, "ab") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "batchlab.warm", "serve", str(path), str(idle)],
                cwd="/",
                env=server_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # not in the job's process group: a job's end does not end it
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise Unavailable(
                    f"the warm-start server exited at start (status {server.returncode}; see {log_path})"
                )
            conn = _connect(path)
            if conn is not None:
                return conn
            time.sleep(0.02)
        server.kill()
        raise Unavailable(
            f"the warm-start server did not start within {START_TIMEOUT_S:.0f} s (see {log_path})"
        )


def _send_request(conn: socket.socket, request: dict, fds: list[int]) -> None:
    data = json.dumps(request).encode()
    data = _HEADER.pack(len(data)) + data
    sent = socket.send_fds(conn, [data], fds)
    conn.sendall(data[sent:])


def _receive_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 8)
    if len(data) < _HEADER.size:
        raise ConnectionError("a request without its header")
    (size,) = _HEADER.unpack_from(data)
    data = data[_HEADER.size :]
    while len(data) < size:
        more = conn.recv(size - len(data))
        if not more:
            raise ConnectionError("a request cut short")
        data += more
    return json.loads(data), fds


# ---------------------------------------------------------------- the server


class _Job:
    """A running child, its client's connection, and pidfds of both."""

    def __init__(self, pid: int, conn: socket.socket, client_pid: int):
        self.pid = pid
        self.conn = conn
        self.pidfd = os.pidfd_open(pid)
        try:
            self.client_pidfd: int | None = os.pidfd_open(client_pid)
        except ProcessLookupError:  # the client is gone already
            self.client_pidfd = None
            _kill(self.pidfd)

    def watch(self, selector: selectors.BaseSelector) -> None:
        selector.register(self.pidfd, selectors.EVENT_READ, ("child", self))
        if self.client_pidfd is not None:
            selector.register(self.client_pidfd, selectors.EVENT_READ, ("client", self))

    def drop_client(self, selector: selectors.BaseSelector) -> None:
        if self.client_pidfd is not None:
            selector.unregister(self.client_pidfd)
            os.close(self.client_pidfd)
            self.client_pidfd = None

    def close_fds(self) -> None:
        for fd in (self.pidfd, self.client_pidfd):
            if fd is not None:
                os.close(fd)
        self.conn.close()


def serve(path: Path, idle_s: float, preload: tuple[str, ...] = PRELOAD) -> None:
    """Import the heavy modules once, then fork a child per request until idle for idle_s."""
    t = time.monotonic()
    for name in preload:
        importlib.import_module(name)
    imported = time.monotonic() - t
    print(
        f"batchlab warm-start server {os.getpid()}: {', '.join(preload)} imported in {imported:.2f} s",
        flush=True,
    )
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o077)  # the socket: this user's alone
    listener.bind(str(path))
    os.umask(old_mask)
    listener.listen(64)
    inode = path.stat().st_ino
    pid_file = path.with_suffix(".pid")
    pid_file.write_text(f"{os.getpid()}\n")
    # kill PID (SIGTERM) stops it as `stop` does: no new jobs, the running ones finish
    signal.signal(signal.SIGTERM, lambda _signum, _frame: _remove_own(path, inode))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    jobs: list[_Job] = []
    last_active = time.monotonic()
    stopping = False
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.data is None:
                _accept(listener, selector, jobs)
            elif key.data[0] == "child":  # a job ended: its status to its client
                job = key.data[1]
                jobs.remove(job)
                job.drop_client(selector)
                selector.unregister(job.pidfd)
                _, status = os.waitpid(job.pid, 0)
                _reply(job.conn, {"status": os.waitstatus_to_exitcode(status)})
                job.close_fds()
                last_active = time.monotonic()
            else:  # a client is gone (kill -9 included): its job goes with it
                job = key.data[1]
                job.drop_client(selector)
                _kill(job.pidfd)
        if not stopping and (
            _replaced(path, inode) or (not jobs and time.monotonic() - last_active > idle_s)
        ):
            stopping = True
            selector.unregister(listener)
            listener.close()
            _remove_own(path, inode)
        if stopping and not jobs:
            try:
                if pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
            except OSError:
                pass
            print(f"batchlab warm-start server {os.getpid()}: done", flush=True)
            return


def _accept(listener: socket.socket, selector: selectors.BaseSelector, jobs: list[_Job]) -> None:
    conn, _ = listener.accept()
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    client_pid, client_uid, _gid = struct.unpack("3i", creds)
    if client_uid != os.getuid():  # the folder is private; this is a second lock on the door
        conn.close()
        return
    try:
        pid = os.fork()
    except OSError as exc:  # the client sees the connection close unanswered and runs cold
        print(f"cannot fork: {exc}", flush=True)
        conn.close()
        return
    if pid == 0:
        _child(conn, listener, selector, jobs)
    job = _Job(pid, conn, client_pid)
    jobs.append(job)
    job.watch(selector)


def _kill(pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _remove_own(path: Path, inode: int) -> None:
    if not _replaced(path, inode):
        path.unlink(missing_ok=True)


def _replaced(path: Path, inode: int) -> bool:
    """True once the socket file is gone or belongs to another server (`stop` removes it)."""
    try:
        return path.stat().st_ino != inode
    except FileNotFoundError:
        return True


def _reply(conn: socket.socket, message: dict) -> None:
    try:
        conn.sendall(json.dumps(message).encode() + b"\n")
    except OSError:  # the client is gone
        pass


def _child(conn: socket.socket, listener: socket.socket, selector, jobs: list[_Job]) -> None:
    """In the forked child: become the job's process, run it, and never return."""
    status = 1
    try:
        listener.close()
        selector.close()
        for job in jobs:  # the other jobs' connections and pidfds are theirs
            job.close_fds()
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        request, stdio = _receive_request(conn)
        conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")  # before anything else
        conn.close()
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (lives as long as the process)
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = request["sys_path"]
        sys.argv[:] = request["argv"]
        for name in [m for m in sys.modules if m == "batchlab" or m.startswith("batchlab.")]:
            del sys.modules[name]  # the job imports the package from its own checkout
        startup = {**request["startup"], "child_start": time.monotonic()}
        status = run_here(request["module"], request["function"], request["kwargs"], startup)
    except KeyboardInterrupt:
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        traceback.print_exc()
        status = 1
    _flush()
    os._exit(status & 0xFF)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def stop_all(folder: Path, wait_s: float = 0.0) -> list[int]:
    """Stop every server of a folder (removing its socket makes it exit once its jobs are done),
    waiting up to wait_s for them to exit; returns their pids."""
    pids = []
    for sock in sorted(folder.glob("*.sock")):
        try:
            pids.append(int(sock.with_suffix(".pid").read_text()))
        except (OSError, ValueError):
            pass
        sock.unlink(missing_ok=True)
    deadline = time.monotonic() + wait_s
    while any(process_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


def process_running(pid: int) -> bool:
    """True while a process runs (a zombie, ended but not yet reaped, has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "serve":
        serve(Path(argv[1]), float(argv[2]))
        return 0
    if argv == ["stop"]:
        for pid in stop_all(server_folder(dict(os.environ))):
            print(f"stopping warm-start server {pid}")
        return 0
    print("usage: python -m batchlab.warm serve SOCKET IDLE_SECONDS | stop", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
