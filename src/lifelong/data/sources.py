"""Where MNIST and Fashion-MNIST come from: a local folder, the cache, or a checked download.

:func:`load_dataset` looks in order in ``data_dir``, ``$LIFELONG_DATA_DIR`` and the cache folder
(``cache_dir``, else ``$LIFELONG_CACHE_DIR``, else ``$XDG_CACHE_HOME/lifelong`` or
``~/.cache/lifelong``). In each folder the four IDX files may lie directly or in a subfolder named
after the dataset, gzipped (canonical name) or raw (name without ``.gz``). Local files are checked
structurally by the IDX reader, not by md5, so raw or recompressed copies are fine. If none is
found, the missing canonical ``.gz`` files are downloaded into the cache from the mirrors in order,
each checked against its md5 before it gets its final name.

MNIST: LeCun et al., "Gradient-based learning applied to document recognition", 1998.
Fashion-MNIST: Xiao, Rasul, Vollgraf, arXiv:1708.07747, 2017.

>>> ds = load_dataset("mnist", "tests/fixtures/mnist-tiny", download=False)  # doctest: +SKIP
>>> ds.train_images.shape, ds.train_labels.dtype  # doctest: +SKIP
((2000, 28, 28), dtype('int64'))
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lifelong._io import atomic_write
from lifelong.data.cifar import CIFAR10, CIFAR100, read_cifar
from lifelong.data.idx import read_images_labels
from lifelong.errors import DataError, UsageError

__all__ = ["DatasetSpec", "DATASETS", "ImageDataset", "load_dataset", "default_cache_dir"]

#: The four canonical file names, in the order train images, train labels, test images, test labels.
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DatasetSpec:
    """What identifies a dataset: its files, their checksums and where to download them.

    ``md5`` holds the md5 of each canonical *gzipped* file as the mirrors serve it (downloads are
    checked against it); ``raw_md5`` the md5 of its decompressed content, which identifies the data
    whatever the compression (tests check local copies against it).
    """

    name: str
    title: str
    md5: dict[str, str]
    raw_md5: dict[str, str]
    mirrors: tuple[str, ...]
    folder_names: tuple[str, ...]
    files: tuple[str, ...] = FILES
    cifar: object | None = None  # a CifarLayout: one binary archive instead of four IDX files


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        raw_md5={
            "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        folder_names=("mnist",),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        title="Fashion-MNIST",
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        raw_md5={
            "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        folder_names=("fashion-mnist", "fashion_mnist"),
    ),
    "cifar10": DatasetSpec(
        name="cifar10", title="CIFAR-10", md5={CIFAR10.archive: CIFAR10.archive_md5}, raw_md5={},
        mirrors=("https://www.cs.toronto.edu/~kriz/",), folder_names=("cifar10", "cifar-10"),
        files=(CIFAR10.archive,), cifar=CIFAR10,
    ),
    "cifar100": DatasetSpec(
        name="cifar100", title="CIFAR-100", md5={CIFAR100.archive: CIFAR100.archive_md5}, raw_md5={},
        mirrors=("https://www.cs.toronto.edu/~kriz/",), folder_names=("cifar100", "cifar-100"),
        files=(CIFAR100.archive,), cifar=CIFAR100,
    ),
}


@dataclass
class ImageDataset:
    """A train/test split of 28x28 grey images: uint8 ``(N, 28, 28)`` and int64 labels ``(N,)``.

    ``source`` is the folder the four files were read from; ``md5`` the md5s of their uncompressed
    content (:meth:`fingerprint`).
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    md5: dict[str, str] | None = None  # canonical file name -> md5 of its uncompressed content

    def fingerprint(self) -> dict:
        """What identifies the data, wherever it was read from: its name and the md5 of each file's
        uncompressed content (``canonical``: they are the published files')."""
        spec = DATASETS.get(self.name)
        canonical = spec is not None and self.md5 == spec.raw_md5
        return {"dataset": self.name, "md5": dict(self.md5 or {}), "canonical": canonical}

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.name!r}, train={self.train_images.shape}, "
            f"test={self.test_images.shape}, source={self.source!r})"
        )


