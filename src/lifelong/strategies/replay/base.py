"""What the replay family shares: a memory budget, a buffer in the strategy state, and a teacher.

Every replay method keeps a :class:`~lifelong.strategies.replay.buffer.Buffer` whose tensors are the
strategy's state under ``memory.`` (saved in checkpoints without pickle, resumed bit for bit). The
budget is ``memory`` samples in all (or ``per_class`` of every class); ``policy`` chooses how it is
filled (reservoir sampling every step, or a class- or task-balanced choice at each task's end).

Which rows of a step are the current task's is the batch's ``source`` (0), never a count kept on the
strategy: a memory stores the rows of source 0 of the step's batch, whatever added the others, so a
method that adds no rows (A-GEM, GEM) fills its reservoir like one that does (ER).

Distillation methods (LwF, iCaRL) also keep a *teacher*: a frozen copy of the model as it was when the
current task began, saved under ``teacher.`` so that a resumed task distils from the same model.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import UsageError
from ...scenarios import Batch, join, memory_rows
from ...settings import Settings, setting
from ..base import Context, Step, Strategy, cross_entropy
from ..state import Group, Position
from .buffer import POLICIES, STREAMING, Buffer

MAX_MEMORY = 100_000_000


def memory_setting(default: int = 1000):
    return setting(default, flag="memory", check=lambda v: v >= 1, must="be a number of samples >= 1",
                   maximum=MAX_MEMORY, help="the replay memory's budget in samples, over all tasks")


def policy_setting(default: str = "reservoir", help: str = "how the memory is filled: reservoir (every step, a uniform "
                   "sample of the stream), class or task (at each task's end, the budget split equally between the "
                   "classes or tasks seen so far), slots (each task's memory/tasks slots, filled at its end, never "
                   "re-split) or ring (each task's memory/tasks slots hold its newest samples)"):
    return setting(default, flag="memory-policy", choices=POLICIES, help=help)


@dataclass(frozen=True)
class MemorySettings(Settings):
    strategy = ""  # shared: each strategy that takes it as it is gets its own subclass
    memory: int = memory_setting()
    per_class: int = setting(0, flag="memory-per-class", check=lambda v: v >= 0, must="be >= 0", maximum=MAX_MEMORY,
                             help="keep this many samples of every class instead of a total (0: memory is the total); "
                                  "needs the class policy")
    policy: str = policy_setting()

    def check(self) -> None:
        if self.per_class and self.policy != "class":
            self.fail("per_class", "needs policy='class' (a budget per class is a class-balanced choice)", "policy")


def check_concat(settings: Settings) -> None:
    """``mixing='concat'`` trains on the memory as a fixed data set: it cannot be a reservoir."""
    if settings.mixing == "concat" and settings.policy in STREAMING:
        settings.fail("mixing", "'concat' needs a memory fixed during a task: policy='class', 'task' or 'slots'", "policy")


class Replay(Strategy):
    """The base of the replay family: a buffer built from the settings, kept in the state."""

    Settings = MemorySettings
    keeps_memory = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = self.make_buffer()

    def make_buffer(self) -> Buffer:
        s = self.settings
        return Buffer(MAX_MEMORY if s.per_class else s.memory, s.policy, per_class=s.per_class)

    # ---- hooks most replay methods share -------------------------------------------------------------
    def with_memory(self, ctx: Context, batch: Batch, n: int) -> Batch:
        """``batch`` followed by ``n`` distinct random samples of the memory (source 1; none while it is empty)."""
        if not len(self.buffer) or n <= 0:
            return batch
        return join(batch, memory_rows(self.buffer.batch(self.buffer.sample(n, ctx.generator, ctx.device))))

    def with_memory_task(self, ctx: Context) -> list:
        """The current task's data and, once there is a memory, the memory repeated ⌊N / budget⌋ times (at
        least once) so that old and new samples are about 1 : 1 (Hsu et al.'s ``Naive_Rehearsal``)."""
        stream, i = ctx.stream, ctx.task_index
        if not len(self.buffer):
            return [stream[i]]
        repeats = max(len(stream[i].train) // self.buffer.capacity, 1)
        return [stream[i], self.buffer.as_task(len(stream), repeats)]

    def memory_loss(self, ctx: Context, mem: Batch) -> Tensor:
        """Cross-entropy of memory samples over their live units (A-GEM's and GEM's reference losses)."""
        return cross_entropy(ctx, ctx.model(mem.x), mem)

    def after_step(self, ctx: Context, step: Step) -> None:
        own = step.batch.select(step.batch.rows(0))  # the rows of the current task, whatever else the batch holds
        if self.buffer.policy == "reservoir":
            self.buffer.add_reservoir(own, ctx.generator)
        elif self.buffer.policy == "ring":
            self.buffer.add_ring(own, ctx.task_index, len(ctx.stream))

    def after_task(self, ctx: Context) -> None:
        if self.buffer.policy == "slots":
            self.buffer.add_slots(ctx.task, len(ctx.stream), ctx.generator)
        elif self.buffer.policy not in STREAMING:
            self.buffer.select(ctx.task, ctx.heads.n_outputs, ctx.generator)

    # ---- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        return {f"memory.{k}": v for k, v in self.buffer.state_dict().items()}

    def check_stream(self, ctx: Context) -> None:
        """A memory chosen per class or per task keeps at least one sample of each at the stream's end
        (a budget split into zero-sized shares is plain fine-tuning under another name)."""
        b = self.buffer
        if b.policy == "reservoir" or b.per_class:
            return
        stream = ctx.stream
        if b.policy in ("task", "slots", "ring"):
            keys, what = len(stream), "tasks"
        else:
            keys, what = sum(len(torch.unique(t.train.targets)) for t in stream), "classes"
        if b.capacity // keys < 1:
            raise UsageError(f"{self.name}: `memory={b.capacity}` split between the stream's {keys} {what} "
                             f"(policy {b.policy!r}) keeps no sample of each: give `memory` at least {keys}",
                             params=("memory",), owner=self.name)

    def task_free_problem(self) -> str:
        """A memory filled at task ends stays empty on a task-free stream (fine-tuning under another name)."""
        if self.needs_boundaries:
            return self.needs_boundaries
        if self.buffer.policy not in STREAMING:
            return (f"policy={self.buffer.policy!r} fills the memory at the end of each task, and a task-free stream "
                    "has none: use policy='reservoir'")
        if getattr(self.settings, "weighting", "mean") == "tasks":
            return "weighting='tasks' weighs the memory by the number of tasks seen: use weighting='mean'"
        return ""

    def memory_bound(self, ctx: Context) -> int:
        """The most bytes the memory can hold on this stream: its budget, or the stream's training samples
        if fewer, times one sample's input, target, task id (and DER's logits)."""
        stream, b = ctx.stream, self.buffer
        total = sum(len(t.train.targets) for t in stream)
        rows = min(b.capacity, total) if not b.per_class else min(b.per_class * ctx.heads.n_outputs * len(stream), total)
        per = 4 * math.prod(stream.input_shape) + 16 + (4 * ctx.heads.n_outputs if b.keep_logits else 0)
        return rows * per

    def memory_kept(self, at: Position) -> bool:
        """Whether the memory holds samples at ``at``: a reservoir from the first step on, a memory chosen
        at each task's end once a task is done."""
        return at.trained if self.buffer.policy in STREAMING else at.done > 0

    def state_spec(self, ctx: Context, at: Position) -> list[Group]:
        """The count of samples offered (``memory.seen``) always; the stored inputs, targets, task ids (and
        DER's logits) with as many rows each, at most the budget, once :meth:`memory_kept`."""
        rows = {"memory.x": ((None, *ctx.stream.input_shape), None), "memory.y": ((None,), torch.int64),
                "memory.task": ((None,), torch.int64)}
        if self.buffer.keep_logits:
            rows["memory.logits"] = ((None, ctx.heads.n_outputs), None)
        return [Group("the count of samples offered to the memory", {"memory.seen": ((), torch.int64)}),
                Group(f"{self.name}'s replay memory", rows, self.memory_kept(at), rows=self.buffer.capacity)]

    def load_state_dict(self, state: dict[str, Tensor], model: nn.Module) -> None:
        unknown = sorted(k for k in state if not k.startswith("memory."))
        if unknown:
            raise ValueError(f"strategy {self.name!r} does not know the state keys {unknown[:3]}")
        buffer = self.make_buffer()
        buffer.load_state_dict({k[len("memory."):]: v for k, v in state.items()})
        check_memory(buffer, model)
        self.buffer = buffer

    def report(self, ctx: Context) -> dict:
        out = super().report(ctx)
        s = self.settings
        budget = s.per_class * ctx.heads.n_outputs if s.per_class else s.memory
        out["memory"] = {"samples": len(self.buffer), "budget": budget, "bytes": self.buffer.nbytes(),
                         "policy": self.buffer.policy}
        return out


def check_memory(b: Buffer, model: nn.Module) -> None:
    """A restored memory's inputs go through ``model`` and its logits (DER) are as wide as its output."""
    if not len(b):
        return
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(b.x[:1].to(next(model.parameters()).device))
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        raise ValueError(f"the memory's inputs {tuple(b.x.shape[1:])} do not fit the model: "
                         f"{str(e).splitlines()[0][:120]}") from None
    finally:
        model.train(was)
    if b.logits is not None and b.logits.shape[1] != out.shape[1]:
        raise ValueError(f"the memory's logits have {b.logits.shape[1]} units, the model {out.shape[1]}")
    if int(b.y[: len(b)].max()) >= out.shape[1] or int(b.y[: len(b)].min()) < 0:
        raise ValueError("the memory's targets are not units of the model")


class ConcatMixing:
    """For a replay strategy with a ``mixing`` setting: with ``concat`` the memory joins each task's
    training set (Hsu et al.'s rehearsal), so the task's data depend on the state."""

    @property
    def data_from_state(self) -> bool:
        return self.settings.mixing == "concat"

    def training_tasks(self, ctx):
        return self.with_memory_task(ctx) if self.settings.mixing == "concat" else [ctx.stream[ctx.task_index]]


class Teacher:
    """A frozen copy of the model as it was when the current task began (LwF, iCaRL), or none during
    the first task. Saved as ``teacher.<name>`` tensors of its ``state_dict``."""

    def __init__(self) -> None:
        self.model: nn.Module | None = None
        self._pending: dict[str, Tensor] | None = None

    def snapshot(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def get(self, like: nn.Module) -> nn.Module | None:
        if self.model is None and self._pending is not None:  # restored from a checkpoint
            self.model = copy.deepcopy(like).eval().requires_grad_(False)
            self.model.load_state_dict(self._pending)
            self._pending = None
        return self.model

    def state_dict(self) -> dict[str, Tensor]:
        if self.model is not None:
            return {f"teacher.{k}": v for k, v in self.model.state_dict().items()}
        return {f"teacher.{k}": v for k, v in (self._pending or {}).items()}

    @staticmethod
    def spec(ctx: Context, at: Position) -> Group:
        """The previous model (the model's tensors under ``teacher.``), taken when a task after the first
        starts: kept in the middle of any task but the first, and at every boundary after the second."""
        from ..state import like

        return like(ctx.model.state_dict(), "teacher.", "the previous model, the teacher",
                    at.done >= 2 or (at.done >= 1 and at.started))

    def load(self, state: dict[str, Tensor], model: nn.Module) -> None:
        """Take a saved teacher, after checking that its tensors are ``model``'s (names, shapes, dtypes)."""
        if state:
            want = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
            have = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
            if want != have:
                diff = sorted(set(want) ^ set(have)) or sorted(k for k in want if want[k] != have[k])
                raise ValueError(f"the teacher model's tensors do not match the model's (first: {diff[0]})")
        self.model, self._pending = None, (state or None)
