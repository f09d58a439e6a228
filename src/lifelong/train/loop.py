"""The training loop: one task, one screen, on the driver (:class:`lifelong.train.Learner`).

:func:`fit_task` is what ``lifelong run`` executes for each task, and what your own loop looks like:
the Learner draws and prepares the batches, computes the strategy's loss terms and calls the step
hooks in their documented order (:mod:`lifelong.strategies.base`); the loop owns the optimizer, the
NaN check, the progress bar and the checkpoint callback. Nothing in a step reads a value back from the
device: the loss is checked for NaN/inf every ``check_every`` steps (and before every checkpoint and at
the task's end) from losses kept on the device, and a diverged run stops within that many steps,
naming the first bad step. At a task's end the parameters are checked too: non-finite or exploded
(|θ| > 1e8) is divergence as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..scenarios import Task
from ..settings import Settings, setting
from .augment import AUGMENTATIONS

if TYPE_CHECKING:
    from .learner import Learner

OPTIMIZERS = ("sgd", "adam")
F32_MAX = 3.4028234663852886e38
EXPLODED = 1e8  # |θ| beyond which parameters have exploded: products of such weights overflow float32 in a few layers


@dataclass(frozen=True)
class TrainSettings(Settings):
    """How each task is trained, with the defaults ``lifelong run`` uses. ``iterations`` (optimizer steps
    per task) replaces ``epochs``."""

    part = "train"

    optimizer: str = setting("adam", choices=OPTIMIZERS,
                             help="a fresh one per task unless optimizer_state is keep")
    lr: float = setting(1e-3, check=lambda v: 0 < v <= F32_MAX, must="be > 0 and at most 3.4e38 (a float32 number)",
                        help="learning rate")
    momentum: float = setting(0.0, check=lambda v: 0 <= v < 1, must="be in [0, 1)", help="SGD momentum")
    batch_size: int = setting(128, check=lambda v: 1 <= v <= 2**31 - 1, must=f"be in 1..{2**31 - 1}",
                              help="samples per step (before a strategy adds memory samples)")
    epochs: int = setting(1, check=lambda v: 1 <= v <= 10**6, must="be in 1..1000000", help="epochs per task")
    iterations: int | None = setting(None, check=lambda v: 1 <= v <= 10**12, must="be in 1..10**12",
                                     help="optimizer steps per task; replaces epochs")
    augment: str = setting("none", added=True, choices=AUGMENTATIONS,
                           help="augment training batches on the device: crop-flip = random crops of the image padded "
                                "by 4 pixels and horizontal flips (the CIFAR protocol of DER, iCaRL)")
    optimizer_state: str = setting("reset", added=True, choices=("reset", "keep"),
                                   help="reset: a fresh optimizer for each task; keep: one optimizer for the whole "
                                        "stream, its state (Adam's moments) carried from task to task, as Hsu et al.'s "
                                        "and van de Ven et al.'s code")
    eval_every: int | None = setting(None, added=True, check=lambda v: 1 <= v <= 10**12, must="be a count of samples >= 1",
                                     help="task-free streams: measure the accuracy curve on the fixed evaluation subset "
                                          "every this many training samples (default: 20 points over the stream)")
    check_every: int = setting(50, check=lambda v: 1 <= v <= 10**9, must="be >= 1",
                               help="steps between reads of the loss from the device (the NaN check, the event log)")

    def check(self) -> None:
        if self.optimizer != "sgd" and self.momentum != 0.0:
            self.fail("momentum", f"applies to optimizer='sgd', not {self.optimizer!r}", "optimizer")
        if self.iterations is not None and self.epochs != 1:
            self.fail("iterations", "and `epochs` both set the length of a task: give one of them", "epochs")


def steps_per_task(tasks: Sequence[Task], settings: TrainSettings, batch_size: int | None = None,
                   epochs: int | None = None) -> tuple[int, int]:
    """``(steps per epoch, steps of the task)`` when training on ``tasks``' training data: the one place
    this arithmetic is done (``iterations`` when set, else epochs × batches per epoch). No tasks: no
    steps (a strategy that trains nothing on this task, such as ``joint-end`` before the last one)."""
    if not tasks:
        return 1, 0
    per_epoch = max(1, math.ceil(sum(len(t.train) for t in tasks) / (batch_size or settings.batch_size)))
    return per_epoch, settings.iterations or (epochs or settings.epochs) * per_epoch


def make_optimizer(model: nn.Module, s: TrainSettings, extra: Sequence[Tensor] = ()) -> torch.optim.Optimizer:
    """A fresh optimizer (one per task unless ``optimizer_state="keep"``: Adam's moments then carry over
    from task to task, as in Hsu et al.'s and van de Ven et al.'s code) over the model's parameters and
    ``extra`` (a strategy's trainable state, :meth:`Strategy.parameters`), in one group."""
    if not any(p.requires_grad for p in model.parameters()) and not extra:
        raise UsageError("the model has no trainable parameters (requires_grad=True): there is nothing to train")
    params = [*model.parameters(), *extra]
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum)
    return torch.optim.Adam(params, lr=s.lr)


