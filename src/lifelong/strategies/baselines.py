"""The bounds every method sits between: naive fine-tuning (below) and joint training (above)."""

from __future__ import annotations

from typing import Sequence

from ..scenarios import Task
from .base import Context, Strategy


class Naive(Strategy):
    """Fine-tuning: train on each task in turn with no protection against forgetting."""

    name = "naive"


class Joint(Strategy):
    """Cumulative joint training, the upper bound along the stream: when task i arrives, train on the
    union of the training data of tasks 0..i (mixed in every mini-batch), continuing from the current
    model. Every row of the accuracy matrix is trained: row i is joint training on tasks 1..i."""

    name = "joint"
    iid = True  # on a task-free stream: the whole stream shuffled, the i.i.d. upper bound

    def training_tasks(self, ctx: Context) -> Sequence[Task]:
        return list(ctx.stream.tasks[: ctx.task_index + 1])


class JointEnd(Strategy):
    """Joint training once, at the end, as papers' offline or multitask upper bound: nothing is trained
    until the last task has arrived; then the model, still at its initial weights, trains on the union of
    every task's training data (``epochs`` passes over the union, or ``iterations`` steps) and is
    evaluated. The accuracy matrix has one trained row, the last: rows 1..T−1 are the untrained model's
    (equal to row 0), so only the final average accuracy compares with a paper's upper bound."""

    name = "joint-end"
    iid = True

    def training_tasks(self, ctx: Context) -> Sequence[Task]:
        return list(ctx.stream.tasks) if ctx.task_index == len(ctx.stream) - 1 else []
