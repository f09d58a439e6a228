"""The shape every strategy shares: a training context, the hooks in the order the loop calls them,
and composition.

For each task i of a stream the loop (:func:`lifelong.train.train_task`) calls, in this order::

    before_task(ctx)                  not called again when a task resumes
    training_tasks(stream, i)         which tasks' data to train on (joint: all seen so far; replay
                                      may add its memory as one more task; GDumb trains on it alone)
    per step, with the batch:
        batch = prepare_batch(ctx, batch)          may change the batch (replay adds memory samples)
        logits = forward(ctx, batch.x, batch.task)
        loss = task_loss(ctx, batch, logits)       cross-entropy over the live units (heads)
             + extra_loss(ctx, batch, logits)      a strategy's extra term (distillation), or None
        loss.backward()
        after_backward(ctx, batch)                 p.grad holds the task-loss gradient alone
        add_penalty_grad(ctx)                      p.grad += d penalty / dθ
        before_step(ctx, batch)                    the last look before the optimizer moves θ
        optimizer.step()
        after_step(ctx, batch)
    after_task(ctx)                   consolidate (EWC: Fisher at θ*, merged into the penalty)
and evaluation asks ``predict(ctx, x, task_ids)`` for the scores of each test batch.

Every hook receives the same :class:`Context` (model, optimizer, device, task, steps, generator,
heads, the run's TrainSettings); a strategy overrides only the hooks it needs. ``parameters()`` names
state tensors the loop's optimizer trains beside the model's (HAT's embeddings, progressive laterals).
Its state is ``state_dict()``: a flat ``dict[str, Tensor]``, saved without pickle. Its hyperparameters are a small frozen dataclass,
``Strategy.Settings`` (see :mod:`lifelong.strategies.settings`). Two or more strategies run together
through :class:`Compose` (``ewc+l2``): a new method is a new small strategy, not a new flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError
from ..models.heads import Heads
from ..scenarios import Batch, Task, TaskStream, batches
from .settings import Settings


#: The hooks, in the order the loop calls them for one task (the eight step hooks, from prepare_batch to
#: after_step, once per step); evaluation calls ``predict`` for every test batch. tests/test_hooks.py
#: checks this order against a recorded run and against the list in this module's docstring.
HOOKS = ("before_task", "training_tasks", "prepare_batch", "forward", "task_loss", "extra_loss", "after_backward",
         "add_penalty_grad", "before_step", "after_step", "after_task", "predict")
STEP_HOOKS = HOOKS[2:10]


@dataclass
class Context:
    """What every hook sees. The loop keeps it up to date; a strategy reads it and may keep its own
    state, never this object.

    ``step`` counts optimizer steps over the whole stream, ``task_step`` within the current task
    (both the index of the step being taken inside step hooks). ``generator`` is the strategy's
    source of randomness (MC Fisher labels, replay sampling), a CPU generator saved in checkpoints.
    ``heads`` says which output units are live (:class:`lifelong.models.heads.Heads`).
    """

    model: nn.Module
    heads: Heads
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))
    stream: TaskStream | None = None
    optimizer: torch.optim.Optimizer | None = None
    task: Task | None = None
    task_index: int = -1
    step: int = 0
    task_step: int = 0
    settings: Any = None  # the run's TrainSettings (optimizer, lr, batch size, epochs), when a loop runs
    dist: Any = None  # a data-parallel run's lifelong.train.distributed.Dist (rank, world), else None

    def steps_per_epoch(self) -> int:
        """Mini-batches in one epoch of the current task's training data (HAT anneals per epoch)."""
        bs = getattr(self.settings, "batch_size", None) or 128
        return max(1, math.ceil(len(self.task.train) / bs))

    def live(self, task_ids: Tensor | int, upto: int | None = None) -> Tensor | None:
        """The live output units for samples of ``task_ids`` while training task ``upto`` (default:
        the current task); None when every unit is live."""
        return self.heads.live(task_ids, self.task_index if upto is None else upto)

    def task_batches(self, split: str = "train", batch_size: int = 1000) -> Iterable[tuple[Tensor, Tensor, Tensor | None]]:
        """The current task's ``split`` as ``(x, y, live units)`` batches in order, on the device: the
        data an importance estimator (Fisher, MAS) consumes at the end of a task."""
        mask = self.live(self.task_index)
        data = ((x, y, mask) for x, y, _ in batches([self.task], split, batch_size=batch_size))
        # in a data-parallel run: this rank's shard, and the estimators all-reduce their sums
        return data if self.dist is None else self.dist.shard_batches(data)


def _overrides(part: "Strategy", hook: str) -> bool:
    return getattr(type(part), hook) is not getattr(Strategy, hook)


@dataclass(frozen=True)
class NoSettings(Settings):
    """A strategy with no hyperparameters of its own."""


