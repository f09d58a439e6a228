"""The one driver: :class:`Learner` applies a strategy to a model over a stream, in your loop or in
``lifelong run`` (whose loop, :func:`lifelong.train.fit_task`, is a client of it like yours).

It owns the context every hook sees, the order in which the hooks are called, the arithmetic of steps
per task, the step record of each optimizer step, the accuracy rows, and the state (one checkpoint
layout, for ``Learner.save`` and for ``lifelong run``'s checkpoints alike). So your loop, Lightning,
the Hugging Face Trainer and ``lifelong run`` agree by construction.

Your loop, for any strategy (EWC, SI, ER, DER++, LwF, iCaRL, PackNet, HAT, ...)::

    cl = Learner(model, ER(memory=500), stream, seed=0)  # stream: TaskStream.from_tensors(...) or benchmark(...)
    for task in cl.tasks():                              # before_task ... after_task, an accuracy row each
        opt = torch.optim.SGD(cl.parameters(), lr=0.1)   # the model's and the strategy's trainable tensors
        for batch in cl.batches(batch_size=128):         # the strategy's data, replay samples added
            loss = cl.loss(batch)                        # forward + the strategy's named loss terms
            opt.zero_grad(); loss.backward()
            cl.before_step(batch)                        # penalty gradient, gradient projections and masks
            opt.step()
            cl.after_step(batch)                         # reservoir sampling, path integrals
    cl.accuracy_matrix                                   # R[i][j], row 0 before training

How one step maps to the hooks (see :mod:`lifelong.strategies.base`)::

    cl.batch(x, y) / cl.batches()   a Step record; prepare_batch          (the step counters are set here)
    cl.loss(batch)                  forward, losses (named terms, summed)
    cl.before_step(batch)           after_backward, add_penalty_grad, before_step
    cl.after_step(batch)            after_step                            (then the counters move on)
    cl.end_task()                   after_task, then the accuracy row     (cl.tasks() calls it)
    cl.predict(x, task_ids)         predict, with the units that are not live at −∞

Your own batches work too (``cl.batch(x, y)`` from any DataLoader: they are the current task's);
``cl.batches()`` draws them as ``lifelong run`` does (the seeded order generator, the strategy's
``training_tasks``: joint training's union, GDumb's memory). Strategies that train at the end of a task
(PackNet retrains after pruning) use ``cl.optimizer`` (your optimizer: set it) for its type and settings.
"""

from __future__ import annotations

import contextlib
import dataclasses

import math
import time
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import TrainingDiverged, UsageError
from ..eval import evaluate, summarize, undefined_metrics
from ..eval.anytime import anytime_metrics, seen_accuracy
from ..models.heads import Heads
from ..scenarios import Batch, Task, TaskStream, batches, gather, join
from ..seeds import derived_generator
from ..strategies import Context, Step, Strategy
from ..strategies.base import LOCAL, step_losses
from ..strategies.state import Position, check_state
from .augment import crop_flip
from .checkpoint import (
    CheckpointError, check_progress, load_checkpoint, load_model_state, load_optimizer_state, optimizer_tensors,
    save_checkpoint, split_prefix, upgrade, with_prefix,
)
from .device import memory_bytes, resolve_device
from .loop import TrainSettings, make_optimizer, steps_per_task

TIMINGS = ("train_seconds", "after_task_seconds", "eval_seconds")


