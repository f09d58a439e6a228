"""The shape every strategy shares: a training context, a record of each step, and the hooks in the
order the driver (:class:`lifelong.train.Learner`) calls them.

For each task i of a stream::

    before_task(ctx)                  not called again when a task resumes (resume_task, in its place:
                                      set up again what is not state, e.g. forward hooks)
    training_tasks(ctx)               which tasks' data to train on (joint: all seen so far; replay
                                      may add its memory as one more task; GDumb trains on it alone)
    per step, with the batch drawn:
        step = Step(batch, ...)                    one record per step, handed to every step hook
        step.batch = prepare_batch(ctx, step)      may add rows (replay: memory samples, batch.source > 0)
        step.logits = forward(ctx, step)           scores (B, C) of step.inputs (the batch as the model sees it)
        step.losses = losses(ctx, step)            named terms ("task", "replay", "distill", ...); their sum
        loss.backward()                            is the loss
        after_backward(ctx, step)                  p.grad holds the gradient of the loss alone
        add_penalty_grad(ctx)                      p.grad += d penalty / dθ
        before_step(ctx, step)                     the last look before the optimizer moves θ
        optimizer.step()
        after_step(ctx, step)
    after_task(ctx)                   consolidate (EWC: Fisher at θ*, merged into the penalty)
and evaluation asks ``predict(ctx, x, task_ids)`` for the scores of each test batch.

Every hook receives the same :class:`Context` (model, optimizer, device, task, steps, generator,
heads, the run's TrainSettings); step hooks also receive the step's :class:`Step`. Data that one hook
leaves for a later one in the same step goes in ``step.aux`` (under ``"<strategy>.<what>"``), never on
the strategy: a strategy's attributes are its state between steps, all of it in ``state_dict()``, a flat
``dict[str, Tensor]`` saved without pickle, so that a run stopped after any step resumes to the same
numbers. A strategy overrides only the hooks it needs.

**Loss terms.** ``losses`` returns the strategy's own named terms. The ``task`` term is, unless a
strategy returns its own, the cross-entropy of every row of the batch over its live units; other names
add to it (``replay``, ``distill``, ``logits``, ``capacity``). The driver sums them in order and logs
each. A strategy lists the names it may return in ``loss_terms``: two parts of a composite that
return the same name conflict, and saying so is a one-line error (``er+lwf`` composes: ER's loss is the
task term over its current and memory rows, LwF adds ``distill``).

Its hyperparameters are a small frozen dataclass, ``Strategy.Settings`` (:mod:`lifelong.settings`),
which knows its strategy (``EWCSettings.strategy == "ewc"``). ``parameters()`` names state tensors the
optimizer trains beside the model's (HAT's embeddings, progressive laterals). Two or more strategies run
together through :class:`~lifelong.strategies.compose.Compose` (``ewc+l2``): a new method is a new
small strategy, not a new flag.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError
from ..models.heads import Heads
from ..scenarios import Batch, Task, TaskStream, batches
from .state import Group, Position
from ..settings import Settings, meta

#: The hooks, in the order the driver calls them for one task (the step hooks, from prepare_batch to
#: after_step, once per step); evaluation calls ``predict`` for every test batch. The hook-order test
#: checks this order against a recorded run and against the list in this module's docstring.
HOOKS = ("before_task", "training_tasks", "prepare_batch", "forward", "losses", "after_backward",
         "add_penalty_grad", "before_step", "after_step", "after_task", "predict")
STEP_HOOKS = HOOKS[2:9]


class Local:
    """A single process: no sharding, no reductions (the data-parallel :class:`~lifelong.train.distributed.Dist`
    has the same methods)."""

    rank, world, main = 0, 1, True

    def shard(self, batch: Batch) -> Batch:
        return batch

    def shard_batches(self, data: Iterable) -> Iterable:
        return data

    def average_gradients(self, params: list[Tensor], n_local: int) -> None:
        pass

    def mean(self, values: Tensor) -> Tensor:
        return values

    def sync_generator(self, generator: torch.Generator) -> None:
        pass

    def shard_rows(self, t: Tensor, start: int) -> Tensor:
        return t

    def gather_rows(self, t: Tensor, rows: int) -> Tensor:
        return t

    def close(self) -> None:
        pass


LOCAL = Local()


@dataclass
class Context:
    """What every hook sees. The driver keeps it up to date; a strategy reads it and keeps its own
    state, never this object's.

    ``step`` counts optimizer steps over the whole stream, ``task_step`` within the current task (both
    the index of the step being taken inside step hooks); ``steps_per_epoch`` is the current task's.
    ``generator`` is the strategy's source of randomness (MC Fisher labels, replay sampling), a CPU
    generator saved in checkpoints. ``heads`` says which output units are live
    (:class:`lifelong.models.heads.Heads`). ``dist`` is the data-parallel group (one process: ``LOCAL``).
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
    steps_per_epoch: int = 1
    settings: Any = None  # the run's TrainSettings (optimizer, lr, batch size, epochs)
    dist: Any = LOCAL  # a data-parallel run's lifelong.train.distributed.Dist

    def live(self, task_ids: Tensor | int, upto: int | None = None) -> Tensor | None:
        """The live output units for samples of ``task_ids`` while training task ``upto`` (default:
        the current task); None when every unit is live."""
        return self.heads.live(task_ids, self.task_index if upto is None else upto)

    def task_batches(self, split: str = "train", batch_size: int = 1000) -> Iterable[tuple[Tensor, Tensor, Tensor | None]]:
        """The current task's ``split`` as ``(x, y, live units)`` batches in order, on the device: the
        data an importance estimator (Fisher, MAS) consumes at the end of a task (in a data-parallel
        run this process's share; the estimators all-reduce their sums)."""
        mask = self.live(self.task_index)
        data = ((b.x, b.y, mask) for b in batches([self.task], split, batch_size=batch_size))
        return self.dist.shard_batches(data)