class Strategy:
    """Naive fine-tuning: train on each task in turn with no protection (the lower bound).

    Subclasses set ``name`` and ``Settings`` and override hooks. ``Strategy(settings)`` or
    ``Strategy(**fields)`` (positional fields in declaration order, e.g. ``EWC(100.0)``).
    """

    name = "naive"
    Settings: type = NoSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and not kwargs and isinstance(args[0], self.Settings):
            self.settings = args[0]
        else:
            try:
                self.settings = self.Settings(*args, **kwargs)
            except TypeError as e:
                raise UsageError(f"{self.name}: {e}") from None

    @classmethod
    def from_settings(cls, settings: Any) -> "Strategy":
        return cls(settings)

    # ---- the stream ------------------------------------------------------------------------------
    def check_stream(self, ctx: Context) -> None:
        """Before anything trains or is written: raise UsageError if this strategy cannot work with
        ``ctx.model`` on ``ctx.stream`` (iCaRL needs a Linear output layer). Not a training hook."""

    def before_task(self, ctx: Context) -> None:
        """A task starts (``ctx.task``, ``ctx.task_index``); not called again when a task resumes."""

    def training_tasks(self, stream: TaskStream, i: int) -> Sequence[Task]:
        """The tasks whose training data task ``i`` trains on (default: task i alone). Called after
        ``before_task`` (and again on a resume, with the state restored)."""
        return [stream[i]]

    #: True when ``training_tasks`` depends on the strategy's state (a memory): the number of steps of
    #: a task is then known only once the state is loaded.
    data_from_state = False

    #: False for a strategy that changes how the whole model computes (PackNet's masked weights,
    #: progressive columns): another strategy's estimators would see the bare model, so it runs alone.
    composable = True

    def parameters(self) -> list[Tensor]:
        """Tensors of the strategy's state that the optimizer trains beside the model's parameters (HAT's
        task embeddings, a progressive network's new column); they must require grad."""
        return []

    # ---- one step ----------------------------------------------------------------------------------
    def prepare_batch(self, ctx: Context, batch: Batch) -> Batch:
        """The batch the step trains on (replay appends memory samples)."""
        return batch

    def forward(self, ctx: Context, x: Tensor, task_ids: Tensor) -> Tensor:
        """Scores (B, C) over every output unit; the heads mask them afterwards."""
        return ctx.model(x)

    def task_loss(self, ctx: Context, batch: Batch, logits: Tensor) -> Tensor:
        """Mean cross-entropy over the live units of each sample (its task's, or those seen so far)."""
        return F.cross_entropy(ctx.heads.logits(logits, batch.task, ctx.task_index), batch.y)

    def extra_loss(self, ctx: Context, batch: Batch, logits: Tensor) -> Tensor | None:
        """A term added to the task loss before backward (distillation), or None."""
        return None

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        """``p.grad`` holds the gradient of the loss above alone, no penalty (SI, RWalk, A-GEM)."""

    def penalty(self, ctx: Context | nn.Module) -> Tensor | None:
        """The penalty's value (a 0-d tensor differentiable in the parameters), or None."""
        return None

    def add_penalty_grad(self, ctx: Context) -> None:
        """``p.grad += d penalty/dθ``. By default through autograd; a strategy that knows its penalty's
        gradient in closed form adds it directly (faster)."""
        pen = self.penalty(ctx)
        if pen is not None and pen.requires_grad:
            pen.backward()

    def before_step(self, ctx: Context, batch: Batch) -> None:
        """``p.grad`` holds d(loss + penalty)/dθ; the optimizer step comes next."""

    def after_step(self, ctx: Context, batch: Batch) -> None:
        """The optimizer has moved θ (reservoir sampling, path integrals)."""

    # ---- the end of a task, and prediction --------------------------------------------------------
    def after_task(self, ctx: Context) -> None:
        """The task's training is done (consolidate); ``ctx.task_batches()`` yields its data."""

    def predict(self, ctx: Context, x: Tensor, task_ids: Tensor) -> Tensor:
        """Scores (B, C) evaluation takes the argmax of (after masking units that are not live)."""
        return self.forward(ctx, x, task_ids)

    # ---- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            raise ValueError(f"strategy {self.name!r} keeps no state, got keys {sorted(state)[:3]}")

    def check_state(self, model: nn.Module) -> None:
        """Raise ValueError if the state (just loaded) does not fit ``model``: a strategy whose state
        names parameters checks their names, shapes and dtypes."""

    def state_bytes(self) -> int:
        """The bytes the strategy keeps between tasks beside the model: its state's tensors (EWC's
        importance and anchor, a replay memory's samples, LwF's previous model)."""
        return sum(t.nelement() * t.element_size() for t in self.state_dict().values())

    def memory_report(self) -> dict | None:
        """A replay memory's size (samples, bytes, policy), or None without one."""
        return None

    def capacity_report(self, ctx: Context) -> dict | None:
        """Parameter isolation: the share of the network each task uses and the bytes of masks and
        extra columns (see :mod:`lifelong.strategies.isolation`), or None."""
        return None

    def divergence_hint(self, optimizer: str, lr: float) -> str:
        return f"the learning rate is probably too large for this model: lower --lr (now {lr:g})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"


