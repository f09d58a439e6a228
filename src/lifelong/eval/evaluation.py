"""Evaluation: accuracy on each task of a stream, asking the strategy how to predict.

The strategy's ``predict`` hook gives the scores of a batch (plain ``model(x)`` by default; isolation
masks or iCaRL's nearest-mean classifier otherwise); the heads mask the units that are not live (a
task's own units in the task-incremental scenario, the classes seen so far with ``class_units='seen'``),
and the argmax is compared with the targets. Correct counts are summed on the device and read once.

    accuracies = evaluate(model, stream)                      # after training, every task's test accuracy
    accuracies = evaluate(model, stream, strategy=icarl)      # the strategy's predictions
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import TrainingDiverged
from ..models.heads import Heads
from ..scenarios import Task, TaskStream, batches
from ..strategies import Context, Strategy


@torch.no_grad()
def evaluate(
    model: nn.Module,
    stream: TaskStream,
    *,
    strategy: Strategy | None = None,
    tasks: Sequence[Task] | None = None,
    split: str = "test",
    upto: int | None = None,
    batch_size: int = 1000,
    context: Context | None = None,
) -> np.ndarray:
    """Accuracy (fraction correct) on each of ``tasks``' ``split`` (default: every task of ``stream``),
    (T,). ``upto``: the last task trained (default: the stream's last; −1 before any training), which
    decides the live units with ``class_units='seen'``. ``strategy``: whose ``predict`` gives the scores
    (default: the model's outputs); ``context``: the driver's, when a strategy's prediction needs its
    state of training (the Learner passes it). The model is put in eval mode and its mode restored."""
    tasks = list(stream.tasks if tasks is None else tasks)
    upto = len(stream) - 1 if upto is None else upto
    if context is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        context = Context(model, Heads.of(stream).to(device), device, stream=stream, task_index=upto)
    heads, device = context.heads, context.device
    was_training = model.training
    model.eval()
    correct, broken = [], torch.zeros((), dtype=torch.int64, device=device)
    try:
        for task in tasks:
            hits = torch.zeros((), dtype=torch.int64, device=device)
            for b in batches([task], split, batch_size=batch_size):
                scores = model(b.x) if strategy is None else strategy.predict(context, b.x, b.task)
                hits += (heads.logits(scores, task.index, upto).argmax(1) == b.y).sum()
                broken += (~torch.isfinite(scores)).any(1).sum()  # an argmax over NaN/inf scores is no prediction
            correct.append(hits)
    finally:
        model.train(was_training)
    counts = torch.stack([*correct, broken]).cpu().tolist() if correct else [0]  # one read of the device
    if counts[-1]:
        where = f"after task {upto + 1}" if upto >= 0 else "before training"
        raise TrainingDiverged(f"the model's scores are not finite on {counts[-1]} {split} samples {where}: its "
                               "parameters or inputs overflow; lower `lr` (or the strategy's strength)", params=("lr",))
    return np.array([c / len(task.split(split)) for c, task in zip(counts, tasks)], dtype=float)
