"""IDX reader and writer: round trips, every error case, and fuzzing (nothing but arrays or DataError)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifelong.data.idx import encode_idx, gzip_bytes, read_idx, read_images_labels, write_idx
from lifelong.errors import DataError
from tests.helpers import TINY

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(0,), (7,), (3, 4), (2, 3, 5), (1, 2, 1, 3)]


def _array(dtype, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, shape, suffix):
    array = _array(dtype, shape)
    path = write_idx(tmp_path / f"a-idx{suffix}", array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # the result is writable


def test_gzip_detected_by_magic_not_extension(tmp_path):
    array = np.arange(12, dtype=np.int16).reshape(3, 4)
    gz_named_raw = write_idx(tmp_path / "raw.gz", array, compress=False)
    raw_named_gz = write_idx(tmp_path / "gz.idx", array, compress=True)
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)


def test_big_endian_on_disk(tmp_path):
    path = write_idx(tmp_path / "x", np.array([1, 256], dtype=np.int32))
    assert path.read_bytes() == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 0])


def test_gzip_bytes_are_reproducible(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    a = write_idx(tmp_path / "a.gz", array).read_bytes()
    b = write_idx(tmp_path / "b.gz", array).read_bytes()
    assert a == b and a[4:8] == b"\0\0\0\0"  # mtime 0


def test_write_rejects_unsupported(tmp_path):
    with pytest.raises(DataError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError, match="dimensions"):
        write_idx(tmp_path / "x", np.uint8(3))
    assert not list(tmp_path.iterdir())


# --- error cases: each raises DataError naming the file ---------------------------------------

VALID = encode_idx(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))  # 16-byte header + 24 bytes


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x01\x00\x08\x01" + b"\0\0\0\0", "not an IDX file"),
        (b"\x00\x00\x07\x01" + b"\0\0\0\0", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00", "truncated IDX header: expected at least 4 bytes, found 2"),
        (VALID[:10], "truncated IDX header: expected 16 bytes for 3 dimensions, found 10"),
        (VALID[:-5], "truncated IDX file: expected 24 bytes of data, found 19"),
        (VALID + b"xyz", "trailing bytes: expected 24 bytes of data, found 27"),
        (gzip_bytes(VALID)[:-12], "truncated gzip stream"),
        (b"\x1f\x8b" + b"\x08\x00" + b"garbage!" * 4, "corrupt gzip stream"),
    ],
    ids=["magic", "type", "ndim0", "short", "header", "data", "trailing", "gzip-truncated", "gzip-corrupt"],
)
def test_errors_name_the_file(tmp_path, data, message):
    path = tmp_path / "broken-idx3-ubyte.gz"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    text = str(info.value)
    assert text.startswith(str(path) + ": ") and "\n" not in text
    assert info.value.exit_code == 2


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope.gz")


def test_huge_header_does_not_allocate(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(b"\x00\x00\x0e\x04" + struct.pack(">4I", *[2**32 - 1] * 4))
    with pytest.raises(DataError, match=f"truncated IDX file: expected {(2**32 - 1) ** 4 * 8} bytes of data, found 0"):
        read_idx(path)


# --- images and labels pairs ------------------------------------------------------------------


def _pair(tmp_path, images, labels):
    return write_idx(tmp_path / "img.gz", images), write_idx(tmp_path / "lab.gz", labels)


def test_read_images_labels(tmp_path):
    images = np.zeros((5, 2, 3), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1], dtype=np.uint8)
    x, y = read_images_labels(*_pair(tmp_path, images, labels))
    assert x.dtype == np.uint8 and x.shape == (5, 2, 3)
    assert y.dtype == np.int64 and y.tolist() == [0, 9, 3, 3, 1]


def test_count_mismatch_names_both_files(tmp_path):
    img, lab = _pair(tmp_path, np.zeros((5, 2, 2), np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="has 5 images but .* has 4 labels") as info:
        read_images_labels(img, lab)
    assert str(img) in str(info.value) and str(lab) in str(info.value)


def test_label_out_of_range(tmp_path):
    img, lab = _pair(tmp_path, np.zeros((2, 2, 2), np.uint8), np.array([3, 10], np.uint8))
    with pytest.raises(DataError, match="label 10 is out of range 0..9") as info:
        read_images_labels(img, lab)
    assert str(lab) in str(info.value)


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((2, 4), np.uint8), np.zeros(2, np.uint8), "expected 3-D ubyte images"),
        (np.zeros((2, 2, 2), np.float32), np.zeros(2, np.uint8), "expected 3-D ubyte images"),
        (np.zeros((2, 2, 2), np.uint8), np.zeros((2, 1), np.uint8), "expected 1-D ubyte labels"),
    ],
)
def test_wrong_kind_of_file(tmp_path, images, labels, message):
    with pytest.raises(DataError, match=message):
        read_images_labels(*_pair(tmp_path, images, labels))


def test_tiny_mnist_is_readable():
    folder = TINY
    x, y = read_images_labels(folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz")
    assert x.shape == (2000, 28, 28) and np.bincount(y).tolist() == [200] * 10


# --- fuzzing: any bytes give an array or a DataError, nothing else ----------------------------

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_bytes(tmp_path, data: bytes):
    path = tmp_path / "fuzz"
    path.write_bytes(data)
    try:
        return read_idx(path)
    except DataError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return None


@FUZZ
@given(data=st.binary(max_size=200))
def test_fuzz_random_bytes(tmp_path, data):
    _read_bytes(tmp_path, data)


@FUZZ
@given(data=st.binary(max_size=60))
def test_fuzz_random_bytes_after_valid_magic(tmp_path, data):
    for prefix in (b"\x00\x00\x08\x02", b"\x00\x00\x0d\x01", b"\x1f\x8b\x08\x00"):
        _read_bytes(tmp_path, prefix + data)


VALID_GZ = gzip.compress(VALID)


@FUZZ
@given(cut=st.integers(0, len(VALID_GZ)), gz=st.booleans(), flip=st.integers(-1, 400))
def test_fuzz_truncated_or_flipped_valid_file(tmp_path, cut, gz, flip):
    data = bytearray((VALID_GZ if gz else VALID)[:cut])
    if 0 <= flip < len(data):
        data[flip] ^= 0xFF
    array = _read_bytes(tmp_path, bytes(data))
    if array is not None and flip < 0:  # an intact prefix is either the whole file or an error
        np.testing.assert_array_equal(array, np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
