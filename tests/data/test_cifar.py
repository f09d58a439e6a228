"""CIFAR-10/100 from their binary archives (built here in the real format: there is no CIFAR copy on
these machines), the reduced ResNet-18, and crop-and-flip augmentation on the device."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lifelong.cli import main
from lifelong.data import load_dataset
from lifelong.data.cifar import CIFAR10, CIFAR100, PIXELS
from lifelong.data.sources import DATASETS
from lifelong.errors import DataError
from lifelong.train.augment import crop_flip
from lifelong.train.checkpoint import CHECKPOINT_FILE, load_checkpoint

from tests.helpers_process import stop_after_checkpoint

from tests.data.test_sources import Server, _closed_port_url  # noqa: F401  (the local HTTP server of the MNIST tests)


def _records(layout, n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, layout.classes, n).astype(np.uint8)
    coarse = rng.integers(0, 20, n).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, PIXELS)).astype(np.uint8)
    cols = ([coarse[:, None]] if layout.label_bytes == 2 else []) + [labels[:, None], pixels]
    return np.concatenate(cols, axis=1).tobytes(), labels.astype(np.int64), pixels


def make_archive(path: Path, layout, per_file: int = 12, n_test: int = 10, seed: int = 0):
    """A tar.gz in the layout of the real archive; returns (train labels, train pixels, test labels, test pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {"train": ([], []), "test": ([], [])}
    with tarfile.open(path, "w:gz") as tar:
        for i, name in enumerate((*layout.train, *layout.test)):
            raw, labels, pixels = _records(layout, n_test if name in layout.test else per_file, seed + i)
            info = tarfile.TarInfo(f"{layout.folder}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
            part = out["test" if name in layout.test else "train"]
            part[0].append(labels)
            part[1].append(pixels)
    return tuple(np.concatenate(v) for k in ("train", "test") for v in out[k])


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    for var in ("LIFELONG_DATA_DIR", "LIFELONG_CACHE_DIR", "LIFELONG_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for name in ("cifar10", "cifar100"):
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], mirrors=(_closed_port_url(),)))


@pytest.mark.parametrize("name, layout", [("cifar10", CIFAR10), ("cifar100", CIFAR100)])
def test_the_binary_archive_reads_to_channel_first_images_and_the_fine_labels(tmp_path, name, layout):
    tr_y, tr_px, te_y, te_px = make_archive(tmp_path / layout.archive, layout)
    ds = load_dataset(name, tmp_path, download=False)
    assert ds.train_images.shape == (12 * len(layout.train), 3, 32, 32) and ds.train_images.dtype == np.uint8
    np.testing.assert_array_equal(ds.train_labels, tr_y)
    np.testing.assert_array_equal(ds.test_labels, te_y)
    # pixel (c, r, k) of record i is byte c·1024 + r·32 + k of its 3072: red plane, green, blue, rows
    i, c, r, k = 5, 2, 7, 30
    assert ds.train_images[i, c, r, k] == tr_px[i, c * 1024 + r * 32 + k]
    np.testing.assert_array_equal(ds.test_images.reshape(len(te_y), -1), te_px)


def test_an_extracted_folder_reads_the_same_and_a_damaged_member_is_one_line(tmp_path):
    make_archive(tmp_path / "a" / CIFAR10.archive, CIFAR10)
    with tarfile.open(tmp_path / "a" / CIFAR10.archive) as tar:
        for m in tar.getmembers():
            (tmp_path / "b" / m.name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "b" / m.name).write_bytes(tar.extractfile(m).read())
    a, b = load_dataset("cifar10", tmp_path / "a", download=False), load_dataset("cifar10", tmp_path / "b", download=False)
    np.testing.assert_array_equal(a.train_images, b.train_images)
    assert a.fingerprint()["md5"] == b.fingerprint()["md5"]  # the same data, wherever it lies
    bad = tmp_path / "b" / CIFAR10.folder / "test_batch.bin"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(DataError, match="not a whole number of 3073-byte CIFAR records") as info:
        load_dataset("cifar10", tmp_path / "b", download=False)
    assert "\n" not in str(info.value)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / CIFAR10.archive).write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable tar.gz archive"):
        load_dataset("cifar10", tmp_path / "c", download=False)


