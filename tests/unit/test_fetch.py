"""fetch against a real HTTP server on 127.0.0.1 that serves ../shared/mnist."""

import gzip
import json
import socket
from pathlib import Path

import pytest

from batchlab.data.fetch import (
    FetchError,
    checksums_json,
    fetch_all,
    fetch_one,
    sources_from,
    write_atomically,
)
from batchlab.data.idx import MNIST_FILES, decompress, md5

TRAIN_LABELS = "train-labels-idx1-ubyte"


def dead_url() -> str:
    """A URL base on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def test_fetches_all_four_files_over_http(http_mirror):
    fetched = fetch_all([http_mirror.url()], timeout=10, retries=0)
    assert set(fetched) == set(MNIST_FILES)
    for key, f in fetched.items():
        assert md5(decompress(f.gz_bytes, f.name)) == MNIST_FILES[key][1]
        assert f.source == http_mirror.url() + f.name + ".gz"


def test_dead_first_mirror_falls_through(http_mirror):
    dead = dead_url()
    fetched = fetch_one("train_labels", [dead, http_mirror.url()], timeout=5, retries=0, backoff_s=0)
    assert fetched.source.startswith(http_mirror.url())


def test_corrupted_file_names_file_mirror_and_checksums(http_mirror, mnist_mirror):
    good = gzip.decompress((mnist_mirror / f"{TRAIN_LABELS}.gz").read_bytes())
    bad = bytearray(good)
    bad[5000] ^= 0xFF
    http_mirror.routes[f"/m/{TRAIN_LABELS}.gz"] = ("body", gzip.compress(bytes(bad)))
    with pytest.raises(FetchError) as err:
        fetch_one("train_labels", [http_mirror.url()], timeout=5, retries=0)
    text = str(err.value)
    assert f"could not fetch MNIST file {TRAIN_LABELS}" in text
    assert http_mirror.url() + f"{TRAIN_LABELS}.gz" in text
    assert "expected MD5 a25bea736e30d166cdddb491f175f624" in text
    assert f"got {md5(bytes(bad))}" in text


def test_truncated_gzip_is_rejected_and_the_next_mirror_used(http_mirror, mnist_mirror):
    gz = (mnist_mirror / f"{TRAIN_LABELS}.gz").read_bytes()
    http_mirror.routes[f"/a/{TRAIN_LABELS}.gz"] = ("body", gz[: len(gz) // 2])
    fetched = fetch_one("train_labels", [http_mirror.url("a"), http_mirror.url("b")], timeout=5, retries=0)
    assert fetched.source == http_mirror.url("b") + f"{TRAIN_LABELS}.gz"
    with pytest.raises(FetchError, match="corrupt gzip data"):
        fetch_one("train_labels", [http_mirror.url("a")], timeout=5, retries=0)


def test_html_page_and_404_are_named(http_mirror):
    http_mirror.routes[f"/h/{TRAIN_LABELS}.gz"] = ("body", b"<!DOCTYPE html><html>Access denied</html>")
    with pytest.raises(FetchError) as err:
        fetch_one(
            "train_labels", [http_mirror.url("h"), http_mirror.url("none") + "missing/"], timeout=5, retries=0
        )
    text = str(err.value)
    assert "an HTML/XML page, not MNIST data" in text
    assert "not found (HTTP 404" in text


def test_stalled_mirror_times_out(http_mirror):
    http_mirror.routes[f"/s/{TRAIN_LABELS}.gz"] = ("stall", 5)
    with pytest.raises(FetchError, match=r"timed out after 0.5 s without data \(tried 2 times\)"):
        fetch_one("train_labels", [http_mirror.url("s")], timeout=0.5, retries=1, backoff_s=0)


def test_server_errors_are_retried(http_mirror):
    path = f"/r/{TRAIN_LABELS}.gz"
    http_mirror.routes[path] = ("fail_first", 2)
    fetched = fetch_one("train_labels", [http_mirror.url("r")], timeout=5, retries=2, backoff_s=0)
    assert http_mirror.hits[path] == 3
    assert fetched.md5 == MNIST_FILES["train_labels"][1]


def test_local_folder_with_plain_files(tmp_path, mnist_mirror):
    for name, _ in MNIST_FILES.values():
        (tmp_path / name).write_bytes(gzip.decompress((mnist_mirror / f"{name}.gz").read_bytes()))
    fetched = fetch_all([str(tmp_path)], timeout=5, retries=0)
    for f in fetched.values():
        assert f.source == str(tmp_path / f.name)
        assert f.gz_bytes[:2] == b"\x1f\x8b"  # stored gzipped even when served plain


def test_file_url_mirror(mnist_mirror):
    fetched = fetch_one("test_labels", [mnist_mirror.as_uri() + "/"], timeout=5, retries=0)
    assert fetched.md5 == MNIST_FILES["test_labels"][1]


def test_env_mirror_comes_first():
    assert sources_from(" http://a/ ", ["http://b/", "http://a/"]) == ["http://a/", "http://b/"]
    assert sources_from(None, ["http://b/"]) == ["http://b/"]
    assert sources_from("", ["http://b/"]) == ["http://b/"]


def test_atomic_group_write_leaves_nothing_on_failure(tmp_path):
    ok = tmp_path / "data" / "a.gz"
    blocked = tmp_path / "data" / "sub"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where a folder should be")
    with pytest.raises(FetchError, match="cannot write"):
        write_atomically({ok: b"one", blocked / "b.gz": b"two"})
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["sub"]


def test_checksums_record(http_mirror):
    fetched = fetch_all([http_mirror.url()], timeout=10, retries=0)
    record = json.loads(checksums_json(fetched))
    assert record[TRAIN_LABELS]["md5_decompressed"] == MNIST_FILES["train_labels"][1]
    assert Path(record[TRAIN_LABELS]["source"]).name == f"{TRAIN_LABELS}.gz"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs (a real full disk); where mounting is not allowed, writes raise ENOSPC."""
    import errno
    import os
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        == 0
    )
    if mounted:
        yield mount, None
        subprocess.run(["umount", str(mount)], check=True)
        return
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, blob):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    yield mount, lambda fd, mode: Full(real_fdopen(fd, mode))


def test_full_disk_is_named_and_leaves_nothing(http_mirror, tiny_disk, monkeypatch):
    import batchlab.data.fetch as fetch_module

    disk, fake_fdopen = tiny_disk
    if fake_fdopen:
        monkeypatch.setattr(fetch_module.os, "fdopen", fake_fdopen)
    fetched = fetch_all([http_mirror.url()], timeout=10, retries=0)
    files = {disk / "mnist/raw" / f"{f.name}.gz": f.gz_bytes for f in fetched.values()}
    with pytest.raises(
        FetchError, match=r"cannot write .*train-images-idx3-ubyte.gz: No space left on device"
    ):
        write_atomically(files)
    assert [p for p in disk.rglob("*") if p.is_file()] == []
