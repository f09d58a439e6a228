"""Evaluation: accuracy on each task of a stream, asking the strategy how to predict.

The strategy's ``predict`` hook gives the scores of a batch (plain ``model(x)`` by default; isolation
masks or iCaRL's nearest-mean classifier otherwise); the heads mask the units that are not live (a
task's own units in the task-incremental scenario, the classes seen so far with ``seen_only``), and
the argmax is compared with the targets. Correct counts are summed on the device and read once per
task.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import TrainingDiverged
from ..scenarios import Task, batches
from ..strategies import Context, Strategy


@torch.no_grad()
def evaluate(
    ctx: Context,
    tasks: Sequence[Task],
    *,
    strategy: Strategy | None = None,
    split: str = "test",
    upto: int | None = None,
    batch_size: int = 1000,
) -> np.ndarray:
    """Accuracy (fraction correct) on each task's ``split``, (T,). ``upto``: the last task trained
    (default ``ctx.task_index``; −1 before any training), which decides the live units with
    ``seen_only`` heads. The model is put in eval mode and its mode restored."""
    upto = ctx.task_index if upto is None else upto
    model = ctx.model
    was_training = model.training
    model.eval()
    correct, broken = [], torch.zeros((), dtype=torch.int64, device=ctx.device)
    for task in tasks:
        hits = torch.zeros((), dtype=torch.int64, device=ctx.device)
        for x, y, t in batches([task], split, batch_size=batch_size):
            scores = model(x) if strategy is None else strategy.predict(ctx, x, t)
            hits += (ctx.heads.logits(scores, task.index, upto).argmax(1) == y).sum()
            broken += (~torch.isfinite(scores)).any(1).sum()  # an argmax over NaN/inf scores is no prediction
        correct.append(hits)
    model.train(was_training)
    counts = torch.stack([*correct, broken]).cpu().tolist() if correct else [0]  # one read of the device
    if counts[-1]:
        where = f"after task {upto + 1}" if upto >= 0 else "before training"
        raise TrainingDiverged(f"the model's scores are not finite on {counts[-1]} {split} samples {where}: its "
                               "parameters or inputs overflow; lower --lr (or the strategy's strength)")
    return np.array([c / len(task.split(split)) for c, task in zip(counts, tasks)], dtype=float)
