"""Warm start: run a job in a process forked from a server that has already imported PyTorch.

Importing PyTorch (a CUDA build) costs 2-3 s of every training job on a CPU, and a default
study has a hundred jobs. The first job on a machine starts a small server that imports
torch, numpy and pandas once, then forks one child per job. The job's own process (the
Snakemake script) stays a thin client: it hands the child its stdin, stdout and stderr, its
working folder, environment and sys.path, forwards the signals it gets, and exits with the
child's status. The child imports batchlab afresh from the client's sys.path, so an edit to the
package takes effect in the next job. The child dies with its client (kill -9 included): it
watches the client's pidfd.

Warm starts are off under a batch scheduler (a job's work must stay inside its allocation),
with BATCHLAB_WARM_START=0, and where Linux pidfds are missing. Whenever the server cannot be
reached or started, the job runs in its own process instead (a cold start) and says why.

Environment: BATCHLAB_WARM_START (1; 0 turns warm starts off), BATCHLAB_WARM_IDLE (seconds a
server waits for the next job before it exits; 60), BATCHLAB_WARM_DIR (its sockets and logs;
$TMPDIR/batchlab-warm-$UID). `python -m batchlab.warm stop` stops the servers of that folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import os
import select
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

PROTOCOL = 1
PRELOAD = ("torch", "numpy", "pandas", "pyarrow.parquet")
DEFAULT_IDLE_S = 60.0
START_TIMEOUT_S = 120.0
SCHEDULER_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID")
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
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
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
    return None


def idle_seconds(env: dict[str, str]) -> float:
    raw = env.get("BATCHLAB_WARM_IDLE", "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_IDLE_S
    except ValueError:
        raise Unavailable(f"BATCHLAB_WARM_IDLE={raw!r} is not a number of seconds") from None
    return max(value, 1.0)


def server_folder(env: dict[str, str]) -> Path:
    """The folder of the servers' sockets: created private, refused when anyone else can write it."""
    base = env.get("BATCHLAB_WARM_DIR") or os.path.join(tempfile.gettempdir(), f"batchlab-warm-{os.getuid()}")
    folder = Path(base)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError as exc:
        raise Unavailable(f"cannot use {folder}: {exc}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise Unavailable(f"{folder} is not a folder that only this user can write")
    return folder


def server_key(executable: str, env: dict[str, str]) -> str:
    """One server per interpreter, import-relevant environment and version of this file."""
    relevant = sorted((k, v) for k, v in env.items() if k.startswith(KEY_PREFIXES))
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    blob = json.dumps([PROTOCOL, executable, sys.version, relevant, source])
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
    path = server_folder(env) / f"{server_key(sys.executable, env)}.sock"
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
    fds = [*_stdio(), os.pidfd_open(os.getpid())]
    try:
        # A server that is exiting (idle) may drop a new connection unanswered: then once more,
        # with a server started afresh. The child answers with its pid before it does anything,
        # so no answer means no child ran.
        for attempt in (1, 2):
            conn = _connect(path) or _start_server(path, env)
            with conn:
                try:
                    _send_request(conn, request, fds)
                    replies = conn.makefile("rb")
                    first = replies.readline()
                except OSError:
                    first = b""
                if not first:
                    if attempt == 2:
                        raise Unavailable(f"the warm-start server at {path} dropped the job twice")
                    continue
                return _wait_for_child(json.loads(first)["pid"], replies, path)
        raise AssertionError("unreachable")
    finally:
        os.close(fds[-1])


def _wait_for_child(pid: int, replies, path: Path) -> int:
    """Forward this process's signals to the job's child until the server reports its status."""
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: _forward(pid, signum)) for sig in FORWARDED_SIGNALS
    }
    try:
        last = replies.readline()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not last:
        _forward(pid, signal.SIGKILL)
        print(f"batchlab: the warm-start server at {path} died while job process {pid} ran", file=sys.stderr)
        return 1
    return int(json.loads(last)["status"])


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


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


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


def serve(path: Path, idle_s: float, preload: tuple[str, ...] = PRELOAD) -> None:
    """Import the heavy modules once, then fork a child per request until idle for idle_s."""
    t = time.monotonic()
    for name in preload:
        importlib.import_module(name)
    print(
        f"batchlab warm-start server {os.getpid()}: {', '.join(preload)} imported in {time.monotonic() - t:.2f} s",
        flush=True,
    )
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    inode = path.stat().st_ino
    pid_file = path.with_suffix(".pid")
    pid_file.write_text(f"{os.getpid()}\n")
    # kill PID (SIGTERM) stops it as `stop` does: no new jobs, the running ones finish
    signal.signal(signal.SIGTERM, lambda _signum, _frame: _remove_own(path, inode))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    running: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, connection)
    last_active = time.monotonic()
    stopping = False
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.data is None:
                conn, _ = listener.accept()
                pid = os.fork()
                if pid == 0:
                    _child(conn, [listener, *(c for _, c in running.values())], selector, list(running))
                pidfd = os.pidfd_open(pid)
                running[pidfd] = (pid, conn)
                selector.register(pidfd, selectors.EVENT_READ, pid)
            else:
                pid, conn = running.pop(key.fd)
                selector.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                _reply(conn, {"status": os.waitstatus_to_exitcode(status)})
                conn.close()
                last_active = time.monotonic()
        if not stopping and (
            _replaced(path, inode) or (not running and time.monotonic() - last_active > idle_s)
        ):
            stopping = True
            selector.unregister(listener)
            listener.close()
            _remove_own(path, inode)
        if stopping and not running:
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink(missing_ok=True)
            print(f"batchlab warm-start server {os.getpid()}: done", flush=True)
            return


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
    except OSError:  # the client is gone; its child sees that on its own
        pass


def _child(conn: socket.socket, inherited: list[socket.socket], selector, pidfds: list[int]) -> None:
    """In the forked child: become the job's process, run it, and never return."""
    status = 1
    try:
        for sock in inherited:
            sock.close()
        selector.close()
        for pidfd in pidfds:
            os.close(pidfd)
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        request, received = _receive_request(conn)
        conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")  # before anything else
        conn.close()
        stdio, client = received[:3], received[3]
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (lives as long as the process)
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        threading.Thread(target=_die_with, args=(client,), daemon=True).start()
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


def _die_with(pidfd: int) -> None:
    """Block until the client process exits, then end this one at once."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    while not poller.poll():
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def stop_all(folder: Path) -> list[int]:
    """Stop every server of a folder (removing its socket makes it exit once its jobs are done);
    returns their pids."""
    pids = []
    for sock in sorted(folder.glob("*.sock")):
        sock.unlink(missing_ok=True)
        try:
            pids.append(int(sock.with_suffix(".pid").read_text()))
        except (OSError, ValueError):
            pass
    return pids


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
