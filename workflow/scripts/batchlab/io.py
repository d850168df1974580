"""The edges: atomic writes, so nothing half-written is ever read as finished."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside dest; rename it to dest only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; finished files get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(dest: str | Path, blob: bytes) -> None:
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy and torch scalars
        return _json_safe(value.item())
    return value


def dumps_json(record) -> str:
    """JSON with NaN and infinities written as null (strict JSON, readable everywhere)."""
    return json.dumps(_json_safe(record), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(dest: str | Path, record) -> None:
    write_bytes(dest, dumps_json(record).encode())


def write_parquet(dest: str | Path, frame) -> None:
    with atomic_path(dest) as tmp:
        frame.to_parquet(tmp, index=False)


def write_text(dest: str | Path, text: str) -> None:
    write_bytes(dest, text.encode("utf-8"))
