"""The training loop: one task, one screen, the strategy's hooks in the order they are called.

The order is documented in :mod:`lifelong.strategies.base` and read here, top to bottom, in
:func:`train_task`. Nothing in a step reads a value back from the device: the loss is checked for
NaN/inf every ``check_every`` steps (and before every checkpoint and at the task's end) from losses
kept on the device, and a diverged run stops within that many steps, naming the first bad step. At a
task's end the parameters are checked too: non-finite or exploded (|θ| > 1e8) is divergence as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..errors import TrainingDiverged, UsageError
from ..scenarios import Batch, batches
from ..strategies import Context, Strategy
from .augment import AUGMENTATIONS, crop_flip

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainSettings:
    """How each task is trained. ``iterations`` (optimizer steps per task) overrides ``epochs``;
    ``seed`` derives the data order and the strategy's generator."""

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    batch_size: int = 128
    epochs: int = 1
    iterations: int | None = None
    seed: int = 0
    check_every: int = 50  # steps between reads of the loss from the device (NaN / inf check)
    augment: str = "none"  # "crop-flip": random 4-pixel crops and horizontal flips (lifelong.train.augment)
    optimizer_state: str = "reset"  # "keep": one optimizer for the whole stream (Hsu et al.'s, van de Ven's code)


EXPLODED = 1e8  # |θ| beyond which parameters have exploded: products of such weights overflow float32 in a few layers


def make_optimizer(model: nn.Module, s: TrainSettings, extra: Sequence[Tensor] = ()) -> torch.optim.Optimizer:
    """A fresh optimizer (one per task unless ``optimizer_state="keep"``: Adam's moments then carry over
    from task to task, as in Hsu et al.'s and van de Ven et al.'s code) over the model's parameters and
    ``extra`` (a strategy's trainable state, :meth:`Strategy.parameters`), in one group."""
    if not any(p.requires_grad for p in model.parameters()) and not extra:
        raise UsageError("the model has no trainable parameters (requires_grad=True): there is nothing to train")
    params = [*model.parameters(), *extra]
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum)
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr)
    raise UsageError(f"unknown optimizer {s.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")


def train_task(
    ctx: Context,
    strategy: Strategy,
    s: TrainSettings,
    order: torch.Generator,
    *,
    bar=None,
    start_step: int = 0,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[int, Tensor], None] | None = None,
    augment_rng: torch.Generator | None = None,
    on_losses: Callable[[int, list[float]], None] | None = None,
) -> int:
    """Train ``ctx.task`` (on ``strategy.training_tasks`` data); returns the steps taken.

    ``ctx.optimizer`` is made fresh when None. Resuming: pass the restored optimizer in ``ctx``,
    ``start_step`` and the ``order`` generator in the state it had at the start of that step's epoch;
    the epoch's order is drawn again and its first batches skipped. Every ``checkpoint_every`` steps
    ``on_checkpoint(step, order_state)`` gets the generator state a resume needs. ``on_losses(first,
    losses)`` receives the losses of steps ``first, first + 1, ...`` of the task whenever the loop reads
    them from the device (every ``check_every`` steps): the event log's per-step losses.
    """
    model = ctx.model
    if start_step == 0:
        strategy.before_task(ctx)
    tasks = strategy.training_tasks(ctx.stream, ctx.task_index)
    per_epoch = math.ceil(sum(len(t.train) for t in tasks) / s.batch_size)
    steps = s.iterations or s.epochs * per_epoch
    if start_step >= steps:
        raise UsageError(f"cannot resume at step {start_step} of task {ctx.task.name!r}: it has {steps} steps")
    opt = ctx.optimizer = ctx.optimizer or make_optimizer(model, s, strategy.parameters())
    first_step = ctx.step - start_step  # the stream's step count when this task began
    model.train()
    watch = LossWatch(s.check_every, lambda step, loss: _diverged(ctx, strategy, s, step, loss), on_losses, ctx.dist)
    if bar is not None:
        bar.reset(total=steps)
        bar.update(start_step)
    step = start_step
    while step < steps:
        epoch, skip = divmod(step, per_epoch)
        order_state = order.get_state()  # this epoch's order is drawn from here
        for batch in batches(tasks, "train", batch_size=s.batch_size, shuffle=True, generator=order, skip=skip):
            ctx.task_step, ctx.step = step, first_step + step
            batch = strategy.prepare_batch(ctx, batch)  # replay: memory samples join the batch
            seen = augmented(ctx, s, batch, augment_rng)  # what the model sees (the batch itself by default)
            part = seen if ctx.dist is None else ctx.dist.shard(seen)  # data parallel: this rank's samples
            logits = strategy.forward(ctx, part.x, part.task)  # (B, C)
            loss = strategy.task_loss(ctx, part, logits)  # cross-entropy over the live units
            extra = strategy.extra_loss(ctx, part, logits)  # distillation
            if extra is not None:
                loss = loss + extra
            opt.zero_grad(set_to_none=True)
            if ctx.dist is not None and part.y.shape[0] == 0:
                loss = logits.sum() * 0.0  # an empty shard of a short last batch: weight 0 in the average
            loss.backward()
            if ctx.dist is not None:  # the global batch's gradient on every rank (sample-weighted mean)
                ctx.dist.average_gradients([*model.parameters(), *strategy.parameters()], part.y.shape[0])
            strategy.after_backward(ctx, seen)  # p.grad: the task-loss gradient alone
            strategy.add_penalty_grad(ctx)  # p.grad += d penalty / dθ
            strategy.before_step(ctx, seen)
            opt.step()
            strategy.after_step(ctx, batch)  # the batch as drawn: replay stores samples unaugmented
            step += 1
            watch.add(step - 1, loss)
            if bar is not None:
                _show(bar, ctx, strategy, step, steps, epoch, loss)
            if on_checkpoint is not None and checkpoint_every and step % checkpoint_every == 0:
                watch.check()  # never save a diverged state
                # at an epoch's end the next epoch draws from the current state
                on_checkpoint(step, order.get_state() if step % per_epoch == 0 else order_state)
            if step >= steps:
                break
    watch.check()
    _check_parameters(ctx, strategy, s, step)
    ctx.task_step, ctx.step = step, first_step + step
    return step


