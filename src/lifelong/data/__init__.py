"""Data sources: the IDX reader and writer, and MNIST / Fashion-MNIST from a folder, the cache or a download.

>>> from lifelong.data import load_dataset
>>> ds = load_dataset("mnist", "tests/fixtures/mnist-tiny", download=False)  # doctest: +SKIP
"""

from __future__ import annotations

from lifelong.data.idx import read_idx, read_images_labels, write_idx
from lifelong.data.sources import DATASETS, DatasetSpec, ImageDataset, load_dataset

__all__ = ["read_idx", "write_idx", "read_images_labels", "load_dataset", "ImageDataset", "DatasetSpec", "DATASETS"]
