"""Shared fixtures: the local MNIST mirror, an HTTP server on 127.0.0.1, a tiny study run."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def mnist_dir() -> Path:
    """The local copy of the four MNIST files (../shared/mnist, or $BATCHLAB_TEST_MNIST)."""
    path = Path(os.environ.get("BATCHLAB_TEST_MNIST", REPO.parent / "shared" / "mnist"))
    if not (path / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"the local MNIST mirror is missing: {path} (set BATCHLAB_TEST_MNIST)")
    return path


@pytest.fixture(scope="session")
def mnist_mirror() -> Path:
    return mnist_dir()


class Server:
    """A real HTTP server on 127.0.0.1 serving files from a folder, with scripted misbehaviour:
    routes maps a path to ('status', code), ('stall', seconds), ('fail_first', n) or ('body', bytes)."""

    def __init__(self, root: Path):
        self.root = root
        self.routes: dict[str, tuple] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                server.hits[path] = server.hits.get(path, 0) + 1
                rule = server.routes.get(path)
                if rule and rule[0] == "status":
                    self.send_error(rule[1])
                    return
                if rule and rule[0] == "stall":
                    self.send_response(200)
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    time.sleep(rule[1])
                    return
                if rule and rule[0] == "fail_first" and server.hits[path] <= rule[1]:
                    self.send_error(503)
                    return
                if rule and rule[0] == "body":
                    body = rule[1]
                else:
                    file = server.root / path.lstrip("/").split("/", 1)[-1]
                    if not file.is_file():
                        self.send_error(404)
                        return
                    body = file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, prefix: str = "m") -> str:
        """A URL base; the first path component is a free label (one per simulated mirror)."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{prefix}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_mirror(mnist_mirror):
    server = Server(mnist_mirror)
    yield server
    server.close()


def copy_workflow(dest: Path) -> Path:
    """A copy of the project's workflow files, as a user's checkout would have them."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "params.yaml"):
        shutil.copy2(REPO / name, dest / name)
    for folder in ("workflow", "envs", "profiles"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for study in (REPO / "studies").iterdir():  # the committed reruns report.reruns compares
        (dest / "studies" / study.name).mkdir(parents=True)
        for name in ("analysis.json", "best_lr.csv"):
            if (study / name).is_file():
                shutil.copy2(study / name, dest / "studies" / study.name / name)
    return dest


# the grid only: params.yaml turns the late blow-up runs and the gradient probe on (a config of
# its own the remedy and Solution 2 cells), these configs turn them all off
GRID_ONLY = """\
remedies:
  enabled: false
solution2:
  enabled: false
late_blowup:
  enabled: false
gradient_probe:
  enabled: false
"""

# two cells of two seeds: a slow one (batch 16, 3 epochs) that can be interrupted, and a quick one
RESILIENCE_GRID = (
    """\
grid:
  batch_sizes: [16, 1000]
  learning_rates: [0.05]
  seeds: [0, 1]
train:
  epochs: 3
"""
    + GRID_ONLY
)

# four grid cells of two seeds (one lr diverges at once), as a Slurm cluster runs them: the
# tiny study's grid and training, so their results must agree bit for bit
BASIC_CONFIG = (
    """\
grid:
  batch_sizes: [128, 1000]
  learning_rates: [0.1, 50]
  seeds: [0, 1]
train:
  epochs: 2
report:
  reference_lr: 0.1
"""
    + GRID_ONLY
)

# the tiny study: two seeds of the basic grid, Adam over the same batch sizes, remedies (LARS
# among them) and a Solution 2 comparison, so that every section of the report has data
TINY_CONFIG = """\
grid:
  batch_sizes: [128, 1000]
  learning_rates: [0.1, 50]
  seeds: [0, 1]
  optimizers: [sgd, adam]
optimizers:
  adam: {learning_rates: [0.001, 0.004]}
  lars: {learning_rates: [8]}
train:
  epochs: 2
remedies:
  enabled: true
  batch_sizes: [4000]
  reference_batch_size: 128
  reference_lr: 0.1
  scaling: [none, linear]
  warmup_epochs: 1
  optimizers: [lars]
solution2:
  enabled: true
  batch_size: 1000
  splits: 4
  lr: 0.1
  learning_rates: []  # not params.yaml's window (a --configfile merges into it)
  optimizers: [sgd]
equal_updates:
  enabled: true
  batch_sizes: [1000]
  reference_batch_size: 128
late_blowup:
  enabled: false
gradient_probe:
  enabled: false
report:
  reference_lr: 0.1
  target_val_acc: 0.9
"""


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: float = 900):
    """Run the real snakemake command line in workdir."""
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{VENV_BIN}:{full_env.get('PATH', '')}"
    return subprocess.run(
        [str(VENV_BIN / "snakemake"), *args],
        cwd=workdir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory, mnist_mirror) -> Path:
    """The tiny study, run once per session with the real workflow and real MNIST."""
    work = copy_workflow(tmp_path_factory.mktemp("tiny-study"))
    (work / "tiny.yaml").write_text(TINY_CONFIG)
    done = snakemake(
        work, "--cores", "2", "--configfile", "tiny.yaml", env={"BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    )
    if done.returncode != 0:
        pytest.fail(f"the tiny study failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}")
    return work


def start_snakemake(work, *args, env):
    full_env = {**os.environ, **env, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    return subprocess.Popen(
        [str(VENV_BIN / "snakemake"), *args],
        cwd=work,
        env=full_env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