@dataclass(frozen=True)
class ComposeSettings:
    """The settings of each part of a composite, in order."""

    parts: tuple[Any, ...]


class Compose(Strategy):
    """Several strategies as one (optax's ``chain``): ``Compose(EWC(100.0), L2(0.1))``, on the command
    line ``--strategy ewc+l2``.

    Every hook calls the parts in order: batches pass through each part's ``prepare_batch``; extra
    losses and penalties are summed and each part adds its penalty's gradient; ``forward``,
    ``task_loss``, ``predict`` and ``training_tasks`` come from the one part that overrides each (two
    parts overriding the same one is an error). State is saved under each part's name as a prefix
    (``ewc.penalty.importance.0.weight``).
    """

    Settings = ComposeSettings
    _single = ("training_tasks", "forward", "task_loss", "predict")

    def __init__(self, *parts: Strategy) -> None:
        if len(parts) < 2:
            raise UsageError("a composite needs at least two strategies, e.g. ewc+l2")
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise UsageError(f"a composite takes each strategy once, got {'+'.join(names)}")
        for p in parts:
            if isinstance(p, Compose):
                raise UsageError("compose strategies directly: ewc+l2+si, not a composite of composites")
            if not p.composable:
                raise UsageError(f"{p.name} changes how the whole model computes (masks or columns), so another "
                                 f"strategy's estimates would see the wrong network: run {p.name} alone")
        self.parts = list(parts)
        self.name = "+".join(names)
        self.settings = ComposeSettings(tuple(p.settings for p in parts))
        self._owner: dict[str, Strategy | None] = {}
        for hook in self._single:
            owners = [p for p in parts if _overrides(p, hook)]
            if len(owners) > 1:
                raise UsageError(f"{self.name}: {owners[0].name} and {owners[1].name} both define {hook}; "
                                 "they cannot be combined")
            self._owner[hook] = owners[0] if owners else None

    def check_stream(self, ctx):
        for p in self.parts:
            p.check_stream(ctx)

    def before_task(self, ctx):
        for p in self.parts:
            p.before_task(ctx)

    def training_tasks(self, stream, i):
        return self._owner["training_tasks"].training_tasks(stream, i) if self._owner["training_tasks"] else [stream[i]]

    @property
    def data_from_state(self):
        return any(p.data_from_state for p in self.parts)

    def prepare_batch(self, ctx, batch):
        for p in self.parts:
            batch = p.prepare_batch(ctx, batch)
        return batch

    def forward(self, ctx, x, task_ids):
        owner = self._owner["forward"]
        return owner.forward(ctx, x, task_ids) if owner else ctx.model(x)

    def task_loss(self, ctx, batch, logits):
        owner = self._owner["task_loss"]
        return owner.task_loss(ctx, batch, logits) if owner else Strategy.task_loss(self, ctx, batch, logits)

    def extra_loss(self, ctx, batch, logits):
        return _sum(p.extra_loss(ctx, batch, logits) for p in self.parts)

    def after_backward(self, ctx, batch):
        for p in self.parts:
            p.after_backward(ctx, batch)

    def penalty(self, ctx):
        return _sum(p.penalty(ctx) for p in self.parts)

    def add_penalty_grad(self, ctx):
        for p in self.parts:
            p.add_penalty_grad(ctx)

    def before_step(self, ctx, batch):
        for p in self.parts:
            p.before_step(ctx, batch)

    def after_step(self, ctx, batch):
        for p in self.parts:
            p.after_step(ctx, batch)

    def after_task(self, ctx):
        for p in self.parts:
            p.after_task(ctx)

    def predict(self, ctx, x, task_ids):
        owner = self._owner["predict"] or self._owner["forward"]
        return owner.predict(ctx, x, task_ids) if owner else ctx.model(x)

    def state_dict(self):
        return {f"{p.name}.{k}": v for p in self.parts for k, v in p.state_dict().items()}

    def load_state_dict(self, state):
        names = {p.name for p in self.parts}
        unknown = sorted(k for k in state if k.split(".", 1)[0] not in names)
        if unknown:
            raise ValueError(f"strategy {self.name!r} does not know the state keys {unknown[:3]}")
        for p in self.parts:
            prefix = f"{p.name}."
            p.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def check_state(self, model):
        for p in self.parts:
            p.check_state(model)

    def memory_report(self):
        return next((r for r in (p.memory_report() for p in self.parts) if r is not None), None)

    def parameters(self):
        return [t for p in self.parts for t in p.parameters()]

    def capacity_report(self, ctx):
        return next((r for r in (p.capacity_report(ctx) for p in self.parts) if r is not None), None)

    def divergence_hint(self, optimizer, lr):
        default = Strategy.divergence_hint(self, optimizer, lr)
        hints = [h for h in (p.divergence_hint(optimizer, lr) for p in self.parts) if h != default]
        return "; or ".join(hints) if hints else default

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.parts))})"


def _sum(terms) -> Tensor | None:
    total = None
    for t in terms:
        if t is not None:
            total = t if total is None else total + t
    return total