def fit_task(
    cl: "Learner",
    *,
    bar=None,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[], None] | None = None,
    on_losses: Callable[[int, list[float], list[dict[str, float]]], None] | None = None,
) -> int:
    """Train the current task of ``cl`` to its last step (or from where a resumed task stopped); returns
    the task's steps. ``cl.optimizer`` is made fresh when None. Every ``checkpoint_every`` steps
    ``on_checkpoint()`` is called (the Learner's ``state_dict()`` is what it saves); ``on_losses(first,
    totals, terms)`` receives the losses of steps ``first, first + 1, ...`` of the task, and each step's
    named terms, whenever the loop reads them from the device."""
    s = cl.settings
    opt = cl.optimizer = cl.optimizer or make_optimizer(cl.model, s, cl.strategy.parameters())
    watch = LossWatch(s.check_every, cl.diverged, on_losses, cl.dist)
    total = cl.steps()
    if bar is not None:
        bar.reset(total=total)
        bar.update(cl.ctx.task_step)
    for batch in cl.batches():                   # the strategy's data, memory rows added (prepare_batch)
        loss = cl.loss(batch)                    # forward, the named loss terms, summed
        terms = cl.pending.losses
        opt.zero_grad(set_to_none=True)
        loss.backward()
        cl.before_step(batch)                    # after_backward, add_penalty_grad, before_step
        opt.step()
        cl.after_step(batch)                     # after_step; the step counters move on
        step = cl.ctx.task_step
        watch.add(step - 1, loss, terms)
        if bar is not None:
            _show(bar, cl, step, total, loss)
        if on_checkpoint is not None and checkpoint_every and step % checkpoint_every == 0:
            watch.check()  # never save a diverged state
            on_checkpoint()
    watch.check()
    check_parameters(cl)
    return cl.ctx.task_step


def check_parameters(cl: "Learner") -> None:
    """Non-finite or exploding parameters after a task's last step are divergence too: the loss of that
    step was still finite, but the model is not (one read of the device per task)."""
    params = [p.detach() for p in cl.model.parameters()]
    if not params:
        return
    top = torch.stack([p.abs().max() if p.numel() else p.new_zeros(()) for p in params]).max()
    value = float(top)  # nan if any parameter is nan
    if not value <= EXPLODED:
        what = "are not finite" if value != value or value == float("inf") else "exploded"
        cl.diverged(cl.ctx.task_step - 1, None, f"the parameters {what} after step {cl.ctx.task_step} of task "
                    f"{cl.ctx.task.name!r} (max |θ| = {value:.3g})")


class LossWatch:
    """Keeps each step's loss and loss terms on the device and looks at them every ``every`` steps (one
    host read): ``on_bad(step, loss)`` raises for the first non-finite loss."""

    def __init__(self, every: int, on_bad: Callable[[int, float], None],
                 on_values: Callable[[int, list[float], list[dict[str, float]]], None] | None = None, dist=None):
        self.every, self.on_bad, self.on_values, self.dist = max(1, every), on_bad, on_values, dist
        self.losses: list[Tensor] = []
        self.terms: list[dict[str, Tensor]] = []
        self.first = 0

    def add(self, step: int, loss: Tensor, terms: dict[str, Tensor] | None = None) -> None:
        if not self.losses:
            self.first = step
        self.losses.append(loss.detach())
        self.terms.append({k: v.detach() for k, v in (terms or {}).items()})  # the same on every rank
        if len(self.losses) >= self.every:
            self.check()

    def check(self) -> None:
        if not self.losses:
            return
        n = len(self.losses)
        flat = [*self.losses, *(v for t in self.terms for v in t.values())]
        values = torch.stack([v.to(self.losses[0].dtype) for v in flat])
        names = [list(t) for t in self.terms]
        self.losses, self.terms = [], []
        if self.dist is not None:
            values = self.dist.mean(values)  # the ranks' means: every rank stops on the same step
        read = values.tolist()  # the one read of the device
        if self.on_values is not None:
            it = iter(read[n:])
            self.on_values(self.first, read[:n], [{k: next(it) for k in ks} for ks in names])
        bad = [k for k, v in enumerate(read[:n]) if not math.isfinite(v)]
        if bad:
            self.on_bad(self.first + bad[0], read[bad[0]])


def _show(bar, cl: "Learner", step: int, steps: int, loss: Tensor) -> None:
    bar.update(1)
    if step % 25 == 0 or step == steps:  # reads the device: only with a progress bar
        pen = cl.penalty()
        epoch = (step - 1) // cl.ctx.steps_per_epoch + 1
        bar.set_postfix_str(f"epoch {epoch} loss {loss.item():.4f} penalty {0.0 if pen is None else pen.item():.4f}",
                            refresh=False)
