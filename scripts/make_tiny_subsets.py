"""Make the tiny, class-balanced MNIST and Fashion-MNIST subsets shipped in ``tests/fixtures/``.

For each split, the first ``k`` images of each class in file order are kept, still in file order,
and written as the four canonical gzipped IDX files (level 9, mtime 0: the bytes are reproducible
for a given zlib). Usage, from the repository root::

    python scripts/make_tiny_subsets.py --mnist /work/shared/data/mnist \
        --fashion /usr/share/datasets/fashion-mnist --out tests/fixtures
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lifelong.data.idx import read_images_labels, write_idx

# dataset -> (output folder, images per class in train, images per class in test)
SUBSETS = {"mnist": ("mnist-tiny", 200, 50), "fashion": ("fashion-mnist-tiny", 100, 30)}


def first_per_class(labels: np.ndarray, k: int) -> np.ndarray:
    """Indices of the first ``k`` examples of each class, in file order."""
    keep = np.concatenate([np.flatnonzero(labels == c)[:k] for c in np.unique(labels)])
    return np.sort(keep)


def make_subset(src: Path, dst: Path, k_train: int, k_test: int) -> None:
    """Write the class-balanced subset of the IDX files in ``src`` to ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for split, k in (("train", k_train), ("t10k", k_test)):
        images, labels = read_images_labels(
            src / f"{split}-images-idx3-ubyte.gz", src / f"{split}-labels-idx1-ubyte.gz"
        )
        keep = first_per_class(labels, k)
        write_idx(dst / f"{split}-images-idx3-ubyte.gz", images[keep])
        write_idx(dst / f"{split}-labels-idx1-ubyte.gz", labels[keep].astype(np.uint8))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, required=True, help="folder with the full MNIST .gz files")
    parser.add_argument("--fashion", type=Path, required=True, help="folder with the full Fashion-MNIST .gz files")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures"))
    args = parser.parse_args(argv)
    for key, src in (("mnist", args.mnist), ("fashion", args.fashion)):
        folder, k_train, k_test = SUBSETS[key]
        make_subset(src, args.out / folder, k_train, k_test)
        print(f"wrote {args.out / folder}")


if __name__ == "__main__":
    main()