@dataclass
class Step:
    """One optimizer step: made by the driver when the batch is drawn, handed to every step hook.

    ``batch`` is the batch as ``prepare_batch`` made it from the batch drawn, its rows grouped by
    ``batch.source`` (0 the current task's, k > 0 memory group k): what a memory stores. ``inputs`` is what the model sees: the batch augmented and, in
    a data-parallel run, this process's share of it; ``logits`` (B, C) are the scores of ``inputs`` over
    every output unit; ``losses`` the named terms whose sum was back-propagated. ``aux`` holds what a hook
    leaves for a later hook of the same step (``"hat.gates"``, ``"si.grad"``); it is gone after the step.
    """

    batch: Batch
    index: int
    task_step: int
    inputs: Batch | None = None
    logits: Tensor | None = None
    losses: dict[str, Tensor] = field(default_factory=dict)
    aux: dict[str, Any] = field(default_factory=dict)

    def rows(self, source: int = 0) -> slice:
        """The rows of ``inputs`` (and of ``logits``) that come from ``source``."""
        return self.inputs.rows(source)


def cross_entropy(ctx: Context, logits: Tensor, batch: Batch) -> Tensor:
    """Mean cross-entropy of ``batch``'s rows over their live units (their task's, or those seen so far)."""
    return F.cross_entropy(ctx.heads.logits(logits, batch.task, ctx.task_index), batch.y)


def step_losses(strategy: "Strategy", ctx: Context, step: Step) -> dict[str, Tensor]:
    """The named terms of a step, in the order they are summed: ``task`` first (the strategy's own, or
    the cross-entropy of every row over its live units), then the strategy's other terms."""
    own = strategy.losses(ctx, step)
    if "task" in own:
        return {"task": own["task"], **{k: v for k, v in own.items() if k != "task"}}
    return {"task": cross_entropy(ctx, step.logits, step.inputs), **own}


@dataclass(frozen=True)
class NoSettings(Settings):
    """A strategy with no hyperparameters of its own."""

    strategy = ""  # shared: each strategy without settings gets its own subclass


