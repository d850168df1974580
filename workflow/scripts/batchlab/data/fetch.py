"""Download the four MNIST files from a list of mirrors, verified by the MD5 of their content.

A source is a URL base (http://, https://, file://) or a local folder. For each file every
source is tried in order, gzipped name first, then the plain name; timeouts, dropped
connections and HTTP 5xx are retried with back-off, anything else falls through to the next
source. Whatever a source serves is checked against the canonical MD5 of the decompressed
bytes. Files are written under temporary names and renamed only when all four verified, so a
failed fetch leaves nothing behind.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from batchlab import BatchlabError, __version__
from batchlab.data.idx import GZIP_MAGIC, MNIST_FILES, IdxError, decompress, md5

MIRROR_ENV = "BATCHLAB_MNIST_MIRROR"
CHUNK = 1 << 20


class FetchError(BatchlabError):
    pass


class _NotFound(Exception):
    pass


class _Transient(Exception):
    pass


@dataclass(frozen=True)
class Fetched:
    name: str  # canonical file name without .gz
    source: str  # where the verified bytes came from
    md5: str  # of the decompressed bytes
    gz_bytes: bytes  # what is stored: gzip of the IDX bytes


def sources_from(env_mirror: str | None, mirrors: list[str]) -> list[str]:
    """The sources in the order they are tried: $BATCHLAB_MNIST_MIRROR first."""
    out = [env_mirror.strip()] if env_mirror and env_mirror.strip() else []
    return out + [m for m in mirrors if m not in out]


def _join(source: str, filename: str) -> str:
    if "://" in source:
        return source.rstrip("/") + "/" + urllib.parse.quote(filename)
    return str(Path(source).expanduser() / filename)


def _read_url(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": f"batchlab/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            chunks = []
            while chunk := response.read(CHUNK):
                chunks.append(chunk)
            return b"".join(chunks)
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise _NotFound(f"HTTP {exc.code} {exc.reason}") from None
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise FetchError(f"HTTP {exc.code} {exc.reason}") from None
    except TimeoutError:
        raise _Transient(f"timed out after {timeout:g} s without data") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise _Transient(f"timed out after {timeout:g} s without data") from None
        if isinstance(reason, FileNotFoundError):
            raise _NotFound("no such file") from None
        if isinstance(reason, ConnectionError):
            raise _Transient(f"connection failed ({reason})") from None
        raise FetchError(f"cannot connect ({reason})") from None
    except (ConnectionError, http.client.HTTPException) as exc:
        raise _Transient(f"connection dropped ({exc.__class__.__name__}: {exc})") from None


def _read(location: str, timeout: float, retries: int, backoff_s: float) -> bytes:
    if "://" not in location:
        try:
            return Path(location).read_bytes()
        except FileNotFoundError:
            raise _NotFound("no such file") from None
        except OSError as exc:
            raise FetchError(f"cannot read ({exc.strerror})") from None
    for attempt in range(retries + 1):
        try:
            return _read_url(location, timeout)
        except _Transient as exc:
            if attempt == retries:
                raise FetchError(f"{exc} (tried {retries + 1} times)") from None
            time.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def _looks_like(blob: bytes) -> str:
    head = blob[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
        return "an HTML/XML page, not MNIST data"
    if blob.startswith(GZIP_MAGIC):
        return "gzip data"
    return f"{len(blob)} bytes"


def fetch_one(key: str, sources: list[str], timeout: float, retries: int, backoff_s: float = 1.0) -> Fetched:
    """Fetch and verify one of the four MNIST files; FetchError lists every source tried."""
    name, expected = MNIST_FILES[key]
    tried = []
    for source in sources:
        for filename in (name + ".gz", name):
            location = _join(source, filename)
            try:
                blob = _read(location, timeout, retries, backoff_s)
            except _NotFound as exc:
                tried.append(f"{location}: not found ({exc})")
                continue
            except FetchError as exc:
                tried.append(f"{location}: {exc}")
                break
            try:
                content = decompress(blob, location)
            except IdxError as exc:
                tried.append(f"{location}: {exc}")
                break
            actual = md5(content)
            if actual != expected:
                tried.append(
                    f"{location}: checksum mismatch: expected MD5 {expected} of the decompressed "
                    f"bytes, got {actual} ({_looks_like(blob)})"
                )
                break
            gz = blob if blob.startswith(GZIP_MAGIC) else gzip.compress(content, compresslevel=6, mtime=0)
            return Fetched(name=name, source=location, md5=actual, gz_bytes=gz)
    if not sources:
        tried.append(f"no mirror configured (set ${MIRROR_ENV} or data.mirrors)")
    raise FetchError(
        f"could not fetch MNIST file {name} (expected MD5 {expected} of its decompressed "
        "bytes) from any mirror:\n  - " + "\n  - ".join(tried)
    )


def fetch_all(sources: list[str], timeout: float, retries: int, backoff_s: float = 1.0) -> dict[str, Fetched]:
    return {key: fetch_one(key, sources, timeout, retries, backoff_s) for key in MNIST_FILES}


def write_atomically(files: dict[Path, bytes]) -> None:
    """Write every file under a temporary name, then rename all; on any error remove them all."""
    temps: dict[Path, Path] = {}
    current = None
    try:
        for dest, blob in files.items():
            current = dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
            temps[dest] = Path(tmp)
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
        for dest, tmp in temps.items():
            current = dest
            os.replace(tmp, dest)
    except OSError as exc:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        raise FetchError(f"cannot write {current}: {exc.strerror or exc}") from None


def checksums_json(fetched: dict[str, Fetched]) -> bytes:
    record = {
        f.name: {"md5_decompressed": f.md5, "source": f.source, "gz_bytes": len(f.gz_bytes)}
        for f in fetched.values()
    }
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
