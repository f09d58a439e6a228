"""The training loop: one task, one screen, a few named strategy hooks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TrainingDiverged, UsageError
from ..importance import masked_logits
from ..scenarios import Task, TaskStream, batches
from ..strategies import Strategy

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainSettings:
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    batch_size: int = 128
    epochs: int = 1
    iterations: int | None = None  # optimizer steps per task; overrides epochs when set


def make_optimizer(model: nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    """A fresh optimizer (one per task: Adam's moments do not leak across task boundaries)."""
    if s.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum)
    if s.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=s.lr)
    raise UsageError(f"unknown optimizer {s.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")


def train_task(
    model: nn.Module,
    stream: TaskStream,
    i: int,
    strategy: Strategy,
    s: TrainSettings,
    generator: torch.Generator,
    bar=None,
    *,
    opt: torch.optim.Optimizer | None = None,
    start_step: int = 0,
    on_step: Callable[[int, torch.optim.Optimizer, torch.Tensor], None] | None = None,
) -> int:
    """Train on task ``i`` of ``stream`` (on ``strategy.training_tasks`` data); returns the steps taken.

    Resuming: pass the restored ``opt``, ``start_step`` and a ``generator`` in the state it had at the
    start of that step's epoch; the epoch's order is drawn again and its first batches skipped.
    ``on_step(step, opt, order_state)`` runs after every step with the generator state a resume needs.
    """
    tasks = strategy.training_tasks(stream, i)
    masks = stream.mask_matrix()  # (T, n_outputs) bool, or None
    active = stream.active_mask(i)  # class scenario, seen classes only: (n_outputs,) bool, else None
    per_epoch = math.ceil(sum(len(t.train) for t in tasks) / s.batch_size)
    steps = s.iterations or s.epochs * per_epoch
    opt = opt or make_optimizer(model, s)
    if start_step == 0:
        strategy.before_task(model, stream[i])
    model.train()
    if bar is not None:
        bar.reset(total=steps)
        bar.update(start_step)
    step = start_step
    while step < steps:
        epoch, skip = divmod(step, per_epoch)
        order_state = generator.get_state()  # this epoch's order is drawn from here
        for x, y, t in batches(tasks, "train", batch_size=s.batch_size, shuffle=True, generator=generator, skip=skip):
            loss = F.cross_entropy(masked_logits(model(x), active if masks is None else masks[t]), y)
            if not torch.isfinite(loss):
                raise TrainingDiverged(_diverged(stream[i], step, loss, strategy, s))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            strategy.add_penalty_grad(model)  # p.grad += d penalty/dθ
            strategy.before_step(model)
            opt.step()
            strategy.after_step(model)
            step += 1
            if bar is not None:
                bar.update(1)
                if step % 25 == 0 or step == steps:
                    with torch.no_grad():
                        penalty = strategy.penalty(model)
                    pen = 0.0 if penalty is None else penalty.item()
                    bar.set_postfix_str(f"epoch {epoch + 1} loss {loss.item():.4f} penalty {pen:.4f}", refresh=False)
            if on_step is not None:  # at an epoch's end the next epoch draws from the current state
                on_step(step, opt, generator.get_state() if step % per_epoch == 0 else order_state)
            if step >= steps:
                break
    return step


def _diverged(task: Task, step: int, loss, strategy: Strategy, s: TrainSettings) -> str:
    return (
        f"the loss became {loss.item()} at step {step + 1} of task "
        f"{task.name!r}; likely cause: {strategy.divergence_hint(s.optimizer, s.lr)}"
    )


@torch.no_grad()
def evaluate(model: nn.Module, tasks: Sequence[Task], split: str = "test", batch_size: int = 1000,
             active: torch.Tensor | None = None) -> np.ndarray:
    """Accuracy on each task's ``split`` (fraction correct). (T,) Task-incremental: each task's mask;
    otherwise ``active`` (the units live at this point of the stream), or every unit if None."""
    was_training = model.training
    model.eval()
    acc = np.zeros(len(tasks))
    for j, task in enumerate(tasks):
        correct = 0
        for x, y, _ in batches([task], split, batch_size=batch_size):
            mask = task.mask if task.mask is not None else active
            correct += int((masked_logits(model(x), mask).argmax(1) == y).sum())
        acc[j] = correct / len(task.split(split))
    model.train(was_training)
    return acc