def test_the_archive_is_downloaded_md5_checked_into_the_cache(tmp_path, monkeypatch):
    www = tmp_path / "www"
    www.mkdir()
    labels = make_archive(www / CIFAR100.archive, CIFAR100)[0]
    md5 = hashlib.md5((www / CIFAR100.archive).read_bytes()).hexdigest()
    server = Server(www)
    try:
        spec = DATASETS["cifar100"]
        monkeypatch.setitem(DATASETS, "cifar100", dataclasses.replace(spec, md5={CIFAR100.archive: "0" * 32},
                                                                      mirrors=(server.url,)))
        with pytest.raises(DataError, match="md5 mismatch"):
            load_dataset("cifar100", cache_dir=tmp_path / "cache")
        assert not (tmp_path / "cache" / "cifar100" / CIFAR100.archive).exists()
        monkeypatch.setitem(DATASETS, "cifar100", dataclasses.replace(spec, md5={CIFAR100.archive: md5},
                                                                      mirrors=(server.url,)))
        ds = load_dataset("cifar100", cache_dir=tmp_path / "cache")
        np.testing.assert_array_equal(ds.train_labels, labels)
        assert (tmp_path / "cache" / "cifar100" / CIFAR100.archive).is_file()
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def _crop_flip_one_by_one(x, offsets, flips, pad, fill):
    out = torch.empty_like(x)
    for i in range(len(x)):
        p = torch.full((x.shape[1], x.shape[2] + 2 * pad, x.shape[3] + 2 * pad), fill, dtype=x.dtype)
        p[:, pad:-pad, pad:-pad] = x[i]
        r, c = offsets[i]
        w = p[:, r:r + x.shape[2], c:c + x.shape[3]]
        out[i] = w.flip(-1) if flips[i] else w
    return out


def test_crop_flip_is_a_padded_random_window_mirrored_for_half_the_batch():
    x = torch.randn(64, 3, 8, 8)
    g = torch.Generator().manual_seed(3)
    got = crop_flip(x, g, pad=2, fill=-0.5)
    g = torch.Generator().manual_seed(3)
    offsets = torch.randint(0, 5, (64, 2), generator=g).tolist()
    flips = (torch.rand(64, generator=g) < 0.5).tolist()
    assert torch.equal(got, _crop_flip_one_by_one(x, offsets, flips, 2, -0.5))
    assert 10 < sum(flips) < 54


def test_split_cifar_with_the_reduced_resnet_and_augmentation_resumes_exactly(tmp_path, monkeypatch):
    make_archive(tmp_path / "data" / CIFAR10.archive, CIFAR10, per_file=40, n_test=50)
    args = ["run", "--benchmark", "split-cifar10", "--tasks", "2", "--scenario", "class", "--strategy", "derpp",
            "--memory", "20", "--model", "resnet18", "--augment", "crop-flip", "--iterations", "6", "--batch-size", "8",
            "--checkpoint-every", "2", "--data-dir", str(tmp_path / "data"), "--no-download", "--no-progress",
            "--threads", "1"]
    whole = main([*args, "--out", str(tmp_path / "whole")])
    def block(ci, co, stride):  # two 3x3 convs with batch norm, a 1x1 conv + BN shortcut when the shape changes
        return ci * co * 9 + 2 * co + co * co * 9 + 2 * co + ((ci * co + 2 * co) if stride != 1 or ci != co else 0)

    widths = [20, 20, 40, 80, 160]
    want = 3 * 20 * 9 + 2 * 20 + sum(block(widths[k], widths[k + 1], 1 if k == 0 else 2) + block(widths[k + 1], widths[k + 1], 1)
                                     for k in range(4)) + 160 * 4 + 4  # 4 classes in 2 tasks
    assert whole.n_parameters == want  # 20-40-80-160 channels, a linear layer over 160 features
    stop_after_checkpoint(monkeypatch, args, tmp_path / "cut", task=1, step=4)
    assert "rng.augment" in load_checkpoint(tmp_path / "cut" / CHECKPOINT_FILE)[0]
    resumed = main(["run", "--resume", str(tmp_path / "cut"), "--no-progress", "--threads", "1"])
    assert resumed.accuracy_matrix == whole.accuracy_matrix
    plain = main([*args[:args.index("--augment")], *args[args.index("--augment") + 2:], "--out", str(tmp_path / "p")])
    assert plain.accuracy_matrix != whole.accuracy_matrix  # the augmentation does something