def default_cache_dir() -> Path:
    """``$LIFELONG_CACHE_DIR``, else ``$XDG_CACHE_HOME/lifelong``, else ``~/.cache/lifelong``."""
    if os.environ.get("LIFELONG_CACHE_DIR"):
        return Path(os.environ["LIFELONG_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lifelong"


def _find_files(folder: Path, spec: DatasetSpec) -> tuple[list[Path] | None, str]:
    """The four files in ``folder`` or a dataset-named subfolder, or ``None`` and a note on what is there.
    CIFAR: its archive, or the folder extracted from it (``cifar-10-batches-bin``), there."""
    note = ""
    if spec.cifar is not None:
        for candidate in (folder, *(folder / sub for sub in spec.folder_names)):
            if (candidate / spec.files[0]).is_file():
                return [candidate / spec.files[0]], ""
            extracted = candidate / spec.cifar.folder
            if extracted.is_dir():
                return [extracted], ""
        return None, ""
    for candidate in (folder, *(folder / sub for sub in spec.folder_names)):
        found = []
        for name in spec.files:
            paths = [candidate / name, candidate / name.removesuffix(".gz")]
            found.append(next((p for p in paths if p.is_file()), None))
        have = [p for p in found if p is not None]
        if len(have) == len(found):
            return have, ""
        if have and not note:
            missing = ", ".join(n for n, p in zip(spec.files, found) if p is None)
            note = f" ({candidate} has only {len(have)} of {len(found)} files, missing {missing})"
    return None, note


class _Mismatch(Exception):
    """A downloaded file's md5 differs from the expected one."""

    def __init__(self, actual: str) -> None:
        super().__init__(actual)
        self.actual = actual


def _download(url: str, dest: Path, md5: str, timeout: float) -> None:
    """Stream ``url`` to ``dest`` atomically; raise :class:`_Mismatch` (leaving no file) on a bad md5."""

    def write(f) -> None:
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                f.write(chunk)
        if digest.hexdigest() != md5:
            raise _Mismatch(digest.hexdigest())

    atomic_write(dest, write)


def _download_all(spec: DatasetSpec, dest: Path, mirrors: list[str], timeout: float) -> str | None:
    """Download the files missing from ``dest``; return ``None`` on success, else why it failed.

    A file whose every mirror served the wrong bytes raises :class:`DataError` at once.
    """
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create {dest} ({e.strerror or e})"
    for name in spec.files:
        if (dest / name).is_file() or (dest / name.removesuffix(".gz")).is_file():
            continue
        errors, mismatch = [], None
        for base in mirrors:
            url = base.rstrip("/") + "/" + name
            try:
                _download(url, dest / name, spec.md5[name], timeout)
                break
            except _Mismatch as e:
                mismatch = (url, e.actual)
            except (OSError, http.client.HTTPException, ValueError) as e:  # URLError, timeouts, bad URLs
                errors.append(f"{url}: {e}")
        else:
            if mismatch:
                url, actual = mismatch
                raise DataError(
                    f"{name}: md5 mismatch for {url}: expected {spec.md5[name]}, got {actual} "
                    f"(tried {len(mirrors)} mirror(s)). Retry later, set LIFELONG_MIRROR to another mirror, "
                    "or give `data_dir` a folder with the four IDX files.", params=("data_dir",)
                )
            return "; ".join(errors) or "no mirrors configured"
    return None


def _what(spec: DatasetSpec) -> str:
    return f"four {spec.title} IDX files" if spec.cifar is None else f"{spec.files[0]} (or its extracted folder)"


_LOADED: dict[tuple, ImageDataset] = {}  # the last data sets read, by their files' identity (read-only arrays)


def _load(spec: DatasetSpec, paths: list[Path], source: Path, copy: bool = True) -> ImageDataset:
    """The data set in ``paths``, read once per process while the files stay the same (path, inode, size and
    modification time): a run id (which covers the data) and the run's stream then read it once. Each
    caller gets its own arrays unless ``copy`` is False (the cached ones, read-only)."""
    try:
        files = [f for p in paths for f in (sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])]
        key = (spec.name, str(source), *((str(f), st.st_ino, st.st_size, st.st_mtime_ns) for f in files
                                         for st in [f.stat()]))
    except OSError:
        key = None
    if key is None:
        return _read(spec, paths, source)
    if key not in _LOADED:
        while len(_LOADED) >= 2:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = _read(spec, paths, source)
        for k in ("train_images", "train_labels", "test_images", "test_labels"):
            getattr(_LOADED[key], k).flags.writeable = False  # shared: a caller that writes gets a copy
    data = _LOADED[key]
    if not copy:
        return data
    return dataclasses.replace(data, **{k: getattr(data, k).copy() for k in
                                        ("train_images", "train_labels", "test_images", "test_labels")})


def _read(spec: DatasetSpec, paths: list[Path], source: Path) -> ImageDataset:
    if spec.cifar is not None:
        tr_x, tr_y, te_x, te_y, md5 = read_cifar(paths[0], spec.cifar)
        return ImageDataset(spec.name, tr_x, tr_y, te_x, te_y, str(paths[0]), md5)
    train_images, train_labels, md5_train = read_images_labels(paths[0], paths[1], md5=True)
    test_images, test_labels, md5_test = read_images_labels(paths[2], paths[3], md5=True)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataError(
            f"{paths[0]} holds {train_images.shape[1]}x{train_images.shape[2]} images but {paths[2]} holds "
            f"{test_images.shape[1]}x{test_images.shape[2]}: the train and test files come from different data sets. "
            "Use the four files of one release."
        )
    md5 = dict(zip(spec.files, (*md5_train, *md5_test)))
    return ImageDataset(spec.name, train_images, train_labels, test_images, test_labels, str(source), md5)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    mirrors: list[str] | None = None,
    timeout: float = 30,
    copy: bool = True,
) -> ImageDataset:
    """Load ``"mnist"`` or ``"fashion-mnist"`` from the first place that has all four IDX files.

    Looks in ``data_dir`` (which must be an existing folder), then ``$LIFELONG_DATA_DIR``, then
    ``<cache>/<name>``; if none has them
    and ``download`` is true, downloads the missing files into ``<cache>/<name>`` from ``mirrors``
    (default: ``$LIFELONG_MIRROR`` if set, then the spec's mirrors), checking each md5. Raises
    :class:`DataError` naming every place looked when nothing works. ``copy=False`` returns the
    process's cached arrays, read-only, without copying them (enough to read a fingerprint).
    """
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}.")
    spec = DATASETS[name]
    cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / spec.name
    env_dir = os.environ.get("LIFELONG_DATA_DIR") or None
    places: list[tuple[str, Path | None]] = []
    if data_dir is not None and not Path(data_dir).is_dir():
        # a folder named on purpose that does not exist is a typo, not a request to use some other copy
        what = "is a file, not a folder" if Path(data_dir).exists() else "does not exist"
        raise DataError(f"data_dir={data_dir} {what}; give the folder that holds the {_what(spec)} (or leave `data_dir` "
                        "out to use $LIFELONG_DATA_DIR, the cache or the download).", params=("data_dir",))
    if data_dir is not None:
        places.append((f"data_dir={data_dir}", Path(data_dir)))
    places.append((f"$LIFELONG_DATA_DIR={env_dir}", Path(env_dir)) if env_dir else ("$LIFELONG_DATA_DIR (unset)", None))
    places.append((f"cache {cache}", cache))

    looked = []
    for label, folder in places:
        paths, note = _find_files(folder, spec) if folder is not None else (None, "")
        if paths is not None:
            return _load(spec, paths, paths[0].parent, copy)
        looked.append(label + note)

    if not download:
        status = "download disabled"
    else:
        if mirrors is None:
            mirrors = list(spec.mirrors)
            if os.environ.get("LIFELONG_MIRROR"):
                mirrors.insert(0, os.environ["LIFELONG_MIRROR"])
        failure = _download_all(spec, cache, list(mirrors), timeout)
        if failure is None:
            paths, _ = _find_files(cache, spec)
            assert paths is not None
            return _load(spec, paths, cache, copy)
        status = f"download failed: {failure}"
    raise DataError(
        f"{spec.title} not found (looked in: {', '.join(looked)}; {status}). Give `data_dir` a folder with the "
        f"{'four IDX files' if spec.cifar is None else spec.files[0]}, set LIFELONG_DATA_DIR, or allow the download.",
        params=("data_dir",),
    )
