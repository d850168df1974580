import gzip

import numpy as np
import pytest

from batchlab.data.idx import MNIST_FILES, IdxError, decompress, md5, parse_idx
from batchlab.data.tensors import decode_mnist


def idx_bytes(array: np.ndarray) -> bytes:
    magic = bytes([0, 0, 0x08, array.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic + dims + array.astype(np.uint8).tobytes()


def test_parses_images_and_labels():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([3, 7], dtype=np.uint8)
    assert np.array_equal(parse_idx(idx_bytes(images), "img"), images)
    assert np.array_equal(parse_idx(idx_bytes(labels), "lab"), labels)


def test_wrong_magic_number_names_the_file():
    blob = bytearray(idx_bytes(np.zeros((2, 2), np.uint8)))
    blob[2] = 0x0D  # float data
    with pytest.raises(IdxError, match=r"some-file: wrong magic number 0x00000d02"):
        parse_idx(bytes(blob), "some-file")


def test_truncated_and_trailing_bytes_are_errors():
    blob = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(IdxError, match=r"f: truncated: header says \(3, 4, 4\) = 64 bytes, file has 60"):
        parse_idx(blob[:-4], "f")
    with pytest.raises(IdxError, match="trailing bytes"):
        parse_idx(blob + b"x", "f")
    with pytest.raises(IdxError, match="truncated IDX header"):
        parse_idx(blob[:9], "f")


def test_corrupt_gzip_is_an_error():
    gz = gzip.compress(b"hello world" * 100)
    with pytest.raises(IdxError, match="corrupt gzip"):
        decompress(gz[:20], "x.gz")
    assert decompress(b"plain", "x") == b"plain"


def test_real_mnist_decodes_with_canonical_checksums(mnist_mirror):
    blobs = {k: (mnist_mirror / f"{name}.gz").read_bytes() for k, (name, _) in MNIST_FILES.items()}
    for key, (name, expected) in MNIST_FILES.items():
        assert md5(decompress(blobs[key], name)) == expected
    tensors = decode_mnist(blobs)
    assert tuple(tensors["train_images"].shape) == (60000, 28, 28)
    assert tuple(tensors["test_labels"].shape) == (10000,)
    assert str(tensors["train_labels"].dtype) == "torch.int64"
    assert str(tensors["train_images"].dtype) == "torch.uint8"
    assert sorted(tensors["train_labels"].unique().tolist()) == list(range(10))


def test_wrong_sizes_are_rejected(mnist_mirror):
    blobs = {k: (mnist_mirror / f"{name}.gz").read_bytes() for k, (name, _) in MNIST_FILES.items()}
    blobs["test_labels"] = idx_bytes(np.zeros(5, np.uint8))
    with pytest.raises(IdxError, match=r"t10k-labels-idx1-ubyte: wrong sizes \(5,\); MNIST has \(10000,\)"):
        decode_mnist(blobs)
