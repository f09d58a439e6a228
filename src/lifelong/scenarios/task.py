"""Task and TaskStream: what a continual learner sees, one task after another.

A :class:`Task` keeps its images as uint8 tensors (shared with the source data wherever possible, so a
10-task permuted stream costs one copy of MNIST, not ten) and turns them into float inputs batch by
batch: scale to [0, 1], zero-pad, normalize, then apply the task's pixel permutation.

Scenarios (van de Ven & Tolias 2019, "Three scenarios for continual learning"; Hsu et al. 2018):

- ``task``   task-incremental: the task identity is given at train and test time. Each task has its own
  output units; the others are masked out of the softmax (equivalent to a separate head per task).
- ``domain`` domain-incremental: one shared head, the task identity is never given.
- ``class``  class-incremental: one head over all classes of all tasks, no task identity at test time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from torch import Tensor

SCENARIOS = ("task", "domain", "class")


@dataclass(frozen=True)
class Preprocess:
    """uint8 images (B, H, W) -> float inputs (B, 1, H + 2 pad, W + 2 pad).

    ``x = (pad(u / 255) - mean) / std``, then pixels are reordered by ``perm`` (a permutation of the
    flattened padded image) when given. Padding happens before normalization, as with torchvision's
    ``Pad`` followed by ``Normalize``.
    """

    pad: int = 0
    mean: float = 0.0
    std: float = 1.0
    perm: Tensor | None = None  # (H' * W',) int64

    def __call__(self, images: Tensor) -> Tensor:
        x = images.to(torch.float32).div_(255.0)  # (B, H, W)
        if self.pad:
            x = torch.nn.functional.pad(x, (self.pad,) * 4)
        if self.mean != 0.0 or self.std != 1.0:
            x = x.sub_(self.mean).div_(self.std)
        if self.perm is not None:
            b, h, w = x.shape
            x = x.reshape(b, h * w)[:, self.perm].reshape(b, h, w)
        return x.unsqueeze(1)  # (B, 1, H', W')


@dataclass(frozen=True)
class Split:
    """One split (train, val or test) of one task: uint8 images and int64 targets."""

    images: Tensor  # (N, H, W) uint8
    targets: Tensor  # (N,) int64, already mapped to output units of the scenario

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@dataclass(frozen=True)
class Task:
    """One task of a stream.

    ``classes`` are the output units the task's targets use; ``mask`` (bool, (n_outputs,)) marks the
    units its softmax runs over in the task-incremental scenario, and is None otherwise.
    """

    index: int
    name: str
    train: Split
    test: Split
    val: Split | None
    classes: tuple[int, ...]
    preprocess: Preprocess
    mask: Tensor | None = None

    def split(self, name: str) -> Split:
        s = {"train": self.train, "test": self.test, "val": self.val}[name]
        if s is None:
            raise ValueError(f"task {self.name} has no {name} split (set val_fraction > 0)")
        return s


@dataclass(frozen=True)
class TaskStream:
    """An ordered list of tasks plus what a model needs to know to learn them."""

    name: str
    scenario: str
    tasks: tuple[Task, ...]
    n_outputs: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    info: dict = field(default_factory=dict)
    seen_classes_only: bool = False  # class scenario: softmax over the classes of tasks seen so far

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __getitem__(self, i: int) -> Task:
        return self.tasks[i]

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def active_mask(self, i: int) -> Tensor | None:
        """Output units live while task ``i`` is trained or after it is evaluated, in the class scenario
        with ``seen_classes_only`` (the classes of tasks 0..i; Hsu et al. 2018's ``valid_out_dim``,
        van de Ven's "active classes"); None otherwise (all units, or each task's own mask)."""
        if not self.seen_classes_only or i < 0:
            return None
        mask = torch.zeros(self.n_outputs, dtype=torch.bool)
        for t in self.tasks[: i + 1]:
            mask[list(t.classes)] = True
        return mask

    def mask_matrix(self) -> Tensor | None:
        """(T, n_outputs) bool: row t is task t's active output units; None if nothing is masked."""
        if all(t.mask is None for t in self.tasks):
            return None
        full = torch.ones(self.n_outputs, dtype=torch.bool)
        return torch.stack([full if t.mask is None else t.mask for t in self.tasks])


Batch = tuple[Tensor, Tensor, Tensor]  # x (B, C, H, W) float, y (B,) int64, task index (B,) int64


def batches(
    tasks: Sequence[Task],
    split: str = "train",
    *,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    skip: int = 0,
) -> Iterator[Batch]:
    """Yield ``(x, y, t)`` mini-batches over the union of ``tasks``' ``split``.

    With ``shuffle`` the order is a permutation drawn from ``generator`` (required, so that the data
    order is reproducible and independent of global random state); a batch may mix tasks, which is
    what joint training and replay need. The last batch may be smaller. ``skip`` drops the first
    ``skip`` batches of the order (resuming mid-epoch: same generator state, same order, later start).
    """
    sizes = [len(t.split(split)) for t in tasks]
    offsets = torch.tensor([0, *sizes]).cumsum(0)  # (T + 1,)
    total = int(offsets[-1])
    if shuffle:
        if generator is None:
            raise ValueError("shuffle=True needs an explicit torch.Generator")
        order = torch.randperm(total, generator=generator)
    else:
        order = torch.arange(total)
    for start in range(skip * batch_size, total, batch_size):
        idx = order[start : start + batch_size]  # (B,) positions in the concatenation
        if len(tasks) == 1:
            yield _gather(tasks[0], split, idx)
            continue
        owner = torch.searchsorted(offsets[1:], idx, right=True)  # (B,) task position of each sample
        parts = [
            _gather(tasks[k], split, idx[owner == k] - offsets[k])
            for k in owner.unique().tolist()
        ]
        yield tuple(torch.cat(p) for p in zip(*parts))  # type: ignore[misc]


def _gather(task: Task, split: str, idx: Tensor) -> Batch:
    s = task.split(split)
    x = task.preprocess(s.images[idx])
    return x, s.targets[idx], torch.full((len(idx),), task.index, dtype=torch.long)
