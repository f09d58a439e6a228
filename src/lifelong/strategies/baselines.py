"""The bounds every method sits between: naive fine-tuning (below) and joint training (above)."""

from __future__ import annotations

from typing import Sequence

from ..scenarios import Task
from .base import Context, Strategy


class Naive(Strategy):
    """Fine-tuning: train on each task in turn with no protection against forgetting."""

    name = "naive"


class Joint(Strategy):
    """Joint multi-task training, the upper bound: when task i arrives, train on the union of the
    training data of tasks 0..i (mixed in every mini-batch), continuing from the current model."""

    name = "joint"

    def training_tasks(self, ctx: Context) -> Sequence[Task]:
        return list(ctx.stream.tasks[: ctx.task_index + 1])
