"""The strategy hooks the training loop calls, in this order, for each task i of a stream:

    training_tasks(stream, i)   which tasks' data to train on (joint: all seen so far)
    before_task(model, task)
    per step:  CE.backward();  add_penalty_grad(model);  before_step(model);  optimizer step;  after_step(model)
    after_task(model, task, data)   consolidate (EWC: Fisher at θ*, merged into the penalty)

A strategy's state is ``state_dict()``: a flat ``dict[str, Tensor]``, saved without pickle.
A new method is a new small subclass, not a new flag.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..penalties import add_quadratic_grad_, empty_state, quadratic_penalty, state_from_tensors, state_tensors
from ..scenarios import Task, TaskStream


class Strategy:
    """Naive fine-tuning: train on each task in turn with no protection (the lower bound)."""

    name = "naive"
    hyperparameters: tuple[str, ...] = ()  # RunConfig fields that are this strategy's own settings

    @classmethod
    def from_config(cls, cfg, generator: torch.Generator) -> "Strategy":
        """Build from a RunConfig: the constructor takes ``hyperparameters`` as keyword arguments (the
        sweep reads the same tuple to know which settings belong to which strategy)."""
        return cls(**{k: getattr(cfg, k) for k in cls.hyperparameters})

    def training_tasks(self, stream: TaskStream, i: int) -> Sequence[Task]:
        return [stream[i]]

    def before_task(self, model: nn.Module, task: Task) -> None:
        pass

    def penalty(self, model: nn.Module) -> Tensor | None:
        return None

    def add_penalty_grad(self, model: nn.Module) -> None:
        """After the task loss's backward: add d penalty/dθ to ``p.grad``. By default through autograd;
        a strategy that knows its penalty's gradient in closed form adds it directly (faster)."""
        pen = self.penalty(model)
        if pen is not None:
            pen.backward()

    def before_step(self, model: nn.Module) -> None:
        """After backward, before the optimizer step: ``p.grad`` holds d(CE + penalty)/dθ."""

    def after_step(self, model: nn.Module) -> None:
        """After the optimizer step."""

    def after_task(self, model: nn.Module, task: Task, data: Iterable) -> None:
        """``data`` yields ``(x, y, mask)`` batches of the task's training split."""

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            raise ValueError(f"strategy {self.name!r} keeps no state, got keys {sorted(state)[:3]}")

    def divergence_hint(self, optimizer: str, lr: float) -> str:
        return f"the learning rate is probably too large for this model: lower --lr (now {lr:g})"


class Naive(Strategy):
    name = "naive"


class Joint(Strategy):
    """Joint multi-task training, the upper bound: when task i arrives, train on the union of the
    training data of tasks 0..i (mixed in every mini-batch), continuing from the current model."""

    name = "joint"

    def training_tasks(self, stream: TaskStream, i: int) -> Sequence[Task]:
        return list(stream.tasks[: i + 1])


class Regularizer(Strategy):
    """The shared part of EWC, online EWC, SI, MAS, RWalk and L2: the quadratic penalty

        λ/2 Σ_i Ω_i (θ_i − θ̄_i)²  (+ λ/2 · offset)           (lifelong.penalties, eq. 1)

    with its state ``self.state`` (importance, anchor, offset). A subclass says how Ω is computed
    and merged at the end of a task (``consolidate``). Running tensors a subclass keeps between steps
    (SI's ω, RWalk's Fisher...) are ``{param name: tensor}`` dict attributes named in ``_buffers``;
    ``state_dict`` saves them under ``"<buffer>.<param name>"`` next to ``"penalty.*"``.
    """

    name = "regularizer"
    importance_symbol = "Omega"  # how divergence messages name Ω (EWC: F, the Fisher)
    _buffers: tuple[str, ...] = ()

    def __init__(self, lam: float = 1.0):
        if not (math.isfinite(lam) and lam >= 0):
            raise UsageError(f"{self.name} lambda must be a finite number >= 0, got {lam}")
        self.lam = float(lam)
        self.state = empty_state()

    def penalty(self, model: nn.Module) -> Tensor:
        """λ/2 Σ_i Ω_i (θ_i − θ̄_i)² (+ the constant of merged tasks); 0 before the first task."""
        return quadratic_penalty(dict(model.named_parameters()), self.state, self.lam)

    def add_penalty_grad(self, model: nn.Module) -> None:
        """``p.grad += λ Ω (θ − θ̄)``: the penalty's gradient in closed form, no autograd."""
        add_quadratic_grad_(dict(model.named_parameters()), self.state, self.lam)

    def consolidate(self, model: nn.Module, data: Iterable | None = None) -> dict[str, Tensor]:
        """End of a task: compute this task's importance at θ* and merge it into the penalty."""
        raise NotImplementedError

    def after_task(self, model: nn.Module, task: Task, data: Iterable) -> None:
        self.consolidate(model, data)

    def state_dict(self) -> dict[str, Tensor]:
        out = state_tensors(self.state, "penalty.")
        for key in self._buffers:
            out.update({f"{key}.{n}": t for n, t in getattr(self, key).items()})
        return out

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        known = ("penalty.", *(f"{key}." for key in self._buffers))
        unknown = sorted(k for k in state if not k.startswith(known))
        if unknown:
            raise ValueError(f"strategy {self.name!r} does not know the state keys {unknown[:3]}")
        self.state = state_from_tensors(state, "penalty.")
        for key in self._buffers:
            setattr(self, key, {k[len(key) + 1 :]: t for k, t in state.items() if k.startswith(f"{key}.")})

    def divergence_hint(self, optimizer: str, lr: float) -> str:
        imp = self.state["importance"]
        if not imp:
            return super().divergence_hint(optimizer, lr)
        wmax = max(float(t.max()) for t in imp.values())
        if optimizer == "sgd":
            return (
                f"with SGD the {self.name} penalty is stable only if lambda x lr x max({self.importance_symbol}) < 2, here "
                f"{self.lam:g} x {lr:g} x {wmax:.3g} = {self.lam * lr * wmax:.3g}: lower --lambda or --lr"
            )
        return (
            f"{self.name} lambda={self.lam:g} with max({self.importance_symbol})={wmax:.3g} may be too large: "
            "lower --lambda or --lr"
        )
