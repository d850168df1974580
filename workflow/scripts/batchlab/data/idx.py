"""Decode the IDX files that MNIST ships in (http://yann.lecun.com/exdb/mnist/, 'FILE FORMATS')."""

from __future__ import annotations

import gzip
import hashlib
import zlib

import numpy as np

from batchlab import BatchlabError

# The four canonical files and the MD5 of their *decompressed* bytes (the published values):
# a re-gzipped copy and every public mirror agree on these, whatever their .gz bytes are.
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
    "train_labels": ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    "test_images": ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    "test_labels": ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
}
EXPECTED_SHAPES = {
    "train_images": (60000, 28, 28),
    "train_labels": (60000,),
    "test_images": (10000, 28, 28),
    "test_labels": (10000,),
}
GZIP_MAGIC = b"\x1f\x8b"


class IdxError(BatchlabError):
    pass


def decompress(blob: bytes, name: str) -> bytes:
    """The IDX bytes of a file that may or may not be gzipped."""
    if not blob.startswith(GZIP_MAGIC):
        return blob
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxError(f"{name}: corrupt gzip data ({exc})") from None


def md5(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


def parse_idx(blob: bytes, name: str) -> np.ndarray:
    """Decode one uint8 IDX file; raise IdxError naming the file on a bad header or size."""
    if len(blob) < 4:
        raise IdxError(f"{name}: truncated IDX file ({len(blob)} bytes, no header)")
    zero, dtype_code, ndim = blob[0] << 8 | blob[1], blob[2], blob[3]
    magic = int.from_bytes(blob[:4], "big")
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 3:
        raise IdxError(
            f"{name}: wrong magic number 0x{magic:08x}; expected 0x00000801 (labels) or "
            f"0x00000803 (images): not an unsigned-byte IDX file"
        )
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise IdxError(f"{name}: truncated IDX header ({len(blob)} of {header} bytes)")
    shape = tuple(int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(blob) != expected:
        state = "truncated" if len(blob) < expected else "has trailing bytes"
        raise IdxError(f"{name}: {state}: header says {shape} = {expected} bytes, file has {len(blob)}")
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape)


def check_mnist_arrays(arrays: dict[str, np.ndarray]) -> None:
    """Raise IdxError unless the four arrays have MNIST's shapes and labels 0-9."""
    for key, shape in EXPECTED_SHAPES.items():
        name = MNIST_FILES[key][0]
        if key not in arrays:
            raise IdxError(f"{name}: missing")
        if arrays[key].shape != shape:
            raise IdxError(f"{name}: wrong sizes {arrays[key].shape}; MNIST has {shape}")
    for key in ("train_labels", "test_labels"):
        if arrays[key].max() > 9:
            raise IdxError(f"{MNIST_FILES[key][0]}: label {int(arrays[key].max())} outside 0-9")
