"""Dataset sources: search order, folder layouts, checked downloads from a local HTTP server, errors.

Never touches the internet or the real home cache: every test runs with HOME, XDG_CACHE_HOME and the
LIFELONG_* variables pointed into ``tmp_path``, and the specs' mirrors replaced by a closed port.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from lifelong.data import DATASETS, ImageDataset, load_dataset
from lifelong.data.sources import FILES, default_cache_dir
from lifelong.errors import DataError, UsageError
from tests.helpers import FIXTURES

DATA = FIXTURES
TINY = {"mnist": DATA / "mnist-tiny", "fashion-mnist": DATA / "fashion-mnist-tiny"}
LOCAL_FULL = {"mnist": Path("/work/shared/data/mnist"), "fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real env vars, home cache or internet mirrors; the mnist spec's md5s are the tiny files'."""
    for var in ("LIFELONG_DATA_DIR", "LIFELONG_CACHE_DIR", "LIFELONG_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    dead = (_closed_port_url(),)
    for name, spec in DATASETS.items():
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(spec, mirrors=dead))
    tiny_md5 = {f: _md5(TINY["mnist"] / f) for f in FILES}
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], md5=tiny_md5))


def _copy(src: Path, dst: Path, *, raw: bool = False) -> Path:
    """Copy the four tiny files into ``dst``, decompressed (name without .gz) when ``raw``."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        if raw:
            (dst / f.removesuffix(".gz")).write_bytes(gzip.decompress((src / f).read_bytes()))
        else:
            shutil.copy(src / f, dst / f)
    return dst


class Server:
    """A local HTTP server over a folder, recording the paths it was asked for."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()


@pytest.fixture
def server(tmp_path):
    """Serves ``good/`` (the tiny MNIST files), ``bad/`` (other bytes under the same names), ``empty/``."""
    root = tmp_path / "www"
    _copy(TINY["mnist"], root / "good")
    _copy(TINY["fashion-mnist"], root / "bad")
    (root / "empty").mkdir()
    s = Server(root)
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _assert_is_tiny_mnist(ds: ImageDataset) -> None:
    assert ds.name == "mnist"
    assert ds.train_images.shape == (2000, 28, 28) and ds.test_images.shape == (500, 28, 28)
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int64
    assert np.bincount(ds.train_labels).tolist() == [200] * 10
    assert np.bincount(ds.test_labels).tolist() == [50] * 10


# --- local folders ----------------------------------------------------------------------------


def test_tiny_subsets_shapes_and_class_counts():
    _assert_is_tiny_mnist(load_dataset("mnist", TINY["mnist"], download=False))
    fashion = load_dataset("fashion-mnist", TINY["fashion-mnist"], download=False)
    assert fashion.train_images.shape == (1000, 28, 28) and fashion.test_images.shape == (300, 28, 28)
    assert np.bincount(fashion.train_labels).tolist() == [100] * 10
    assert np.bincount(fashion.test_labels).tolist() == [30] * 10
    assert fashion.source == str(TINY["fashion-mnist"])


def test_tiny_subsets_are_small():
    assert sum(p.stat().st_size for p in DATA.rglob("*.gz")) <= 1_000_000


def test_search_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    arg = _copy(TINY["mnist"], tmp_path / "arg")
    env = _copy(TINY["mnist"], tmp_path / "env")
    cache = tmp_path / "cache"
    _copy(TINY["mnist"], cache / "mnist")
    monkeypatch.setenv("LIFELONG_DATA_DIR", str(env))
    assert load_dataset("mnist", arg, cache_dir=cache, download=False).source == str(arg)
    assert load_dataset("mnist", cache_dir=cache, download=False).source == str(env)
    monkeypatch.delenv("LIFELONG_DATA_DIR")
    assert load_dataset("mnist", cache_dir=cache, download=False).source == str(cache / "mnist")


