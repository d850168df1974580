"""A mirror that serves garbage: the fetch fails with a named error and leaves nothing."""

import pytest

from conftest import copy_workflow, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def test_corrupt_mirror_fails_fetch_with_nothing_left(tmp_path, mnist_mirror):
    work = copy_workflow(tmp_path / "w")
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    for f in mnist_mirror.glob("*.gz"):
        blob = bytearray(f.read_bytes())
        if f.name.startswith("t10k-labels"):
            blob = blob[: len(blob) // 2]  # truncated download
        (bad / f.name).write_bytes(bytes(blob))
    (work / "m.yaml").write_text(f"data:\n  mirrors: ['{bad}']\n  retries: 0\n")
    done = snakemake(work, "--cores", "1", "--configfile", "m.yaml", env={"BATCHLAB_MNIST_MIRROR": ""})
    assert done.returncode != 0
    log = (work / "logs/fetch.log").read_text()
    assert "could not fetch MNIST file t10k-labels-idx1-ubyte" in log
    assert "corrupt gzip data" in log and str(bad) in log
    assert "Error in rule fetch" in done.stderr and "logs/fetch.log" in done.stderr
    left = [p for p in (work / "data").rglob("*") if p.is_file() and p.name != ".gitkeep"]
    assert left == []
    assert not (work / "results").exists()