def augmented(ctx: Context, s: TrainSettings, batch: Batch, rng: torch.Generator | None) -> Batch:
    """The batch with ``s.augment`` applied to its inputs (padding with a black pixel's normalized value)."""
    if s.augment == "none":
        return batch
    if s.augment != "crop-flip":
        raise UsageError(f"unknown augmentation {s.augment!r}: choose one of {', '.join(AUGMENTATIONS)}")
    if rng is None:
        raise UsageError("augmentation needs a generator (train_task's augment_rng)")
    pre = ctx.task.preprocess
    return batch._replace(x=crop_flip(batch.x, rng, fill=(0.0 - pre.mean) / pre.std))


def _check_parameters(ctx: Context, strategy: Strategy, s: TrainSettings, step: int) -> None:
    """Non-finite or exploding parameters after a task's last step are divergence too: the loss of that
    step was still finite, but the model is not (one read of the device per task)."""
    params = [p.detach() for p in ctx.model.parameters()]
    if not params:
        return
    top = torch.stack([p.abs().max() if p.numel() else p.new_zeros(()) for p in params]).max()
    value = float(top)  # nan if any parameter is nan
    if not value <= EXPLODED:
        raise TrainingDiverged(
            f"the parameters {'are not finite' if value != value or value == float('inf') else 'exploded'} after step "
            f"{step} of task {ctx.task.name!r} (max |θ| = {value:.3g}); likely cause: "
            f"{strategy.divergence_hint(s.optimizer, s.lr)}"
        )


class LossWatch:
    """Keeps each step's loss on the device and looks at them every ``every`` steps (one host read):
    ``on_bad(step, loss)`` raises for the first non-finite one."""

    def __init__(self, every: int, on_bad: Callable[[int, float], None],
                 on_values: Callable[[int, list[float]], None] | None = None, dist=None):
        self.every, self.on_bad, self.on_values, self.dist = max(1, every), on_bad, on_values, dist
        self.losses: list[Tensor] = []
        self.first = 0

    def add(self, step: int, loss: Tensor) -> None:
        if not self.losses:
            self.first = step
        self.losses.append(loss.detach())
        if len(self.losses) >= self.every:
            self.check()

    def check(self) -> None:
        if not self.losses:
            return
        values, self.losses = torch.stack(self.losses), []
        if self.dist is not None:
            values = self.dist.mean(values)  # the ranks' mean loss: every rank stops on the same step
        if self.on_values is not None:
            self.on_values(self.first, values.tolist())  # the one read of the device; logged before a NaN stops the run
        bad = ~torch.isfinite(values)
        if bool(bad.any()):
            k = int(bad.nonzero()[0, 0])
            self.on_bad(self.first + k, float(values[k]))


def _diverged(ctx: Context, strategy: Strategy, s: TrainSettings, step: int, loss: float) -> None:
    raise TrainingDiverged(
        f"the loss became {loss} at step {step + 1} of task {ctx.task.name!r}; "
        f"likely cause: {strategy.divergence_hint(s.optimizer, s.lr)}"
    )


def _show(bar, ctx: Context, strategy: Strategy, step: int, steps: int, epoch: int, loss: Tensor) -> None:
    bar.update(1)
    if step % 25 == 0 or step == steps:  # reads the device: only with a progress bar
        with torch.no_grad():
            penalty = strategy.penalty(ctx)
        pen = 0.0 if penalty is None else penalty.item()
        bar.set_postfix_str(f"epoch {epoch + 1} loss {loss.item():.4f} penalty {pen:.4f}", refresh=False)
