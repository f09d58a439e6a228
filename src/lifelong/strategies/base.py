"""The strategy hooks the training loop calls, in this order, for each task i of a stream:

    training_tasks(stream, i)   which tasks' data to train on (joint: all seen so far)
    before_task(model, task)
    per step:  loss = CE + penalty(model);  backward;  before_step(model);  optimizer step;  after_step(model)
    after_task(model, task, data)   consolidate (EWC: Fisher at θ*, merged into the penalty)

A strategy's state is ``state_dict()``: a flat ``dict[str, Tensor]``, saved without pickle.
A new method is a new small subclass, not a new flag.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from ..scenarios import Task, TaskStream


class Strategy:
    """Naive fine-tuning: train on each task in turn with no protection (the lower bound)."""

    name = "naive"

    def training_tasks(self, stream: TaskStream, i: int) -> Sequence[Task]:
        return [stream[i]]

    def before_task(self, model: nn.Module, task: Task) -> None:
        pass

    def penalty(self, model: nn.Module) -> Tensor | None:
        return None

    def before_step(self, model: nn.Module) -> None:
        """After backward, before the optimizer step: ``p.grad`` holds d(CE + penalty)/dθ."""

    def after_step(self, model: nn.Module) -> None:
        """After the optimizer step."""

    def after_task(self, model: nn.Module, task: Task, data: Iterable) -> None:
        """``data`` yields ``(x, y, mask)`` batches of the task's training split."""

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            raise ValueError(f"strategy {self.name!r} keeps no state, got keys {sorted(state)[:3]}")

    def divergence_hint(self, optimizer: str, lr: float) -> str:
        return f"the learning rate is probably too large for this model: lower --lr (now {lr:g})"


class Naive(Strategy):
    name = "naive"


class Joint(Strategy):
    """Joint multi-task training, the upper bound: when task i arrives, train on the union of the
    training data of tasks 0..i (mixed in every mini-batch), continuing from the current model."""

    name = "joint"

    def training_tasks(self, stream: TaskStream, i: int) -> Sequence[Task]:
        return list(stream.tasks[: i + 1])