class Learner:
    """``strategy`` applied to ``model`` over ``stream``, step by step (see the module docstring).

    ``settings`` (:class:`TrainSettings`) give the batch size, epochs and optimizer settings the driver
    and the strategies read (HAT anneals per epoch, PackNet retrains); ``seed`` derives the data order,
    the strategy's randomness and augmentation (the model's initialization is yours). The model and the
    stream's data move to ``device``; ``dist`` is a data-parallel group
    (:mod:`lifelong.train.distributed`), each process holding a Learner of its own.
    """

    def __init__(self, model: nn.Module, strategy: Strategy, stream: TaskStream, *,
                 settings: TrainSettings | None = None, seed: int = 0, device: str | torch.device = "cpu", dist=None):
        if not isinstance(strategy, Strategy):
            raise UsageError(f"Learner takes a lifelong strategy (EWC(...), ER(...)), got {type(strategy).__name__}")
        if not isinstance(stream, TaskStream):
            raise UsageError("Learner takes a TaskStream: build one from your tensors with TaskStream.from_tensors(...)")
        settings = TrainSettings() if settings is None else settings
        if not isinstance(settings, TrainSettings):
            raise UsageError(f"settings must be a TrainSettings, got {type(settings).__name__}", params=("settings",))
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise UsageError(f"seed must be an integer in 0..2**63-1, got {seed!r}", params=("seed",))
        self.device = resolve_device(device)
        check_run(model, stream, strategy, settings, self.device)  # the model fits the stream, the strategy accepts both
        strategy.bind(model)  # one model per strategy object
        self.dist = dist if dist is not None else LOCAL
        self.settings, self.seed, self.strategy = settings, seed, strategy
        self.model = model.to(self.device)
        self.stream = stream.to(self.device)
        self.ctx = Context(self.model, Heads.of(stream).to(self.device), self.device, derived_generator(seed, "strategy"),
                           self.stream, settings=settings, dist=self.dist)
        self.order = derived_generator(seed, "order")  # the data order lifelong run draws
        self.augment_rng = derived_generator(seed, "augment") if settings.augment != "none" else None
        self.has_val = stream[0].val is not None
        self.rows: list[list[float]] = []  # R[0], R[1], ...: the test accuracies measured so far
        self.val_rows: list[list[float]] = []
        # the test rows of each further scenario the model is evaluated in (stream.eval_scenarios)
        self.eval_rows: dict[str, list[list[float]]] = {e: [] for e in stream.eval_scenarios}
        self._eval_heads = {e: Heads.in_scenario(stream, e).to(self.device) for e in stream.eval_scenarios}
        self.steps_per_task: list[int] = []
        self.timings: dict[str, list[float]] = {k: [] for k in TIMINGS}
        self.pending: Step | None = None  # the step under way
        self._micro: list[Step] = []  # earlier batches of the step under way (gradient accumulation)
        self._optimizer_checked: tuple | None = None  # (task, optimizer) whose parameters were checked
        self._in_task = False
        self._resume_step = 0  # a task restored mid-way resumes at this step (resume_task, not before_task)
        self._restored_at = 0  # the step the current task was restored at (0: it began here)
        self._training: list[Task] | None = None  # the current task's training_tasks
        # the epoch batches() draws: the order generator's state before its draw, its steps per epoch and the task's
        self._epoch: tuple[Tensor, int, int] | None = None
        # anytime evaluation of a task-free stream (lifelong.eval.anytime): samples drawn, the curve so far
        self.samples_seen = 0
        self.curve: list[dict[str, Any]] = []
        self.on_point = None  # called with each new point of the curve (lifelong run logs it)
        self.eval_every = anytime_period(self.stream, settings) if stream.task_free else 0
        self._next_eval = self.eval_every
        self._anytime_seconds = 0.0  # the time the current task's points took while it trained
        if stream.task_free:  # what every point measures, fixed: the subset, its groups and counts, each group's entry
            tl = self.stream.timeline
            groups = tl.test_groups[tl.eval_index]
            self._eval_index, self._eval_groups = tl.eval_index.to(self.device), groups.to(self.device)
            self._eval_counts = torch.bincount(groups, minlength=tl.n_groups).tolist()
            self._entries = tl.entries()
        self._task_clock = 0.0  # when the current task started (minus its time before a resume)
        self._partial_seconds = 0.0
        self._clock = time.perf_counter()

    # ---- tasks -------------------------------------------------------------------------------------
    def tasks(self) -> Iterator[Task]:
        """Each task not learned yet, in turn: ``start_task(i)`` before the loop body, ``end_task()``
        after it; the accuracy row before any training is measured first."""
        for i in range(self.next_task, len(self.stream)):
            yield self.start_task(i)
            self.end_task()

    @property
    def next_task(self) -> int:
        """The index of the first task not learned yet (rows holds R[0] and one row per task learned)."""
        return len(self.rows) - 1 if self.rows else 0

    def start_task(self, i: int) -> Task:
        """Task ``i`` begins (``before_task``): the next one in order. A task restored mid-way continues
        where it stopped (``resume_task`` instead of ``before_task``)."""
        if self._in_task:
            raise UsageError(f"task {self.ctx.task_index} has not ended: call end_task() before start_task({i})")
        nxt = self.next_task
        if i != nxt or i >= len(self.stream):
            what = f"the next is task {nxt}" if nxt < len(self.stream) else "every task has been learned"
            raise UsageError(f"start_task({i}): tasks are learned in order and once, {what} of {len(self.stream)}")
        self.begin()
        ctx, resuming = self.ctx, self._resume_step > 0
        ctx.task, ctx.task_index, ctx.task_step = self.stream[i], i, self._resume_step
        ctx.step = sum(self.steps_per_task) + ctx.task_step
        if not resuming and self.settings.optimizer_state == "reset":
            ctx.optimizer = None  # a fresh optimizer per task (your loop makes its own)
        self.model.train()
        if resuming:
            self.strategy.resume_task(ctx)
        else:
            self.strategy.before_task(ctx)
        self._restored_at, self._resume_step = self._resume_step, 0
        self._in_task = True
        self._training = list(self.strategy.training_tasks(ctx))
        ctx.steps_per_epoch = steps_per_task(self._training, self.settings)[0]
        self._task_clock = time.perf_counter() - self._partial_seconds
        return ctx.task

    def end_task(self) -> list[float]:
        """The task's training is done (``after_task``: consolidate, select exemplars, prune); returns and
        keeps the row of test accuracies."""
        self._require_task("end_task")
        t0 = time.perf_counter()
        self.strategy.after_task(self.ctx)
        self.dist.sync_generator(self.ctx.generator)  # an MC Fisher drew labels for this process's share only
        t1 = time.perf_counter()
        self._in_task, self.pending, self._epoch, self._partial_seconds, self._micro = False, None, None, 0.0, []
        if self.eval_every and (not self.curve or self.curve[-1]["samples"] != self.samples_seen):
            self._anytime_point()  # the curve ends where the stream does (evaluation time, as the rows)
        self.steps_per_task.append(self.ctx.task_step)
        self._measure()
        during = self._anytime_seconds  # the curve's points measured while training count as evaluation
        for key, value in zip(TIMINGS, (t0 - self._task_clock - during, t1 - t0, time.perf_counter() - t1 + during)):
            self.timings[key].append(value)
        self._anytime_seconds = 0.0
        if self.settings.optimizer_state == "reset":
            self.ctx.optimizer = None
        return self.rows[-1]

    def parameters(self) -> list[Tensor]:
        """What your optimizer trains: the model's parameters and the strategy's trainable state (HAT's
        task embeddings, a progressive network's new laterals), in the order ``lifelong run`` uses.
        Build the optimizer after ``start_task``: some strategies add tensors there."""
        return [*self.model.parameters(), *self.strategy.parameters()]

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        return self.ctx.optimizer

    @optimizer.setter
    def optimizer(self, opt: torch.optim.Optimizer | None) -> None:
        self.ctx.optimizer = opt

    # ---- one step ----------------------------------------------------------------------------------
    def training_tasks(self) -> Sequence[Task]:
        """The tasks whose data the current task trains on (the task alone, all seen so far for joint
        training, the memory alone for GDumb)."""
        self._require_task("training_tasks")
        return self._training

    def steps(self, batch_size: int | None = None, epochs: int | None = None) -> int:
        """Steps of ``batches()``: ``settings.iterations`` or epochs × batches per epoch."""
        return steps_per_task(self.training_tasks(), self.settings, batch_size, epochs)[1]

    def batches(self, batch_size: int | None = None, epochs: int | None = None) -> Iterator[Batch]:
        """The current task's training batches, prepared (:meth:`batch`), shuffled by the seeded order
        generator epoch after epoch exactly as ``lifelong run`` draws them (``settings.iterations``
        steps when set); a task restored mid-way continues with the batch it stopped before."""
        tasks = self.training_tasks()
        bs = batch_size or self.settings.batch_size
        per_epoch, total = steps_per_task(tasks, self.settings, bs, epochs)
        ctx = self.ctx
        shuffle = not (self.stream.task_free and not self.strategy.iid)  # a task-free stream is learned in its order
        if total == 0:  # the strategy trains nothing on this task
            return
        if ctx.task_step == total == self._restored_at:  # restored after its last step, before end_task
            return
        if ctx.task_step >= total:
            raise UsageError(f"cannot continue task {ctx.task.name!r} at step {ctx.task_step}: it has {total} steps")
        while ctx.task_step < total:
            skip = ctx.task_step % per_epoch
            self._epoch = (self.order.get_state(), per_epoch, total)  # this epoch's order is drawn from here
            for raw in batches(tasks, "train", batch_size=bs, shuffle=shuffle, generator=self.order, skip=skip):
                yield self._prepare(raw)  # the stream's own data, checked when the stream was made
                if ctx.task_step >= total:
                    return

    def batch(self, x: Tensor | Batch, y: Tensor | None = None, task: Tensor | int | None = None) -> Batch:
        """One training batch of the current task, prepared by the strategy (``prepare_batch``: replay
        appends memory rows). ``x`` a Batch, or inputs with targets ``y`` (output units) and task ids
        (default: this task)."""
        self._require_task("batch")
        ctx = self.ctx
        if isinstance(x, Batch):
            x, y, task = x.x, x.y, x.task if task is None else task
        if y is None:
            raise UsageError("batch(x, y): give the targets y with the inputs x", params=("y",))
        return self._prepare(self._checked(x, y, ctx.task_index if task is None else task))

    def _checked(self, x, y, task) -> Batch:
        """Your batch, checked at the boundary: tensors, one integer target per input, each a live output
        unit of its sample's task, task ids of tasks learned so far, inputs of the stream's size."""
        ctx, n_in = self.ctx, math.prod(self.stream.input_shape)
        if not isinstance(x, Tensor):
            raise UsageError(f"batch(x, y): x must be a tensor of inputs, got {type(x).__name__}", params=("x",))
        y = torch.as_tensor(y)
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise UsageError(f"batch(x, y): y must hold integer class ids (int64), got {y.dtype}", params=("y",))
        if y.dim() != 1 or x.dim() < 1 or x.shape[0] != y.shape[0]:
            raise UsageError(f"batch(x, y): one target per input, got x {tuple(x.shape)} and y {tuple(y.shape)}",
                             params=("x", "y"))
        if x.shape[0] and x[0].numel() != n_in:
            raise UsageError(f"batch(x, y): each input has {x[0].numel()} values, the stream's {n_in} "
                             f"{tuple(self.stream.input_shape)}", params=("x",))
        x, y = x.to(self.device), y.to(self.device).long()
        t = self._task_ids(task, y.shape[0])
        if t.shape != y.shape:
            raise UsageError(f"batch(x, y, task): one task id per input, got {tuple(t.shape)} for {y.shape[0]}",
                             params=("task",))
        if y.numel():
            lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi > ctx.task_index:
                raise UsageError(f"batch(x, y, task): task ids must be tasks learned so far, 0..{ctx.task_index}, got "
                                 f"{lo if lo < 0 else hi}", params=("task",))
            live = ctx.live(t)
            ok = (y >= 0) & (y < ctx.heads.n_outputs)
            if live is not None:
                ok &= live.gather(1, y.clamp(0, ctx.heads.n_outputs - 1)[:, None]).squeeze(1)
            if not bool(ok.all()):
                bad = int(y[~ok][0])
                units = ("0.." + str(ctx.heads.n_outputs - 1) if live is None
                         else str(live[int((~ok).nonzero()[0])].nonzero().squeeze(1).tolist()))
                raise UsageError(f"batch(x, y): target {bad} is not an output unit of its task (its units: {units}); "
                                 "give targets as output units (TaskStream.from_tensors maps your labels to them)",
                                 params=("y",))
        return Batch(x, y, t)

    def _prepare(self, b: Batch) -> Batch:
        ctx = self.ctx
        if self.pending is not None and self.pending.losses and not self.pending.aux.get("stepped"):
            self._micro.append(self.pending)  # gradient accumulation: one optimizer step over several batches
        step = self.pending = Step(b.with_source(), ctx.step, ctx.task_step)
        self.samples_seen += b.y.shape[0]  # the stream's samples drawn (a shape: no read of the device)
        step.batch = self.strategy.prepare_batch(ctx, step).with_source()
        return step.batch

    def loss(self, batch: Batch) -> Tensor:
        """The loss to back-propagate: the sum of the strategy's named loss terms (the task loss over the
        live units, distillation, ...). The penalty's gradient is added in :meth:`before_step`."""
        with self._releasing():
            return self._loss(batch)

    @contextlib.contextmanager
    def _releasing(self):
        """A step hook that raises gives back what the step took of the process (``Strategy.release``)."""
        try:
            yield
        except BaseException:
            self.strategy.release(self.ctx)
            raise

    def _loss(self, batch: Batch) -> Tensor:
        step = self._step_of(batch, "loss")
        ctx, s = self.ctx, self.strategy
        step.inputs = self.dist.shard(self._augmented(step.batch))  # what the model sees, in this process
        step.logits = s.forward(ctx, step)  # (B, C)
        step.losses = step_losses(s, ctx, step)
        if self.dist.world > 1 and step.inputs.y.shape[0] == 0:  # an empty share of a short last batch: weight 0
            step.losses = {k: step.logits.sum() * 0.0 for k in step.losses}
        terms = iter(step.losses.values())
        total = next(terms)
        for t in terms:
            total = total + t
        return total

    def before_step(self, batch: Batch) -> None:
        """After ``loss.backward()``, before ``optimizer.step()``: in a data-parallel run the gradients are
        averaged over the processes, then ``after_backward`` (p.grad is the loss gradient alone),
        ``add_penalty_grad`` (p.grad += dΩ/dθ), ``before_step`` (projections, gradient masks)."""
        with self._releasing():
            self._before_step(batch)

    def _before_step(self, batch: Batch) -> None:
        step = self._step_of(batch, "before_step")
        if self._micro:  # the step hooks run once per optimizer step, over every batch it accumulated
            step = self.pending = merged_step([*self._micro, step])
            self._micro = []
        step.aux["stepped"] = True
        ctx, s = self.ctx, self.strategy
        if self._optimizer_checked != (ctx.task_index, id(ctx.optimizer)):
            self._check_optimizer()
        if self.dist.world > 1:  # (listing the parameters costs tens of µs a step: only where it is needed)
            self.dist.average_gradients(self.parameters(), step.inputs.y.shape[0] if step.inputs is not None else 0)
        s.after_backward(ctx, step)
        s.add_penalty_grad(ctx)
        s.before_step(ctx, step)

    def after_step(self, batch: Batch) -> None:
        """After ``optimizer.step()`` (``after_step``); the step counters move on."""
        with self._releasing():
            self._after_step(batch)

    def _after_step(self, batch: Batch) -> None:
        step = self._step_of(batch, "after_step")
        self.strategy.after_step(self.ctx, step)
        self.pending = None
        self.ctx.task_step += 1
        self.ctx.step = sum(self.steps_per_task) + self.ctx.task_step
        if self.eval_every and self.samples_seen >= self._next_eval:
            self._anytime_point()
            self._next_eval = (self.samples_seen // self.eval_every + 1) * self.eval_every

    @property
    def last_batch(self) -> Batch | None:
        """The batch of the step under way (integrations' callbacks read it), or None."""
        return None if self.pending is None else self.pending.batch

    def penalty(self) -> Tensor | None:
        """The regularizer's value at the current θ (a 0-d tensor), or None: for logging."""
        with torch.no_grad():
            return self.strategy.penalty(self.ctx)

    def diverged(self, step: int, loss: float | None, what: str | None = None) -> None:
        """Raise TrainingDiverged for step ``step`` of the current task, naming the likely cause."""
        hint, params = self.strategy.divergence_hint(self.ctx)
        what = what or f"the loss became {loss} at step {step + 1} of task {self.ctx.task.name!r}"
        raise TrainingDiverged(f"{what}; likely cause: {hint}", params=params, owner=self.strategy.name)

    # ---- prediction and evaluation -----------------------------------------------------------------
    @torch.no_grad()
    def predict(self, x: Tensor, task_ids: Tensor | int | None = None) -> Tensor:
        """Scores (B, C) with the units that are not live at −∞; argmax them for the class. ``task_ids``:
        the task of each sample (task-incremental), default the last task trained or being trained."""
        ctx = self.ctx
        upto = ctx.task_index
        x = x.to(self.device)
        t = self._task_ids(max(upto, 0) if task_ids is None else task_ids, x.shape[0])
        was = self.model.training
        self.model.eval()
        try:
            scores = self.strategy.predict(ctx, x, t)
        finally:
            self.model.train(was)
        return ctx.heads.logits(scores, t, upto)

    def evaluate(self, split: str = "test", upto: int | None = None, scenario: str | None = None) -> list[float]:
        """Accuracy on every task's ``split`` now (the row ``lifelong run`` records); ``scenario``: one of
        the stream's ``eval_scenarios`` instead of its own (the output units each task's prediction runs
        over, :meth:`lifelong.models.heads.Heads.in_scenario`)."""
        upto = self.ctx.task_index if upto is None else upto
        ctx = self.ctx if scenario is None or scenario == self.stream.scenario else dataclasses.replace(
            self.ctx, heads=self._eval_heads[scenario])
        return evaluate(self.model, self.stream, strategy=self.strategy, split=split, upto=upto, context=ctx).tolist()

    def eval_scenarios(self) -> dict[str, dict[str, Any]]:
        """Per further evaluation scenario of the stream: its accuracy matrix (rows so far) and metrics
        (:func:`lifelong.eval.summarize` in that scenario), as results.json holds them."""
        return {e: {"accuracy_matrix": [list(r) for r in rows],
                    "metrics": summarize(self._square(rows), scenario=e, steps_per_task=self.steps_per_task)}
                for e, rows in self.eval_rows.items()}

    @torch.no_grad()
    def _anytime_point(self) -> dict[str, Any]:
        """One point of the accuracy curve (:mod:`lifelong.eval.anytime`): the fixed evaluation subset's
        accuracy per group and over the groups seen so far; one read of the device."""
        start = time.perf_counter()
        tl, task = self.stream.timeline, self.stream[0]
        idx, groups, counts = self._eval_index, self._eval_groups, self._eval_counts
        right = torch.zeros(tl.n_groups, dtype=torch.float64, device=self.device)
        for s in range(0, len(idx), 1000):
            b = gather(task, "test", idx[s : s + 1000])
            hit = (self.predict(b.x, 0).argmax(1) == b.y).to(torch.float64)
            right.index_add_(0, groups[s : s + 1000], hit)
        per_group = [r / c if c else None for r, c in zip(right.tolist(), counts)]  # None: no test sample of it
        n = self.samples_seen
        seen = [e is not None and (e < n or n >= len(tl.train_groups)) for e in self._entries]
        point = {"samples": n, "step": self.ctx.step, "accuracy": seen_accuracy(per_group, counts, seen),
                 "groups": per_group, "seen": seen}
        self.curve.append(point)
        if self._in_task:
            self._anytime_seconds += time.perf_counter() - start
        if self.on_point is not None:
            self.on_point(point)
        return point

    def anytime(self) -> dict[str, Any] | None:
        """A task-free stream's accuracy curve and its metrics (results.json's ``anytime``), or None."""
        if not self.eval_every:
            return None
        tl = self.stream.timeline
        shares = [[round(v, 4) for v in row] for row in tl.shares(50).tolist()]  # the schedule, for its picture
        return {**tl.to_dict(), "every": self.eval_every, "shares": shares, "points": [dict(p) for p in self.curve],
                "metrics": anytime_metrics(self.curve)}

    def begin(self) -> list[float]:
        """Measure the accuracy row before any training, R[0], if it is not measured yet (``start_task``
        does it otherwise); returns it."""
        if not self.rows:
            self._measure()
        return self.rows[0]

    @property
    def position(self) -> tuple[int, int]:
        """``(task, step)``: the task under way (or restored mid-way) and the steps it has taken, or the
        next task and 0 between tasks."""
        if self._in_task:
            return self.ctx.task_index, self.ctx.task_step
        if self._resume_step:
            return self.ctx.task_index, self._resume_step
        return self.next_task, 0

    def _measure(self) -> None:
        upto = len(self.rows) - 1  # -1 before any training
        self.rows.append(self.evaluate("test", upto))
        if self.has_val:
            self.val_rows.append(self.evaluate("val", upto))
        for e, rows in self.eval_rows.items():
            rows.append(self.evaluate("test", upto, scenario=e))

    @property
    def accuracy_matrix(self) -> np.ndarray:
        """R (rows so far × T): row 0 before training, row i after task i."""
        return np.array(self.rows)

    def summary(self, split: str = "test") -> dict[str, float | None]:
        """The metrics of the tasks learned so far (average accuracy, BWT, FWT, forgetting): the rows so
        far over their tasks' columns; a metric undefined there (one task; FWT in the class scenario) is
        None, and :meth:`undefined_metrics` says why."""
        out = summarize(self._square(self._rows(split)), scenario=self.stream.scenario, steps_per_task=self.steps_per_task)
        if self.eval_every and split == "test":
            out.update(anytime_metrics(self.curve))
        return out

    def undefined_metrics(self, split: str = "test") -> dict[str, str]:
        """Why each metric :meth:`summary` leaves out is undefined."""
        out = undefined_metrics(self._square(self._rows(split)), self.stream.scenario, self.steps_per_task)
        if self.eval_every and split == "test":
            why = {"final_accuracy": "no point of the accuracy curve has a group seen",
                   "auc_accuracy": "the accuracy curve has no point",
                   "curve_forgetting": "the accuracy curve needs two points and a group seen before the last"}
            out.update({k: why[k] for k, v in anytime_metrics(self.curve).items() if v is None})
        return out

    def _rows(self, split: str) -> list[list[float]]:
        return self.rows if split == "test" else self.val_rows

    @staticmethod
    def _square(rows: list[list[float]]) -> np.ndarray:
        """The rows so far over the tasks learned so far (what the metrics are computed on)."""
        if len(rows) < 2:
            raise UsageError("summary() needs at least one task learned: call it after end_task()")
        k = len(rows) - 1
        return np.array(rows)[:, :k]

    # ---- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Everything a Learner needs to continue exactly where it is (between steps): ``(tensors, meta)``
        in the checkpoint layout of :mod:`lifelong.train.checkpoint` (model, strategy state, generators,
        optimizer; progress, accuracy rows, timings)."""
        if self.pending is not None:
            raise UsageError("state_dict() between steps: finish the step with after_step() first")
        ctx, T = self.ctx, len(self.stream)
        if self._in_task and ctx.task_step == 0:
            raise UsageError("a Learner is saved between tasks or after a step of a task, not when a task has just "
                             "started (its before_task would run twice)")
        mid = self._in_task
        if mid and ctx.optimizer is None:
            raise UsageError("saving in the middle of a task keeps the optimizer's state: set cl.optimizer = your "
                             "optimizer first (or save between tasks)")
        order = self.order.get_state()
        if mid and self._epoch is not None:
            drawn, per_epoch, total = self._epoch
            if ctx.task_step % per_epoch and ctx.task_step < total:
                order = drawn  # mid-epoch: the epoch's order is drawn again, its first batches skipped
        tensors = {**with_prefix(self.model.state_dict(), "model"), **with_prefix(self.strategy.state_dict(), "strategy"),
                   "rng.order": order, "rng.strategy": ctx.generator.get_state()}
        if self.augment_rng is not None:
            tensors["rng.augment"] = self.augment_rng.get_state()
        full = lambda rows: [*rows, *([[0.0] * T] * (T + 1 - len(rows)))]  # noqa: E731
        progress = {
            "task": ctx.task_index if mid else self.next_task, "step": ctx.task_step if mid else 0,
            "steps_per_task": list(self.steps_per_task), "R": full(self.rows),
            "R_val": full(self.val_rows) if self.has_val else None,
            **({"R_eval": {e: full(rows) for e, rows in self.eval_rows.items()}} if self.eval_rows else {}),
            "timings": {k: list(v) for k, v in self.timings.items()},
            "partial_train_seconds": time.perf_counter() - self._task_clock if mid else 0.0,
            "elapsed_seconds": time.perf_counter() - self._clock,
        }
        if self.eval_every:
            progress["anytime"] = {"samples": self.samples_seen, "next": self._next_eval,
                                   "points": [dict(p) for p in self.curve], "seconds": self._anytime_seconds}
        meta: dict[str, Any] = {"progress": progress, "strategy": self.strategy.name}
        keep = self.settings.optimizer_state == "keep" and ctx.optimizer is not None
        if ctx.optimizer is not None and (mid or keep):
            opt_t, meta["optimizer"] = optimizer_tensors(ctx.optimizer)
            tensors.update(with_prefix(opt_t, "optim"))
        return tensors, meta

    def load_state_dict(self, checkpoint: tuple[dict[str, Tensor], dict[str, Any]], where: str = "checkpoint") -> None:
        """Continue from :meth:`state_dict`'s ``(tensors, meta)``: every piece is checked against what it
        is loaded into (model, strategy, generators, optimizer, progress) and a mismatch is a one-line
        CheckpointError, before anything changes. The next ``start_task`` is the task that was under
        way (continued at its step, without ``before_task``) or the first not learned yet."""
        tensors, meta = checkpoint
        meta = upgrade(meta, len(self.stream))
        P = meta["progress"]
        check_progress(where, P, self.stream, self.strategy, self.settings)
        load_model_state(self.model, split_prefix(tensors, "model"), where)
        state = {k: v.to(self.device) for k, v in split_prefix(tensors, "strategy").items()}
        problem = check_state(state, self.strategy.state_spec(self.ctx, Position(P["task"], P["step"] > 0)))
        if problem is not None:  # the state the strategy declares it keeps at this point of the stream
            raise CheckpointError(f"{where}: the state of {self.strategy.name} does not match what it keeps after "
                                  f"{plural(P['task'], 'task')}{' and ' + plural(P['step'], 'step') if P['step'] else ''}: {problem}")
        try:
            self.strategy.load_state_dict(state, self.model)
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as e:
            raise CheckpointError(f"{where}: the strategy state does not fit {self.strategy.name}: "
                                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        gens = [("rng.order", self.order), ("rng.strategy", self.ctx.generator)]
        if self.augment_rng is not None:
            gens.append(("rng.augment", self.augment_rng))
        elif "rng.augment" in tensors:
            raise CheckpointError(f"{where} holds an augmentation generator but this run does not augment")
        for name, gen in gens:
            try:
                gen.set_state(tensors[name])
            except (KeyError, RuntimeError, TypeError) as e:
                raise CheckpointError(f"{where}: generator state {name} is missing or invalid ({type(e).__name__})") from None
        mid, keep = P["step"] > 0, self.settings.optimizer_state == "keep"
        self.ctx.optimizer = None
        if mid or (keep and P["task"] > 0 and split_prefix(tensors, "optim")):
            opt = make_optimizer(self.model, self.settings, self.strategy.parameters())
            load_optimizer_state(opt, split_prefix(tensors, "optim"), meta.get("optimizer"))
            self.ctx.optimizer = opt
        elif split_prefix(tensors, "optim") and not keep:
            raise CheckpointError(f"{where} holds optimizer state at a task boundary, where this run starts a fresh "
                                  "optimizer (it was made with optimizer_state='keep')", params=("optimizer_state",))
        done = P["task"]  # tasks learned before the one under way (or the next one)
        self.rows = [list(r) for r in P["R"][: done + 1]]
        self.val_rows = [list(r) for r in P["R_val"][: done + 1]] if self.has_val else []
        self.eval_rows = {e: [list(r) for r in P["R_eval"][e][: done + 1]] for e in self.eval_rows}
        if done == 0 and not mid:
            self.rows, self.val_rows = [], []  # nothing measured yet (a checkpoint before the first row)
            self.eval_rows = {e: [] for e in self.eval_rows}
        self.steps_per_task = list(P["steps_per_task"])
        self.timings = {k: list(P["timings"][k]) for k in TIMINGS}
        if self.eval_every:
            A = P["anytime"]
            self.samples_seen, self._next_eval, self.curve = A["samples"], A["next"], [dict(p) for p in A["points"]]
            self._anytime_seconds = float(A.get("seconds", 0.0))
        self._resume_step = P["step"]
        self._partial_seconds = float(P["partial_train_seconds"])
        self._clock = time.perf_counter() - float(P["elapsed_seconds"])
        self._in_task, self.pending, self._micro = False, None, []
        self.ctx.task_index = P["task"] - (0 if mid else 1)
        self.ctx.task_step = P["step"]
        self.ctx.step = sum(self.steps_per_task) + P["step"]

    def save(self, path) -> None:
        """Model, strategy state (EWC's Fisher and anchor, a memory, masks), generators and the accuracy
        rows, in one safetensors checkpoint (no pickle): learn the next task another day with :meth:`load`."""
        tensors, meta = self.state_dict()
        save_checkpoint(path, tensors, meta)

    def load(self, path) -> None:
        """Continue from :meth:`save`'s file. The strategy must be the one saved (its state is checked
        against the model)."""
        tensors, meta = load_checkpoint(path)
        name = meta.get("strategy") or (meta.get("learner") or {}).get("strategy")
        if name is not None and name != self.strategy.name:
            raise CheckpointError(f"{path} is a checkpoint of {name}, not of {self.strategy.name}")
        self.load_state_dict((tensors, meta), str(path))

    # ---- internals ---------------------------------------------------------------------------------
    def _augmented(self, batch: Batch) -> Batch:
        """The batch with the settings' augmentation applied to its inputs (padding with a black pixel's
        normalized value); the batch itself without one."""
        if self.augment_rng is None:
            return batch
        pre = self.ctx.task.preprocess
        return batch._replace(x=crop_flip(batch.x, self.augment_rng, fill=(0.0 - pre.mean) / pre.std))

    def _check_optimizer(self) -> None:
        """Once per task and optimizer: a strategy that trains tensors of its own (HAT's embeddings, progressive
        columns' laterals) or reads the optimizer (PackNet) has it, and it trains every one of them."""
        ctx, s = self.ctx, self.strategy
        own = s.parameters()
        if ctx.optimizer is None and (own or s.needs_optimizer):
            why = s.needs_optimizer or "it trains tensors of its own beside the model's (cl.parameters())"
            raise UsageError(f"{s.name} needs your optimizer: {why}; set cl.optimizer = opt, with opt built from "
                             "cl.parameters() after start_task", owner=s.name)
        if ctx.optimizer is not None and own:
            trained = {id(p) for g in ctx.optimizer.param_groups for p in g["params"]}
            if any(id(p) not in trained for p in own):
                raise UsageError(f"the optimizer does not train {s.name}'s own tensors (made when the task starts): build "
                                 "it from cl.parameters() after start_task(i), once per task", owner=s.name)
        self._optimizer_checked = (ctx.task_index, id(ctx.optimizer))

    def _step_of(self, batch: Batch, what: str) -> Step:
        self._require_task(what)
        step = self.pending
        if step is None or (batch is not step.batch and batch is not step.aux.get("last_batch")):
            raise UsageError(f"{what}(batch) takes the batch that batch() or batches() gave for this step"
                             + ("" if step is None else ", not another"))
        return step

    def _task_ids(self, t: Tensor | int, n: int) -> Tensor:
        """(n,) int64 task ids on the device: one index for every sample, or the given ids."""
        if isinstance(t, bool):
            raise UsageError(f"batch(x, y, task): task must be a task index or one per input, got {t!r}", params=("task",))
        if isinstance(t, int):
            return torch.full((n,), t, dtype=torch.long, device=self.device)
        t = torch.as_tensor(t, device=self.device)
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise UsageError(f"batch(x, y, task): task ids must be integers, got {t.dtype}", params=("task",))
        return t.long()

    def _require_task(self, what: str) -> None:
        if not self._in_task:
            raise UsageError(f"{what}() belongs inside a task: call start_task(i) first (or loop over cl.tasks())")


def anytime_period(stream: TaskStream, settings: TrainSettings) -> int:
    """Training samples between two points of a task-free stream's accuracy curve: ``eval_every``, or a
    twentieth of the samples the stream's training draws (``epochs`` passes or ``iterations`` batches)."""
    if settings.eval_every:
        return settings.eval_every
    n = len(stream[0].train)
    total = settings.iterations * settings.batch_size if settings.iterations else settings.epochs * n
    return max(1, math.ceil(total / 20))


def merged_step(steps: list[Step]) -> Step:
    """One step of several accumulated batches: their batches, inputs and (detached) logits joined, rows
    grouped by source again (what a memory stores covers every batch); the losses of the last."""
    last = steps[-1]

    def grouped(batch: Batch, *others: Tensor) -> tuple:
        order = torch.sort(batch.source, stable=True).indices
        return (Batch(*(f[order] for f in batch)), *(o[order.to(o.device)] for o in others))

    (batch,) = grouped(join(*(s.batch for s in steps)))
    inputs, logits = last.inputs, last.logits
    if all(s.inputs is not None and s.logits is not None for s in steps):
        inputs, logits = grouped(join(*(s.inputs for s in steps)), torch.cat([s.logits.detach() for s in steps]))
    return Step(batch, last.index, last.task_step, inputs, logits, last.losses, {"last_batch": last.batch})


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def check_run(model: nn.Module, stream: TaskStream, strategy: Strategy, settings: TrainSettings | None = None,
              device: torch.device | None = None) -> None:
    """What a Learner checks before it trains, on the CPU and without side effects: the model takes the
    stream's inputs and has its output units, the strategy accepts the stream and the model
    (``check_stream``), and the samples it may keep fit in the memory of ``device`` (default: the
    model's). A UsageError otherwise; callers run it before they write anything."""
    ctx = Context(model, Heads.of(stream), stream=stream, settings=settings or TrainSettings())
    _check_fits_stream(ctx)
    if stream.task_free and (why := strategy.task_free_problem()):
        raise UsageError(f"{strategy.name} cannot learn the task-free stream {stream.name!r} ({stream.timeline.schedule}): "
                         f"{why}", owner=strategy.name)
    strategy.check_stream(ctx)
    if ctx.settings.eval_every and not stream.task_free:
        raise UsageError("eval_every applies to task-free streams (schedule flat, gradual, blurry or a rotating-* "
                         "benchmark); a stream with tasks is measured after each task", params=("eval_every",))
    device = device or next((p.device for p in model.parameters()), torch.device("cpu"))
    need, have = strategy.memory_bound(ctx), memory_bytes(device)
    if have is not None and need > have:
        raise UsageError(f"{strategy.name}'s memory could hold {need / 1e9:,.1f} GB of samples on this stream, more than "
                         f"the {have / 1e9:,.1f} GB of {device}: lower `memory`", params=("memory",), owner=strategy.name)


@torch.no_grad()
def _check_fits_stream(ctx: Context) -> None:
    """The model takes the stream's inputs and returns one score per output unit: one forward pass of
    two samples in eval mode (no state changes), so a mismatch is a UsageError naming both shapes."""
    x = next(batches([ctx.stream[0]], "test", batch_size=2)).x
    device = next((p.device for p in ctx.model.parameters()), torch.device("cpu"))
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        out = ctx.model(x.to(device))
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        raise UsageError(f"the model cannot take the stream's inputs {tuple(x.shape[1:])} (batches of "
                         f"{tuple(x.shape)}): {str(e).splitlines()[0][:160]}") from None
    finally:
        ctx.model.train(was_training)
    want = ctx.heads.n_outputs
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != want:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UsageError(f"the model returns {shape} for a batch of 2 but the stream has {want} output units "
                         f"({ctx.stream.scenario}-incremental, {len(ctx.stream)} tasks): give the model {want} outputs")
