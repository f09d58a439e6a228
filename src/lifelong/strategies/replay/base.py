"""What the replay family shares: a memory budget, a buffer in the strategy state, and a teacher.

Every replay method keeps a :class:`~lifelong.strategies.replay.buffer.Buffer` whose tensors are the
strategy's state under ``memory.`` (saved in checkpoints without pickle, resumed bit for bit). The
budget is ``--memory N`` samples in all (or ``--memory-per-class K``); ``--memory-policy`` chooses how
it is filled (reservoir sampling every step, or a class- or task-balanced choice at each task's end).

Distillation methods (LwF, iCaRL) also keep a *teacher*: a frozen copy of the model as it was when the
current task began, saved under ``teacher.`` so that a resumed task distils from the same model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import UsageError
from ...scenarios import Batch
from ..base import Context, Strategy
from ..settings import Settings, setting
from .buffer import POLICIES, Buffer

MAX_MEMORY = 100_000_000


@dataclass(frozen=True)
class MemorySettings(Settings):
    memory: int = setting(1000, flag="--memory", check=lambda v: v >= 1, must="be a number of samples >= 1",
                          maximum=MAX_MEMORY, help="the replay memory's budget in samples, over all tasks")
    per_class: int = setting(0, flag="--memory-per-class", check=lambda v: v >= 0, must="be >= 0", maximum=MAX_MEMORY,
                             help="keep this many samples of every class instead of a total (0: --memory is the "
                                  "total); needs --memory-policy class")
    policy: str = setting("reservoir", flag="--memory-policy", choices=POLICIES,
                          help="how the memory is filled: reservoir (every step, a uniform sample of the stream), "
                               "class or task (at each task's end, the budget split equally between the classes "
                               "or tasks seen so far)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.per_class and self.policy != "class":
            raise UsageError("--memory-per-class needs --memory-policy class (a budget per class is a class-balanced "
                             "choice)")


def check_concat(settings) -> None:
    """``--replay-mixing concat`` trains on the memory as a fixed data set: it cannot be a reservoir."""
    if settings.mixing == "concat" and settings.policy == "reservoir":
        raise UsageError("--replay-mixing concat needs a memory fixed during a task: --memory-policy class or task")


def concat(*batches: Batch) -> Batch:
    """Batches joined sample-wise (current samples first)."""
    return Batch(*(torch.cat(parts) for parts in zip(*batches)))


class Replay(Strategy):
    """The base of the replay family: a buffer built from the settings, kept in the state."""

    Settings = MemorySettings

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = self.make_buffer()
        self._n = 0  # samples of the current batch at the front of a prepared batch

    def make_buffer(self) -> Buffer:
        s = self.settings
        return Buffer(MAX_MEMORY if s.per_class else s.memory, s.policy, per_class=s.per_class)

    # ---- hooks most replay methods share -------------------------------------------------------------
    def with_memory(self, ctx: Context, batch: Batch, n: int) -> Batch:
        """``batch`` followed by ``n`` distinct random samples of the memory (none while it is empty)."""
        self._n = len(batch.y)
        if not len(self.buffer) or n <= 0:
            return batch
        return concat(batch, self.buffer.batch(self.buffer.sample(n, ctx.generator, ctx.device)))

    def with_memory_task(self, stream, i: int) -> list:
        """Task i's data and, once there is a memory, the memory repeated ⌊N / budget⌋ times (at least
        once) so that old and new samples are about 1 : 1 (Hsu et al.'s ``Naive_Rehearsal``)."""
        if not len(self.buffer):
            return [stream[i]]
        repeats = max(len(stream[i].train) // self.buffer.capacity, 1)
        return [stream[i], self.buffer.as_task(len(stream), repeats)]

    def memory_loss(self, ctx: Context, mem: Batch) -> Tensor:
        """Cross-entropy of memory samples over their live units (A-GEM's and GEM's reference losses)."""
        logits = self.forward(ctx, mem.x, mem.task)
        return F.cross_entropy(ctx.heads.logits(logits, mem.task, ctx.task_index), mem.y)

    def current(self, batch: Batch) -> Batch:
        """The current task's samples of a prepared batch."""
        return Batch(*(t[: self._n] for t in batch))

    def after_step(self, ctx: Context, batch: Batch) -> None:
        if self.buffer.policy == "reservoir":
            self.buffer.add_reservoir(self.current(batch), ctx.generator)

    def after_task(self, ctx: Context) -> None:
        if self.buffer.policy != "reservoir":
            self.buffer.select(ctx.task, ctx.heads.n_outputs, ctx.generator)

    # ---- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        return {f"memory.{k}": v for k, v in self.buffer.state_dict().items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        unknown = sorted(k for k in state if not k.startswith("memory."))
        if unknown:
            raise ValueError(f"strategy {self.name!r} does not know the state keys {unknown[:3]}")
        buffer = self.make_buffer()
        buffer.load_state_dict({k[len("memory."):]: v for k, v in state.items()})
        self.buffer = buffer

    def check_state(self, model: nn.Module) -> None:
        """A restored memory's inputs go through ``model`` and its logits (DER) are as wide as its output."""
        b = self.buffer
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

    def memory_report(self) -> dict:
        return {"samples": len(self.buffer), "bytes": self.buffer.nbytes(), "policy": self.buffer.policy}


class ConcatMixing:
    """For a replay strategy with a ``mixing`` setting: with ``concat`` the memory joins each task's
    training set (Hsu et al.'s rehearsal), so the task's data depend on the state."""

    @property
    def data_from_state(self) -> bool:
        return self.settings.mixing == "concat"

    def training_tasks(self, stream, i):
        return self.with_memory_task(stream, i) if self.settings.mixing == "concat" else [stream[i]]


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

    def load(self, state: dict[str, Tensor]) -> None:
        self.model, self._pending = None, (state or None)

    def check(self, model: nn.Module) -> None:
        if self._pending is None:
            return
        want = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
        have = {k: (tuple(v.shape), v.dtype) for k, v in self._pending.items()}
        if want != have:
            diff = sorted(set(want) ^ set(have)) or sorted(k for k in want if want[k] != have[k])
            raise ValueError(f"the teacher model's tensors do not match the model's (first: {diff[0]})")


def split_state(state: dict[str, Tensor], *prefixes: str) -> list[dict[str, Tensor]]:
    """``state`` split by key prefix (``"memory."``, ``"teacher."``), prefixes removed; other keys are an error."""
    out: list[dict[str, Tensor]] = [{} for _ in prefixes]
    for k, v in state.items():
        for i, p in enumerate(prefixes):
            if k.startswith(p):
                out[i][k[len(p):]] = v
                break
        else:
            raise ValueError(f"unknown state key {k!r}")
    return out
