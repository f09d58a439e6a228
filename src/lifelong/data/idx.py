"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 TT NN`` (``TT`` the element type, ``NN`` the number of
dimensions), then ``NN`` big-endian uint32 sizes, then the elements in C order, big-endian.
See http://yann.lecun.com/exdb/mnist/ ("FILE FORMATS FOR THE MNIST DATABASE").

Every problem with a file (missing, truncated, corrupt gzip, wrong type) is a :class:`DataError`
whose one-line message names the file and says how to fix it.

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "x-idx2-ubyte.gz")
>>> _ = write_idx(path, np.arange(6, dtype=np.uint8).reshape(2, 3))
>>> read_idx(path).tolist()
[[0, 1, 2], [3, 4, 5]]
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from lifelong._io import atomic_write_bytes
from lifelong.errors import DataError

__all__ = ["read_idx", "write_idx", "read_images_labels"]

# IDX type code -> big-endian element dtype.
_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_FIX = "Delete it and download again (or point `data_dir` at a good copy)."
_P = ("data_dir",)  # the parameter the messages name


def _decode(data: bytes, name: str) -> np.ndarray:
    """Parse the bytes of an uncompressed IDX file; ``name`` is used in error messages."""
    if len(data) < 4:
        raise DataError(f"{name}: truncated IDX header: expected at least 4 bytes, found {len(data)}. {_FIX}", params=_P)
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{name}: not an IDX file (magic bytes {data[:2].hex()}, expected 0000). "
            "Check the path points at an MNIST-style IDX file."
        )
    code, ndim = data[2], data[3]
    if code not in _TYPES:
        known = ", ".join(f"0x{c:02X}" for c in _TYPES)
        raise DataError(f"{name}: unknown IDX type code 0x{code:02X} (known: {known}). {_FIX}", params=_P)
    if ndim == 0:
        raise DataError(f"{name}: IDX header says 0 dimensions; a valid file has at least 1. {_FIX}", params=_P)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{name}: truncated IDX header: expected {header} bytes for {ndim} dimensions, found {len(data)}. {_FIX}"
        , params=_P)
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _TYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow on absurd headers
    found = len(data) - header
    if found < expected:
        raise DataError(f"{name}: truncated IDX file: expected {expected} bytes of data, found {found}. {_FIX}", params=_P)
    if found > expected:
        raise DataError(
            f"{name}: IDX file has trailing bytes: expected {expected} bytes of data, found {found}. {_FIX}"
        , params=_P)
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header)
    return array.reshape(shape).astype(dtype.newbyteorder("="))  # a native-endian, writable copy


def read_idx(path: str | os.PathLike, *, md5: bool = False):
    """Read an IDX file, raw or gzipped (detected by the gzip magic bytes, not the extension).

    Returns a native-endian array with the file's dtype and shape (and, with ``md5``, the md5 of the
    uncompressed bytes: what identifies the data whatever the compression). Raises
    :class:`DataError` for a missing file, a corrupt or truncated gzip stream, a bad header, or a
    payload whose length does not match the header exactly.
    """
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{name}: file not found. Check the path, or give `data_dir` a folder with the IDX files.", params=_P) from None
    except OSError as e:
        raise DataError(f"{name}: cannot read ({e.strerror or e}). Check the file's permissions.") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except EOFError:
            raise DataError(f"{name}: truncated gzip stream (the download was cut short). {_FIX}", params=_P) from None
        except (OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{name}: corrupt gzip stream ({e}). {_FIX}", params=_P) from None
    array = _decode(data, name)
    return (array, hashlib.md5(data).hexdigest()) if md5 else array


def _dtype_code(dtype: np.dtype) -> int:
    for code, idx_dtype in _TYPES.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    raise DataError(
        f"cannot write dtype {dtype} as IDX; cast to uint8, int8, int16, int32, float32 or float64 first."
    )


def encode_idx(array: np.ndarray) -> bytes:
    """Return the uncompressed IDX bytes of ``array`` (at least 1-D, an IDX-representable dtype)."""
    array = np.asarray(array)
    code = _dtype_code(array.dtype)
    if not 1 <= array.ndim <= 255 or max(array.shape) >= 2**32:
        raise DataError(f"cannot write shape {array.shape} as IDX; it needs 1 to 255 dimensions, each < 2**32.")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=_TYPES[code]).tobytes()


def gzip_bytes(data: bytes) -> bytes:
    """Gzip ``data`` reproducibly: level 9, mtime 0, no file name in the header."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file at ``path``, atomically; the inverse of :func:`read_idx`.

    The file is gzipped (reproducibly, mtime 0) when ``compress`` is true, or when it is ``None`` and
    the path ends in ``.gz``. Returns the path.
    """
    data = encode_idx(array)
    if compress if compress is not None else str(path).endswith(".gz"):
        data = gzip_bytes(data)
    return atomic_write_bytes(path, data)


def read_images_labels(
    images_path: str | os.PathLike, labels_path: str | os.PathLike, *, md5: bool = False
):
    """Read a pair of MNIST-style files: images uint8 ``(N, H, W)`` and labels int64 ``(N,)`` in 0..9
    (with ``md5``, also the md5s of the two files' uncompressed bytes)."""
    (images, md5_images), (labels, md5_labels) = read_idx(images_path, md5=True), read_idx(labels_path, md5=True)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected 3-D ubyte images (N, rows, cols), found {images.ndim}-D {images.dtype}. "
            "Check the images and labels files are not swapped."
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(
            f"{labels_path}: expected 1-D ubyte labels, found {labels.ndim}-D {labels.dtype}. "
            "Check the images and labels files are not swapped."
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels. "
            "Use files from the same release (train with train, t10k with t10k)."
        )
    if len(labels) == 0:
        raise DataError(f"{images_path} and {labels_path} hold no items. {_FIX}", params=_P)
    if labels.max() > 9:
        raise DataError(
            f"{labels_path}: label {int(labels.max())} is out of range 0..9. {_FIX}"
        , params=_P)
    if md5:
        return images, labels.astype(np.int64), (md5_images, md5_labels)
    return images, labels.astype(np.int64)
