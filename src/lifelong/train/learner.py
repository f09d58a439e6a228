"""Any strategy in your own training loop: :class:`Learner` holds the context and calls the strategy's
hooks in the order :func:`lifelong.train.train_task` calls them, so your loop and ``lifelong run`` give
the same numbers (bit for bit, same stream, model, seed and threads; ``tests/test_learner.py``).

Your loop, for any strategy (EWC, SI, ER, DER++, LwF, iCaRL, PackNet, HAT, ...)::

    cl = Learner(model, ER(memory=500), stream)          # stream: TaskStream.from_tensors(...) or a benchmark
    for task in cl.tasks():                              # before_task ... after_task, an accuracy row each
        opt = torch.optim.SGD(cl.parameters(), lr=0.1)   # the model's and the strategy's trainable tensors
        for batch in cl.batches(batch_size=128):         # the strategy's data, replay samples added
            loss = cl.loss(batch)                        # forward + task loss + extra terms (distillation)
            opt.zero_grad(); loss.backward()
            cl.before_step(batch)                        # penalty gradient, gradient projections and masks
            opt.step()
            cl.after_step(batch)                         # reservoir sampling, path integrals
    cl.accuracy_matrix                                   # R[i][j], row 0 before training

How one step maps to the hooks (see :mod:`lifelong.strategies.base`)::

    cl.batch(x, y) / cl.batches()   prepare_batch                 (the step counters are set here)
    cl.loss(batch)                  forward, task_loss, extra_loss
    cl.before_step(batch)           after_backward, add_penalty_grad, before_step
    cl.after_step(batch)            after_step                    (then the counters move on)
    cl.end_task()                   after_task, then the accuracy row   (cl.tasks() calls it)
    cl.predict(x, task_ids)         predict, with the units that are not live at −∞

Your own batches work too (``cl.batch(x, y)`` from any DataLoader: they are the current task's);
``cl.batches()`` draws them as ``lifelong run`` does (the seeded order generator, the strategy's
``training_tasks``: joint training's union, GDumb's memory). Strategies that train at the end of a task
(PackNet retrains after pruning) use ``cl.optimizer`` (your optimizer: set it) for its type and settings.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..models.heads import Heads
from ..scenarios import Batch, Task, TaskStream, batches, derived_generator
from ..strategies import Context, Strategy
from .device import resolve_device
from .loop import TrainSettings


class Learner:
    """``strategy`` applied to ``model`` over ``stream`` in a loop you write.

    ``settings`` (:class:`TrainSettings`) give the batch size, epochs, seed and optimizer settings the
    strategies read (HAT anneals per epoch, PackNet retrains); ``seed`` overrides ``settings.seed``.
    The model and the stream's data move to ``device``.
    """

    def __init__(self, model: nn.Module, strategy: Strategy, stream: TaskStream, *,
                 settings: TrainSettings | None = None, seed: int | None = None, device: str | torch.device = "cpu"):
        if not isinstance(strategy, Strategy):
            raise UsageError(f"Learner takes a lifelong strategy (EWC(...), ER(...)), got {type(strategy).__name__}")
        if not isinstance(stream, TaskStream):
            raise UsageError("Learner takes a TaskStream: build one from your tensors with TaskStream.from_tensors(...)")
        settings = settings or TrainSettings()
        if seed is not None:
            settings = dataclasses.replace(settings, seed=seed)
        from .stream import check_run

        check_run(model, stream, strategy, settings)  # the model fits the stream, the strategy accepts both
        self.device = resolve_device(device)
        self.model, self.strategy, self.settings = model.to(self.device), strategy, settings
        self.stream = stream.to(self.device)
        self.ctx = Context(model, Heads.of(stream).to(self.device), self.device,
                           derived_generator(settings.seed, "strategy"), self.stream, settings=settings)
        self.order = derived_generator(settings.seed, "order")  # the data order lifelong run draws
        self.rows: list[list[float]] = []
        self._in_task = False
        self._steps_before = 0
        self.last_batch: Batch | None = None  # the batch of the step under way (callbacks read it)

    # ---- tasks -------------------------------------------------------------------------------------
    def tasks(self) -> Iterator[Task]:
        """Each task not learned yet, in turn: ``start_task(i)`` before the loop body, ``end_task()``
        after it; the accuracy row before any training is measured first."""
        for i in range(self.next_task, len(self.stream)):
            yield self.start_task(i)
            self.end_task()

    def start_task(self, i: int) -> Task:
        """Task ``i`` begins (``before_task``): the next one in order."""
        if self._in_task:
            raise UsageError(f"task {self.ctx.task_index} has not ended: call end_task() before start_task({i})")
        nxt = self.next_task
        if i != nxt or i >= len(self.stream):
            what = f"the next is task {nxt}" if nxt < len(self.stream) else "every task has been learned"
            raise UsageError(f"start_task({i}): tasks are learned in order and once, {what} of {len(self.stream)}")
        if not self.rows:
            self.rows.append(self.evaluate(upto=-1))
        ctx = self.ctx
        ctx.task, ctx.task_index, ctx.task_step, ctx.optimizer = self.stream[i], i, 0, None
        self._steps_before = ctx.step  # the stream's steps before this task
        self.model.train()
        self.strategy.before_task(ctx)
        self._in_task = True
        return ctx.task

    def end_task(self) -> list[float]:
        """The task's training is done (``after_task``: consolidate, select exemplars, prune); returns and
        keeps the row of test accuracies."""
        self._require_task("end_task")
        self.strategy.after_task(self.ctx)
        self._in_task = False
        row = self.evaluate()
        self.rows.append(row)
        return row

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
        return self.strategy.training_tasks(self.stream, self.ctx.task_index)

    def steps(self, batch_size: int | None = None, epochs: int | None = None) -> int:
        """Steps of ``batches()``: ``settings.iterations`` or epochs × batches per epoch."""
        return self._steps(self.training_tasks(), batch_size or self.settings.batch_size, epochs)

    def _steps(self, tasks: Sequence[Task], bs: int, epochs: int | None) -> int:
        per_epoch = math.ceil(sum(len(t.train) for t in tasks) / bs)
        return self.settings.iterations or (epochs or self.settings.epochs) * per_epoch

    def batches(self, batch_size: int | None = None, epochs: int | None = None) -> Iterator[Batch]:
        """The current task's training batches, prepared (:meth:`batch`), shuffled by the seeded order
        generator epoch after epoch exactly as ``lifelong run`` draws them (``settings.iterations``
        steps when set)."""
        bs = batch_size or self.settings.batch_size
        tasks = self.training_tasks()  # once: GDumb builds its memory's task here
        total = self._steps(tasks, bs, epochs)
        taken = 0
        while taken < total:
            for raw in batches(tasks, "train", batch_size=bs, shuffle=True, generator=self.order):
                yield self.batch(raw)
                taken += 1
                if taken >= total:
                    return

    def batch(self, x: Tensor | Batch, y: Tensor | None = None, task: Tensor | int | None = None) -> Batch:
        """One training batch of the current task (``prepare_batch``: replay appends memory samples).
        ``x`` a Batch, or inputs with targets ``y`` (output units) and task ids (default: this task)."""
        self._require_task("batch")
        ctx = self.ctx
        if isinstance(x, Batch):
            b = x
        else:
            if y is None:
                raise UsageError("batch(x, y): give the targets y with the inputs x")
            x, y = x.to(self.device), torch.as_tensor(y, device=self.device).long()
            b = Batch(x, y, self._task_ids(ctx.task_index if task is None else task, y.shape[0]))
        ctx.step = self._steps_before + ctx.task_step
        self.last_batch = self.strategy.prepare_batch(ctx, b)
        return self.last_batch

    def loss(self, batch: Batch) -> Tensor:
        """The loss to back-propagate: the task loss over the live units plus the strategy's extra terms
        (distillation). The penalty's gradient is added in :meth:`before_step`, not here."""
        self._require_task("loss")
        ctx, s = self.ctx, self.strategy
        logits = s.forward(ctx, batch.x, batch.task)
        loss = s.task_loss(ctx, batch, logits)
        extra = s.extra_loss(ctx, batch, logits)
        return loss if extra is None else loss + extra

    def before_step(self, batch: Batch) -> None:
        """After ``loss.backward()``, before ``optimizer.step()``: ``after_backward`` (p.grad is the
        loss gradient alone), ``add_penalty_grad`` (p.grad += dΩ/dθ), ``before_step`` (projections,
        gradient masks)."""
        self._require_task("before_step")
        ctx, s = self.ctx, self.strategy
        s.after_backward(ctx, batch)
        s.add_penalty_grad(ctx)
        s.before_step(ctx, batch)

    def after_step(self, batch: Batch) -> None:
        """After ``optimizer.step()`` (``after_step``); the step counters move on."""
        self._require_task("after_step")
        self.strategy.after_step(self.ctx, batch)
        self.last_batch = None
        self.ctx.task_step += 1
        self.ctx.step = self._steps_before + self.ctx.task_step

    def penalty(self) -> Tensor | None:
        """The regularizer's value at the current θ (a 0-d tensor), or None: for logging."""
        with torch.no_grad():
            return self.strategy.penalty(self.ctx)

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

    def evaluate(self, split: str = "test", upto: int | None = None) -> list[float]:
        """Accuracy on every task's ``split`` now (the row ``lifelong run`` records)."""
        from ..eval import evaluate

        return evaluate(self.ctx, self.stream.tasks, strategy=self.strategy, split=split, upto=upto).tolist()

    @property
    def accuracy_matrix(self) -> np.ndarray:
        """R (rows so far × T): row 0 before training, row i after task i."""
        return np.array(self.rows)

    def summary(self) -> dict[str, Any]:
        """The metrics of the rows so far (average accuracy, BWT, FWT, forgetting)."""
        from ..eval import summarize

        return summarize(self.accuracy_matrix)

    # ---- saving between tasks -----------------------------------------------------------------------
    def save(self, path) -> None:
        """Model, strategy state (EWC's Fisher and anchor, a memory, masks), generators and the accuracy
        rows after a task, in one safetensors checkpoint (no pickle): learn task 2 another day with
        :meth:`load`. Only between tasks."""
        from .checkpoint import save_checkpoint, with_prefix

        if self._in_task:
            raise UsageError("save() between tasks: call it after end_task()")
        tensors = {**with_prefix(self.model.state_dict(), "model"), **with_prefix(self.strategy.state_dict(), "strategy"),
                   "rng.order": self.order.get_state(), "rng.strategy": self.ctx.generator.get_state()}
        save_checkpoint(path, tensors, {"learner": {"rows": self.rows, "step": self.ctx.step,
                                                     "task_index": self.ctx.task_index, "strategy": self.strategy.name}})

    def load(self, path) -> None:
        """Continue from :meth:`save`'s file: the next ``tasks()`` / ``start_task`` is the first task not
        learned yet. The strategy must be the one saved (its state is checked against the model)."""
        from .checkpoint import CheckpointError, load_checkpoint, load_model_state, split_prefix

        tensors, meta = load_checkpoint(path)
        info = meta.get("learner")
        if not isinstance(info, dict) or info.get("strategy") != self.strategy.name:
            raise CheckpointError(f"{path} is not a Learner checkpoint of {self.strategy.name} "
                                  f"(it holds {info.get('strategy') if isinstance(info, dict) else 'no Learner state'})")
        load_model_state(self.model, split_prefix(tensors, "model"))
        try:
            self.strategy.load_state_dict({k: v.to(self.device) for k, v in split_prefix(tensors, "strategy").items()})
            self.strategy.check_state(self.model)
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{path}: the strategy state does not fit: {str(e).splitlines()[0]}") from None
        self.order.set_state(tensors["rng.order"])
        self.ctx.generator.set_state(tensors["rng.strategy"])
        self.rows = [list(r) for r in info["rows"]]
        self.ctx.step, self.ctx.task_index = int(info["step"]), int(info["task_index"])
        self._in_task = False

    # ---- internals ---------------------------------------------------------------------------------
    @property
    def next_task(self) -> int:
        """The index of the first task not learned yet (rows holds R[0] and one row per task learned)."""
        return len(self.rows) - 1 if self.rows else 0

    def _task_ids(self, t: Tensor | int, n: int) -> Tensor:
        """(n,) int64 task ids on the device: one index for every sample, or the given ids."""
        if isinstance(t, int):
            return torch.full((n,), t, dtype=torch.long, device=self.device)
        return torch.as_tensor(t, device=self.device).long()

    def _require_task(self, what: str) -> None:
        if not self._in_task:
            raise UsageError(f"{what}() belongs inside a task: call start_task(i) first (or loop over cl.tasks())")
