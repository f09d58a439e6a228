"""CIFAR-10 and CIFAR-100 from their canonical *binary* archives (Krizhevsky 2009), never the pickled
Python version: reading a pickle can run code, reading fixed-size records cannot.

``cifar-10-binary.tar.gz`` holds ``cifar-10-batches-bin/data_batch_{1..5}.bin`` and ``test_batch.bin``:
records of 1 label byte and 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each a 32×32 image in
row-major order). ``cifar-100-binary.tar.gz`` holds ``cifar-100-binary/train.bin`` and ``test.bin``:
records of a coarse label byte, a fine label byte (the 100 classes used here) and the same 3072 bytes.

The members are read straight out of the archive (nothing is extracted, so no path in it can point
anywhere); an extracted folder of ``.bin`` files works as well. Images come out as uint8 (N, 3, 32, 32).
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lifelong.errors import DataError

PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarLayout:
    """Where the records are and how they are laid out."""

    archive: str  # canonical archive name
    archive_md5: str  # md5 of the archive as the authors serve it
    folder: str  # the folder inside the archive (and of an extracted copy)
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int  # 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine)
    classes: int
    train_count: int
    test_count: int


CIFAR10 = CifarLayout("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", "cifar-10-batches-bin",
                      tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",), 1, 10, 50000, 10000)
CIFAR100 = CifarLayout("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8", "cifar-100-binary",
                       ("train.bin",), ("test.bin",), 2, 100, 50000, 10000)


def parse_records(raw: bytes, layout: CifarLayout, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Records of ``layout`` -> (uint8 images (N, 3, 32, 32), int64 labels (N,)); DataError naming
    ``name`` if the bytes are not whole records or a label is out of range."""
    size = layout.label_bytes + PIXELS
    if len(raw) == 0 or len(raw) % size:
        raise DataError(f"{name}: {len(raw)} bytes is not a whole number of {size}-byte CIFAR records "
                        "(truncated or not a CIFAR binary file). Delete it and download again.")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, size)
    labels = rec[:, layout.label_bytes - 1].astype(np.int64)  # CIFAR-100: the fine label
    if labels.max() >= layout.classes:
        raise DataError(f"{name}: label {int(labels.max())} is not one of the {layout.classes} classes: "
                        "this is not the archive it is named after")
    images = rec[:, layout.label_bytes:].reshape(-1, 3, 32, 32).copy()
    return images, labels


def _members(source: Path, layout: CifarLayout) -> dict[str, bytes]:
    """The record files' bytes, from the archive ``source`` or an extracted folder."""
    names = (*layout.train, *layout.test)
    if source.is_dir():
        out = {}
        for n in names:
            p = source / n
            if not p.is_file():
                raise DataError(f"{source} lacks {n}: give the folder of the extracted {layout.archive} or the archive")
            out[n] = p.read_bytes()
        return out
    try:
        with tarfile.open(source, "r:gz") as tar:
            out = {}
            for n in names:
                member = tar.getmember(f"{layout.folder}/{n}")
                if not member.isfile():
                    raise DataError(f"{source}: {member.name} is not a regular file")
                f = tar.extractfile(member)
                out[n] = f.read() if f is not None else b""
            return out
    except KeyError as e:
        raise DataError(f"{source} has no member {e.args[0]!s}: it is not {layout.archive}") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{source}: not a readable tar.gz archive ({type(e).__name__}: {e}). Delete it and "
                        "download again.") from None


def read_cifar(source: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """(train images, train labels, test images, test labels, md5 of each record file) from ``source``
    (the archive or an extracted folder)."""
    members = _members(source, layout)
    md5 = {n: hashlib.md5(b).hexdigest() for n, b in members.items()}
    parts = {n: parse_records(b, layout, f"{source}:{n}") for n, b in members.items()}
    tr = [parts[n] for n in layout.train]
    te = [parts[n] for n in layout.test]
    tr_x, tr_y = np.concatenate([p[0] for p in tr]), np.concatenate([p[1] for p in tr])
    te_x, te_y = np.concatenate([p[0] for p in te]), np.concatenate([p[1] for p in te])
    return tr_x, tr_y, te_x, te_y, md5
