"""Heads: which output units are live, in one place, for the loop, evaluation, the Fisher and MAS.

A model here has one output layer over every unit of the stream (``n_outputs``). Scenarios (van de
Ven & Tolias 2019; Hsu et al. 2018) differ only in which of those units a softmax runs over:

- task-incremental: each task's own units (its mask): exactly a separate head per task;
- class-incremental with ``seen_only``: the classes of the tasks seen so far (Hsu et al.'s
  ``valid_out_dim``, van de Ven's "active classes"); with it off, every unit from the start;
- domain-incremental: every unit (one shared head).

:class:`Heads` answers that question for a batch: ``live(task_ids, upto)`` is the mask of live
units (bool, True = live) for samples of the given tasks when the tasks ``0..upto`` have been seen
(``upto`` is the task being trained, or the last task trained before an evaluation; ``-1`` before any
training), or None when every unit is live. Inactive units get logit −∞ (:func:`masked_logits`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import Tensor


def masked_logits(logits: Tensor, mask: Tensor | None) -> Tensor:
    """Logits with inactive classes set to −∞, so a softmax runs over the active classes only.

    ``mask`` is bool, True = active, shaped ``(C,)`` (one mask for the batch) or ``(B, C)``
    (per sample); ``None`` means no masking.

    >>> masked_logits(torch.zeros(1, 3), torch.tensor([True, False, True])).softmax(-1)
    tensor([[0.5000, 0.0000, 0.5000]])
    """
    if mask is None:
        return logits
    return logits.masked_fill(~mask, float("-inf"))  # (B, C)


@dataclass(frozen=True)
class Heads:
    """The live output units of a stream's model.

    ``task_masks`` (T, C) bool: row t = task t's units (task-incremental), or None. ``task_classes``:
    the units each task's targets use. ``seen_only``: class-incremental softmax over the classes of the
    tasks seen so far.
    """

    n_outputs: int
    task_classes: tuple[tuple[int, ...], ...]
    task_masks: Tensor | None = None
    seen_only: bool = False
    device: torch.device | None = None  # where the masks are made (see :meth:`to`)

    @classmethod
    def of(cls, stream) -> "Heads":
        """The heads of a :class:`~lifelong.scenarios.TaskStream`."""
        masks = None
        if any(t.mask is not None for t in stream.tasks):
            full = torch.ones(stream.n_outputs, dtype=torch.bool)
            masks = torch.stack([full if t.mask is None else t.mask.cpu() for t in stream.tasks])
        return cls(stream.n_outputs, tuple(tuple(t.classes) for t in stream.tasks), masks,
                   stream.class_units == "seen" and stream.scenario == "class")

    @classmethod
    def in_scenario(cls, stream, scenario: str) -> "Heads":
        """The heads of ``stream``'s model evaluated in ``scenario``: ``"task"`` masks each task's logits to
        the classes its targets use; ``"class"`` masks nothing (or, with ``class_units='seen'``, the
        classes not seen yet)."""
        if scenario == "task":
            masks = torch.zeros(len(stream.tasks), stream.n_outputs, dtype=torch.bool)
            for i, t in enumerate(stream.tasks):
                masks[i, list(t.classes)] = True
            return cls(stream.n_outputs, tuple(tuple(t.classes) for t in stream.tasks), masks, False)
        return cls(stream.n_outputs, tuple(tuple(t.classes) for t in stream.tasks), None,
                   stream.class_units == "seen")

    def to(self, device: torch.device | str) -> "Heads":
        masks = None if self.task_masks is None else self.task_masks.to(device)
        return replace(self, task_masks=masks, device=torch.device(device))

    @property
    def per_task(self) -> bool:
        """True in the task-incremental scenario: the task identity selects the units."""
        return self.task_masks is not None

    def seen(self, upto: int) -> Tensor | None:
        """(C,) bool: the classes of tasks 0..``upto`` when ``seen_only``, else None (every unit)."""
        if not self.seen_only or upto < 0:
            return None
        mask = torch.zeros(self.n_outputs, dtype=torch.bool, device=self.device)
        for classes in self.task_classes[: upto + 1]:
            mask[list(classes)] = True
        return mask

    def live(self, task_ids: Tensor | int, upto: int) -> Tensor | None:
        """Live units for samples of ``task_ids`` ((B,) int64, or one task index) after tasks 0..``upto``:
        (B, C) or (C,) bool, or None when every unit is live."""
        if self.task_masks is not None:
            return self.task_masks[task_ids]  # (B, C), or (C,) for one index
        return self.seen(upto)

    def logits(self, z: Tensor, task_ids: Tensor | int, upto: int) -> Tensor:
        """``z`` (B, C) with the units that are not live at −∞."""
        return masked_logits(z, self.live(task_ids, upto))

    def units_of(self, tasks: Sequence[int]) -> list[int]:
        """The output units the targets of ``tasks`` use."""
        return sorted({u for t in tasks for u in self.task_classes[t]})
