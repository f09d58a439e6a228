"""GDumb (Prabhu, Torr & Dokania 2020, ECCV, "GDumb: A simple approach that questions our progress in
continual learning"): a greedy class-balanced memory, and a model trained **from scratch on the memory
alone** before every evaluation.

When task i begins, its training samples join the memory (the budget split equally between the classes
seen so far, :func:`~lifelong.strategies.replay.buffer.balanced_selection`), the model goes back to its
initial weights, and the task's training runs on the memory only (``--epochs`` passes over it). The
memory's make-up is that of the paper's greedy sampler (each class ⌊K / classes⌋ samples, or all it
has); which samples of a class stay is random here, where the greedy sampler keeps the first ones of
the stream. The paper's cutmix and SGDR schedule are not part of the method and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import split_state
from ..state import like
from .base import MemorySettings, Replay, policy_setting


@dataclass(frozen=True)
class GDumbSettings(MemorySettings):
    policy: str = policy_setting("class")

    def check(self) -> None:
        super().check()
        if self.policy not in ("class", "task"):
            self.fail("policy", f"must be 'class' (or 'task'): gdumb fills its memory class-balanced, got {self.policy!r}")


class GDumb(Replay):
    """GDumb: a balanced memory, and a model retrained from its initial weights on it alone."""

    name = "gdumb"
    Settings = GDumbSettings
    data_from_state = True
    needs_boundaries = ("it takes a whole task into its memory when the task starts and trains on it: on a task-free "
                        "stream it would see the whole stream before learning; use er")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init: dict[str, torch.Tensor] | None = None

    def before_task(self, ctx):
        if self.init is None:
            self.init = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        self.buffer.select(ctx.task, ctx.heads.n_outputs, ctx.generator)
        ctx.model.load_state_dict(self.init)  # from scratch

    def training_tasks(self, ctx):
        return [self.buffer.as_task(len(ctx.stream))]

    def after_task(self, ctx):
        pass

    def state_dict(self):
        state = super().state_dict()
        if self.init is not None:
            state.update({f"init.{k}": v for k, v in self.init.items()})
        return state

    def memory_kept(self, at):
        return at.trained  # chosen when each task starts

    def state_spec(self, ctx, at):
        init = like(ctx.model.state_dict(), "init.", "gdumb's initial weights (each task trains from them)", at.trained)
        return [*super().state_spec(ctx, at), init]

    def load_state_dict(self, state, model):
        memory, init = split_state(state, "memory.", "init.")
        super().load_state_dict({f"memory.{k}": v for k, v in memory.items()}, model)
        if init:
            want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
            if want != {k: tuple(v.shape) for k, v in init.items()}:
                raise ValueError("gdumb's initial weights do not match the model's tensors")
        self.init = init or None
