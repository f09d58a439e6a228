"""Task streams built from an image data set: permuted, rotated and split.

Each builder is a seeded function from images to a :class:`TaskStream`; every random choice (pixel
permutations, the validation hold-out) comes from a ``torch.Generator`` derived from ``seed``, never
from global random state, so the same seed gives the same stream on any machine.

- Permuted (Goodfellow et al. 2013; Kirkpatrick et al. 2017, Fig. 2): each task applies its own fixed
  random permutation to the pixels of every image.
- Rotated (Lopez-Paz & Ranzato 2017): each task rotates every image by a fixed angle.
- DataSplit (Zenke et al. 2017): each task holds a group of classes, by default (0, 1), (2, 3), ...
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
from torch import Tensor

from ..errors import UsageError
from ..seeds import derived_generator
from .task import SCENARIOS, Preprocess, DataSplit, Task, TaskStream

DEFAULT_SPLIT_GROUPS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


def _check_scenario(scenario: str) -> None:
    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}", params=("scenario",))


def _holdout(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor | None]:
    """Indices (train, val) of a seeded random hold-out of ``val_fraction`` of n training samples."""
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction}", params=("val_fraction",))
    n_val = int(round(n * val_fraction))
    if n_val == 0:
        return torch.arange(n), None
    order = torch.randperm(n, generator=derived_generator(seed, "val"))
    return order[n_val:].sort().values, order[:n_val].sort().values


def _as_tensors(train_images, train_labels, test_images, test_labels):
    conv = lambda a, dt: torch.as_tensor(a).to(dt)  # noqa: E731 - numpy or torch in, torch out
    return (
        conv(train_images, torch.uint8),
        conv(train_labels, torch.long),
        conv(test_images, torch.uint8),
        conv(test_labels, torch.long),
    )


def _same_input_tasks(
    name: str,
    data,
    scenario: str,
    task_names: Sequence[str],
    images_for_task,  # (task index, uint8 images (N, H, W), split name) -> uint8 images
    perms: Sequence[Tensor | None],
    *,
    seed: int,
    val_fraction: float,
    pad: int,
    mean: float,
    std: float,
) -> TaskStream:
    """Permuted and rotated streams: every task has all 10 classes, inputs transformed per task.

    Output units: domain-incremental shares 10 units; task- and class-incremental give task t the units
    10t..10t+9 (masked to them in the task scenario, all 10T units live in the class scenario).
    """
    _check_scenario(scenario)
    tr_x, tr_y, te_x, te_y = _as_tensors(*data)
    n_classes = int(max(tr_y.max(), te_y.max())) + 1
    tr_idx, val_idx = _holdout(len(tr_y), val_fraction, seed)
    base = {"train": tr_x[tr_idx], "val": None if val_idx is None else tr_x[val_idx], "test": te_x}
    base_y = {"train": tr_y[tr_idx], "val": None if val_idx is None else tr_y[val_idx], "test": te_y}
    n_tasks = len(task_names)
    n_outputs = n_classes if scenario == "domain" else n_classes * n_tasks
    tasks = []
    for t, tname in enumerate(task_names):
        offset = 0 if scenario == "domain" else n_classes * t
        splits = {
            k: None
            if base[k] is None
            else DataSplit(images_for_task(t, base[k], k), base_y[k] + offset)
            for k in base
        }
        classes = tuple(range(offset, offset + n_classes))
        mask = None
        if scenario == "task":
            mask = torch.zeros(n_outputs, dtype=torch.bool)
            mask[offset : offset + n_classes] = True
        pre = Preprocess(pad=pad, mean=mean, std=std, perm=perms[t])
        tasks.append(Task(t, tname, splits["train"], splits["test"], splits["val"], classes, pre, mask))
    h, w = tr_x.shape[1:]
    return TaskStream(name, scenario, tuple(tasks), n_outputs, (1, h + 2 * pad, w + 2 * pad))


def permuted(
    data,
    n_tasks: int,
    scenario: str = "domain",
    *,
    seed: int = 0,
    val_fraction: float = 0.0,
    name: str = "permuted-mnist",
    pad: int = 0,
    mean: float = 0.0,
    std: float = 1.0,
) -> TaskStream:
    """Permuted MNIST: task t applies the t-th seeded random pixel permutation to every image.

    ``data`` is ``(train_images, train_labels, test_images, test_labels)`` (uint8 (N, H, W), labels)
    or any object with those four attributes. Every task is permuted (none is left unpermuted).
    """
    data = _unpack(data)
    h, w = data[0].shape[1:]
    g = derived_generator(seed, "perm")
    perms = [torch.randperm((h + 2 * pad) * (w + 2 * pad), generator=g) for _ in range(n_tasks)]
    names = [f"perm{t + 1}" for t in range(n_tasks)]
    return _same_input_tasks(
        name, data, scenario, names, lambda t, x, k: x, perms,
        seed=seed, val_fraction=val_fraction, pad=pad, mean=mean, std=std,
    )


def rotated(
    data,
    angles: Sequence[float],
    scenario: str = "domain",
    *,
    seed: int = 0,
    val_fraction: float = 0.0,
    name: str = "rotated-mnist",
    pad: int = 0,
    mean: float = 0.0,
    std: float = 1.0,
) -> TaskStream:
    """Rotated MNIST: task t rotates every image by ``angles[t]`` degrees (counter-clockwise).

    Rotation is bilinear about the image centre with zero fill, rounded back to uint8 (as rotating a
    PIL image does); it is computed once per task when the stream is built.
    """
    data = _unpack(data)
    names = [f"rot{a:g}" for a in angles]
    return _same_input_tasks(
        name, data, scenario, names, lambda t, x, k: rotate_images(x, angles[t]), [None] * len(angles),
        seed=seed, val_fraction=val_fraction, pad=pad, mean=mean, std=std,
    )


def rotate_images(images: Tensor, degrees: float, chunk: int = 10000) -> Tensor:
    """Rotate uint8 images (N, H, W) counter-clockwise by ``degrees``; returns uint8 (N, H, W)."""
    if degrees % 360 == 0:
        return images
    a = math.radians(degrees)
    # affine_grid maps output coords to input coords: the inverse rotation. y points down in images,
    # so this matrix turns the picture counter-clockwise as seen on screen.
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    out = torch.empty_like(images)
    for s in range(0, len(images), chunk):
        x = images[s : s + chunk].to(torch.float32).unsqueeze(1)  # (B, 1, H, W)
        grid = torch.nn.functional.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
        y = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out[s : s + chunk] = y.squeeze(1).round_().clamp_(0, 255).to(torch.uint8)
    return out


def split_classes(
    data,
    groups: Sequence[Sequence[int]] = DEFAULT_SPLIT_GROUPS,
    scenario: str = "task",
    *,
    seed: int = 0,
    val_fraction: float = 0.0,
    name: str = "split-mnist",
    pad: int = 0,
    mean: float = 0.0,
    std: float = 1.0,
) -> TaskStream:
    """DataSplit MNIST: task t holds the classes ``groups[t]``.

    Output units: task-incremental uses one unit per class, masked to the task's classes (the same as
    a separate head per task); domain-incremental shares ``len(group)`` units (target = position of
    the class in its group); class-incremental has one unit per class and no mask.
    """
    _check_scenario(scenario)
    groups = [tuple(int(c) for c in g) for g in groups]
    flat = [c for g in groups for c in g]
    if len(set(flat)) != len(flat):
        raise UsageError(f"split class groups overlap: {groups}; each class may appear in one task only")
    if any(len(g) == 0 for g in groups):
        raise UsageError("split class groups must not be empty")
    if scenario == "domain" and len({len(g) for g in groups}) != 1:
        raise UsageError("the domain scenario needs class groups of equal size (they share one head)")
    tr_x, tr_y, te_x, te_y = _as_tensors(*_unpack(data))
    missing = sorted(set(flat) - set(tr_y.unique().tolist()))
    if missing:
        raise UsageError(f"split class groups name classes {missing} that the data set does not have")
    unit = {c: i for i, c in enumerate(sorted(flat))}  # class -> output unit
    n_outputs = len(groups[0]) if scenario == "domain" else len(flat)
    tr_idx, val_idx = _holdout(len(tr_y), val_fraction, seed)
    parts = {"train": (tr_x[tr_idx], tr_y[tr_idx]), "test": (te_x, te_y)}
    if val_idx is not None:
        parts["val"] = (tr_x[val_idx], tr_y[val_idx])
    tasks = []
    for t, g in enumerate(groups):
        if scenario == "domain":
            lookup = {c: i for i, c in enumerate(g)}
        else:
            lookup = {c: unit[c] for c in g}
        table = torch.full((int(max(tr_y.max(), te_y.max())) + 1,), -1, dtype=torch.long)
        for c, u in lookup.items():
            table[c] = u
        splits: dict[str, DataSplit | None] = {"val": None}
        for k, (x, y) in parts.items():
            keep = torch.isin(y, torch.tensor(g))
            splits[k] = DataSplit(x[keep], table[y[keep]])
        classes = tuple(sorted(lookup.values()))
        mask = None
        if scenario == "task":
            mask = torch.zeros(n_outputs, dtype=torch.bool)
            mask[list(classes)] = True
        pre = Preprocess(pad=pad, mean=mean, std=std)
        tname = "classes " + "-".join(str(c) for c in g)
        tasks.append(Task(t, tname, splits["train"], splits["test"], splits["val"], classes, pre, mask))
    *channels, h, w = tr_x.shape[1:]  # grey (N, H, W) or colour (N, C, H, W)
    c = channels[0] if channels else 1
    return TaskStream(name, scenario, tuple(tasks), n_outputs, (c, h + 2 * pad, w + 2 * pad))


def _unpack(data):
    if isinstance(data, (tuple, list)):
        return tuple(data)
    return (data.train_images, data.train_labels, data.test_images, data.test_labels)


def subsample_train(stream: TaskStream, n: int, seed: int = 0) -> TaskStream:
    """``stream`` with each task's training split cut to a seeded random subset of ``n`` samples (kept
    in their original order): the low-data protocol of GEM (Lopez-Paz & Ranzato 2017) and A-GEM
    (Chaudhry et al. 2019), 1000 samples per task. Validation and test splits are untouched. A task
    with fewer than ``n`` training samples is a UsageError naming it."""
    tasks = []
    for t in stream.tasks:
        have = len(t.train)
        if n > have:
            raise UsageError(f"train_samples={n} is more than task {t.name!r}'s {have} training samples",
                             params=("train_samples",))
        keep = torch.randperm(have, generator=derived_generator(seed, f"train-samples:{t.index}"))[:n].sort().values
        tasks.append(dataclasses.replace(t, train=DataSplit(t.train.images[keep], t.train.targets[keep])))
    return dataclasses.replace(stream, tasks=tuple(tasks), info={**stream.info, "train_samples": n})