class Strategy:
    """Naive fine-tuning: train on each task in turn with no protection (the lower bound).

    Subclasses set ``name`` and ``Settings`` and override hooks. ``Strategy(settings)`` or
    ``Strategy(**fields)`` (positional fields in declaration order, e.g. ``EWC(100.0)``).
    """

    name = "naive"
    Settings: ClassVar[type] = NoSettings

    #: the loss terms ``losses`` may return (``"task"`` replaces the default task term)
    loss_terms: tuple[str, ...] = ()
    #: True when ``training_tasks`` depends on the strategy's state (a memory): the number of steps of
    #: a task is then known only once the state is loaded.
    data_from_state = False
    #: False for a strategy that changes how the whole model computes (PackNet's masked weights,
    #: progressive columns): another strategy's estimators would see the bare model, so it runs alone.
    composable = True
    #: True for a strategy that keeps a replay memory (a composite holds at most one)
    keeps_memory = False
    #: why the strategy needs to know the loop's optimizer (``cl.optimizer``), or "" (it trains tensors of
    #: its own, ``parameters()``, is reason enough and needs no entry)
    needs_optimizer = ""
    #: why the strategy cannot learn a stream without task boundaries (it does its work at a task's start or
    #: end, or needs task identities), or "" (see :meth:`task_free_problem`)
    needs_boundaries = ""
    #: True for a strategy that trains on its data in shuffled order even on a task-free stream (joint
    #: training, the i.i.d. upper bound); others learn a task-free stream in its order
    iid = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _bind_settings(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and not kwargs and isinstance(args[0], self.Settings):
            self.settings = args[0]
        else:
            try:
                self.settings = self.Settings(*args, **kwargs)
            except TypeError as e:
                known = ", ".join(f.name for f in dataclasses.fields(self.Settings)) or "none"
                raise UsageError(f"{self.name}: {_init_problem(e)} (settings: {known})") from None

    def bind(self, model: nn.Module) -> None:
        """Serve ``model`` alone: a strategy's state (a Fisher, a memory, masks) belongs to one model, so
        a second model is a UsageError (make a new strategy object for it)."""
        import weakref

        owner = self.__dict__.get("_served")
        if owner is not None and owner() is not None and owner() is not model:
            raise UsageError(f"this {self.name} object already serves another model (its state is that model's); make "
                             f"a new one for this Learner: {type(self).__name__}(...)", owner=self.name)
        self._served = weakref.ref(model)

    # ---- the stream ------------------------------------------------------------------------------
    def check_stream(self, ctx: Context) -> None:
        """Before anything trains or is written: raise UsageError if this strategy cannot work with
        ``ctx.model`` on ``ctx.stream`` (iCaRL needs a Linear output layer). Not a training hook."""

    def task_free_problem(self) -> str:
        """Why this strategy, with its settings, cannot learn a task-free stream ("" if it can): a run on one
        is refused with this reason before anything trains, instead of silently fine-tuning."""
        return self.needs_boundaries

    def memory_bound(self, ctx: Context) -> int:
        """The most bytes of samples the strategy can keep on ``ctx.stream`` (a replay memory), checked
        against the machine's memory before anything is written. 0 by default."""
        return 0

    def before_task(self, ctx: Context) -> None:
        """A task starts (``ctx.task``, ``ctx.task_index``); not called again when a task resumes."""

    def resume_task(self, ctx: Context) -> None:
        """A task restored from a checkpoint continues (in place of ``before_task``, which ran before the
        save): set up again what is not state, e.g. forward hooks on the model, so that the rest of the task
        (maybe only ``after_task``, when the save came after its last step) runs as it would have."""

    def training_tasks(self, ctx: Context) -> Sequence[Task]:
        """The tasks whose training data the current task trains on (default: the task alone). Called
        after ``before_task`` (and again on a resume, with the state restored)."""
        return [ctx.stream[ctx.task_index]]

    def parameters(self) -> list[Tensor]:
        """Tensors of the strategy's state that the optimizer trains beside the model's parameters (HAT's
        task embeddings, a progressive network's new column); they must require grad."""
        return []

    # ---- one step ----------------------------------------------------------------------------------
    def prepare_batch(self, ctx: Context, step: Step) -> Batch:
        """The batch the step trains on, from ``step.batch`` (replay appends memory rows, ``source`` > 0)."""
        return step.batch

    def forward(self, ctx: Context, step: Step) -> Tensor:
        """Scores (B, C) of ``step.inputs`` over every output unit; the heads mask them afterwards."""
        return ctx.model(step.inputs.x)

    def losses(self, ctx: Context, step: Step) -> dict[str, Tensor]:
        """The strategy's own loss terms by name (see the module docstring); none by default."""
        return {}

    def after_backward(self, ctx: Context, step: Step) -> None:
        """``p.grad`` holds the gradient of the loss alone, no penalty (SI, RWalk, A-GEM)."""

    def penalty(self, ctx: Context | nn.Module) -> Tensor | None:
        """The penalty's value (a 0-d tensor differentiable in the parameters), or None."""
        return None

    def add_penalty_grad(self, ctx: Context) -> None:
        """``p.grad += d penalty/dθ``. By default through autograd; a strategy that knows its penalty's
        gradient in closed form adds it directly (faster)."""
        pen = self.penalty(ctx)
        if pen is not None and pen.requires_grad:
            pen.backward()

    def before_step(self, ctx: Context, step: Step) -> None:
        """``p.grad`` holds d(loss + penalty)/dθ; the optimizer step comes next."""

    def after_step(self, ctx: Context, step: Step) -> None:
        """The optimizer has moved θ (reservoir sampling, path integrals)."""

    def release(self, ctx: Context) -> None:
        """A step ended with an exception before ``after_step``: give back any process-wide state the step
        took (HAT's flush-to-zero mode), so that nothing outside the run computes differently."""

    # ---- the end of a task, and prediction --------------------------------------------------------
    def after_task(self, ctx: Context) -> None:
        """The task's training is done (consolidate); ``ctx.task_batches()`` yields its data."""

    def predict(self, ctx: Context, x: Tensor, task_ids: Tensor) -> Tensor:
        """Scores (B, C) evaluation takes the argmax of (after masking units that are not live)."""
        return ctx.model(x)

    # ---- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """Everything the strategy keeps between steps, as a flat dict of tensors."""
        return {}

    def state_spec(self, ctx: Context, at: Position) -> list[Group]:
        """The tensors :meth:`state_dict` holds at position ``at`` of the stream (tasks finished, the next
        one under way or not), as groups of names, shapes and dtypes (:mod:`lifelong.strategies.state`):
        a checkpoint's state is checked against it before :meth:`load_state_dict`. None by default."""
        return []

    def load_state_dict(self, state: dict[str, Tensor], model: nn.Module) -> None:
        """Take ``state`` (from :meth:`state_dict`), checked against ``model``: a ValueError names the first
        tensor that does not fit (an unknown key, another parameter's shape, a value out of range)."""
        if state:
            raise ValueError(f"strategy {self.name!r} keeps no state, got keys {sorted(state)[:3]}")

    def report(self, ctx: Context) -> dict[str, Any]:
        """What the strategy keeps beside the model: ``state_bytes`` in all and ``keeps`` (bytes per
        part of the state: ``penalty``, ``memory``, ``teacher``, ...); a replay strategy adds ``memory``
        (samples, capacity, bytes, policy), an isolation strategy ``capacity``, kfac ``laplace``."""
        keeps: dict[str, int] = {}
        for k, t in self.state_dict().items():
            part = k.split(".", 1)[0]
            keeps[part] = keeps.get(part, 0) + tensor_bytes([t])
        return {"state_bytes": sum(keeps.values()), "keeps": keeps}

    def divergence_hint(self, ctx: Context) -> tuple[str, tuple[str, ...]]:
        """The likely cause of a divergence, in words naming Python parameters, and those parameters."""
        lr = getattr(ctx.settings, "lr", None)
        now = f" (now {lr:g})" if isinstance(lr, (int, float)) else ""
        strong = [(f.name, getattr(self.settings, f.name)) for f in dataclasses.fields(self.settings)
                  if meta(f)["strength"] and getattr(self.settings, f.name) > 1]
        if strong:  # a loss term weighted up scales its gradient (and the step) as much as the learning rate
            names = " or ".join(f"`{n}` (now {v:g})" for n, v in strong)
            return (f"the step is probably too large for this model: lower `lr`{now}, or {names}, which scales "
                    f"{'its' if len(strong) == 1 else 'their'} loss term's gradient", ("lr", *(n for n, _ in strong)))
        return f"the learning rate is probably too large for this model: lower `lr`{now}", ("lr",)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"


def _init_problem(e: TypeError) -> str:
    """A dataclass constructor's TypeError in the strategy's words."""
    text = str(e).split("__init__() ", 1)[-1]
    if "unexpected keyword argument" in text:
        return "no setting " + text.split("argument ", 1)[1]
    if "positional argument" in text:
        return "too many settings given by position (" + text + ")"
    return text


def _bind_settings(cls: type) -> None:
    """Give a concrete strategy (one with its own ``name``) a settings class that knows it: the class it
    declares, marked with ``strategy = name``, or a subclass of it when another strategy owns that class
    already (MAS and L2 both take a λ alone)."""
    if "name" not in cls.__dict__:
        return
    S = cls.__dict__.get("Settings", cls.Settings)
    owner = S.__dict__.get("strategy")  # "" marks a class several strategies share as it is
    if owner is None:
        S.strategy = cls.name
    elif owner != cls.name:
        S = dataclass(frozen=True)(type(f"{cls.__name__}Settings", (S,), {
            "strategy": cls.name, "__module__": cls.__module__, "__qualname__": f"{cls.__qualname__}.Settings",
            "__doc__": S.__doc__}))
    cls.Settings = S


def tensor_bytes(tensors: Iterable[Tensor]) -> int:
    """The bytes ``tensors`` hold."""
    return sum(t.nelement() * t.element_size() for t in tensors)


def split_state(state: dict[str, Tensor], *prefixes: str) -> list[dict[str, Tensor]]:
    """``state`` split by key prefix (``"memory."``, ``"teacher."``), prefixes removed; another key is a
    ValueError."""
    out: list[dict[str, Tensor]] = [{} for _ in prefixes]
    for k, v in state.items():
        for i, p in enumerate(prefixes):
            if k.startswith(p):
                out[i][k[len(p):]] = v
                break
        else:
            raise ValueError(f"unknown state key {k!r}")
    return out