def test_cache_dir_defaults(tmp_path, monkeypatch):
    assert default_cache_dir() == tmp_path / "xdg" / "lifelong"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "lifelong"
    monkeypatch.setenv("LIFELONG_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    _copy(TINY["mnist"], tmp_path / "c" / "mnist")
    assert load_dataset("mnist", download=False).source == str(tmp_path / "c" / "mnist")


@pytest.mark.parametrize(
    "name, sub, raw",
    [
        ("mnist", "", False),
        ("mnist", "", True),
        ("mnist", "mnist", False),
        ("mnist", "mnist", True),
        ("fashion-mnist", "fashion-mnist", False),
        ("fashion-mnist", "fashion_mnist", True),
    ],
)
def test_folder_layouts(tmp_path, name, sub, raw):
    _copy(TINY[name], tmp_path / "data" / sub, raw=raw)
    ds = load_dataset(name, tmp_path / "data", download=False)
    assert ds.source == str(tmp_path / "data" / sub if sub else tmp_path / "data")
    np.testing.assert_array_equal(ds.test_labels, load_dataset(name, TINY[name], download=False).test_labels)


def test_partial_folder_is_skipped_and_reported(tmp_path, monkeypatch):
    partial = _copy(TINY["mnist"], tmp_path / "partial")
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="has only 3 of 4 files, missing t10k-labels-idx1-ubyte.gz"):
        load_dataset("mnist", partial, cache_dir=tmp_path / "cache", download=False)
    monkeypatch.setenv("LIFELONG_DATA_DIR", str(_copy(TINY["mnist"], tmp_path / "env")))
    assert load_dataset("mnist", partial, download=False).source == str(tmp_path / "env")


def test_corrupt_local_file_is_an_error_not_skipped(tmp_path, monkeypatch):
    bad = _copy(TINY["mnist"], tmp_path / "bad")
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes((bad / "t10k-images-idx3-ubyte.gz").read_bytes()[:1000])
    monkeypatch.setenv("LIFELONG_DATA_DIR", str(_copy(TINY["mnist"], tmp_path / "env")))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: truncated gzip"):
        load_dataset("mnist", bad, download=False)


def test_a_data_dir_that_is_not_a_folder_is_an_error_even_when_another_copy_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFELONG_DATA_DIR", str(_copy(TINY["mnist"], tmp_path / "env")))
    with pytest.raises(DataError, match=r"data_dir=.*nowhere does not exist; give the folder") as info:
        load_dataset("mnist", tmp_path / "nowhere", download=False)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        load_dataset("mnist", tmp_path / "file", download=False)


def test_not_found_names_every_place(tmp_path):
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(DataError) as info:
        load_dataset("mnist", tmp_path / "nowhere", cache_dir=tmp_path / "cache", download=False)
    message = str(info.value)
    assert message.startswith("MNIST not found (looked in: ") and "\n" not in message
    places = [f"data_dir={tmp_path / 'nowhere'}", "$LIFELONG_DATA_DIR (unset)", f"cache {tmp_path / 'cache' / 'mnist'}"]
    assert [message.index(p) for p in places] == sorted(message.index(p) for p in places)
    assert "download disabled" in message and "Give `data_dir` a folder" in message
    assert info.value.exit_code == 2


def test_unknown_dataset():
    with pytest.raises(UsageError, match="choose one of: mnist, fashion-mnist, cifar10, cifar100"):
        load_dataset("imagenet")


# --- downloads --------------------------------------------------------------------------------


def test_download_lands_in_cache_once(tmp_path, server):
    cache = tmp_path / "cache"
    ds = load_dataset("mnist", cache_dir=cache, mirrors=[server.url + "good/"])
    _assert_is_tiny_mnist(ds)
    assert ds.source == str(cache / "mnist")
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(FILES)  # no temp files left
    assert all(_md5(cache / "mnist" / f) == _md5(TINY["mnist"] / f) for f in FILES)
    assert sorted(server.requests) == sorted(f"/good/{f}" for f in FILES)
    load_dataset("mnist", cache_dir=cache, mirrors=[server.url + "good/"])
    assert len(server.requests) == 4  # served from the cache the second time


def test_first_mirror_404_then_second(tmp_path, server):
    ds = load_dataset("mnist", cache_dir=tmp_path / "cache", mirrors=[server.url + "empty", server.url + "good/"])
    _assert_is_tiny_mnist(ds)
    assert server.requests[:2] == [f"/empty/{FILES[0]}", f"/good/{FILES[0]}"]


def test_env_mirror_is_tried_first(tmp_path, server, monkeypatch):
    monkeypatch.setenv("LIFELONG_MIRROR", server.url + "good/")
    _assert_is_tiny_mnist(load_dataset("mnist", cache_dir=tmp_path / "cache"))  # spec mirror is dead


def test_md5_mismatch_on_every_mirror(tmp_path, server):
    cache = tmp_path / "cache"
    expected = DATASETS["mnist"].md5[FILES[0]]
    actual = _md5(TINY["fashion-mnist"] / FILES[0])
    with pytest.raises(DataError, match=f"{FILES[0]}: md5 mismatch .*expected {expected}, got {actual}"):
        load_dataset("mnist", cache_dir=cache, mirrors=[server.url + "bad/"])
    assert list((cache / "mnist").iterdir()) == []  # nothing kept, not even a temp file


def test_md5_mismatch_then_good_mirror(tmp_path, server):
    ds = load_dataset("mnist", cache_dir=tmp_path / "cache", mirrors=[server.url + "bad/", server.url + "good/"])
    _assert_is_tiny_mnist(ds)


def test_partial_cache_downloads_only_missing(tmp_path, server):
    cache = tmp_path / "cache"
    _copy(TINY["mnist"], cache / "mnist")
    for f in FILES[2:]:
        (cache / "mnist" / f).unlink()
    _assert_is_tiny_mnist(load_dataset("mnist", cache_dir=cache, mirrors=[server.url + "good/"]))
    assert sorted(server.requests) == sorted(f"/good/{f}" for f in FILES[2:])


def test_unreachable_mirrors(tmp_path):
    dead = _closed_port_url()
    with pytest.raises(DataError, match=r"MNIST not found \(looked in: .*; download failed: .*127\.0\.0\.1") as info:
        load_dataset("mnist", cache_dir=tmp_path / "cache", mirrors=[dead], timeout=5)
    assert "\n" not in str(info.value)
    assert not any((tmp_path / "cache" / "mnist").iterdir())


# --- the real checksums -----------------------------------------------------------------------


def test_spec_checksums_are_well_formed():
    for spec in DATASETS.values():
        assert set(spec.md5) == set(spec.files) and all(len(h) == 32 and int(h, 16) >= 0 for h in spec.md5.values())
        if spec.cifar is None:  # CIFAR is identified by its archive's md5 alone
            assert set(spec.files) == set(FILES) == set(spec.raw_md5)
            assert all(len(h) == 32 and int(h, 16) >= 0 for h in spec.raw_md5.values())


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_raw_md5_matches_local_full_copies(name):
    """The decompressed content of local full copies matches the spec's ``raw_md5``.

    The gzipped md5s cannot be checked here: the local copies are recompressed (different gzip bytes,
    same content), so those were checked against the published values instead.
    """
    folder = LOCAL_FULL[name]
    if not all((folder / f).is_file() for f in FILES):
        pytest.skip(f"no full {name} copy at {folder}")
    for f in FILES:
        actual = hashlib.md5(gzip.decompress((folder / f).read_bytes())).hexdigest()
        assert actual == DATASETS[name].raw_md5[f], f


def test_a_data_set_is_read_once_each_caller_gets_its_own_arrays_and_copy_false_shares_them_read_only():
    a = load_dataset("mnist", TINY["mnist"], download=False)
    a.train_images[0, 0, 0] ^= 0xFF  # the caller's own copy: the next reader does not see it
    b = load_dataset("mnist", TINY["mnist"], download=False)
    assert b.train_images[0, 0, 0] != a.train_images[0, 0, 0] and b.train_images.flags.writeable
    shared = load_dataset("mnist", TINY["mnist"], download=False, copy=False)
    assert not shared.train_images.flags.writeable and shared.fingerprint() == b.fingerprint()
    np.testing.assert_array_equal(shared.train_images, b.train_images)
    assert load_dataset("mnist", TINY["mnist"], download=False, copy=False).train_images is shared.train_images
