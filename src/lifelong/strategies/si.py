"""Synaptic Intelligence (Zenke, Poole & Ganguli 2017, "Continual Learning Through Synaptic
Intelligence", ICML, eqs. 3-5).

While training on task μ, every parameter accumulates how much its movement lowered the task loss,
ω_k^μ = −Σ_t g_k(t) Δθ_k(t) (eq. 3), with g the gradient of the unregularized task loss at the step's
start and Δθ the optimizer's change. At the task's end

    Ω ← max(0, Ω + ω^μ / ((Δ^μ)² + ξ)),   Δ^μ = θ_end − θ_start of task μ          (eq. 5, clipped)

anchored at θ_end, and while learning the next tasks minimize

    L(θ) + λ/2 Σ_k Ω_k (θ_k − θ_end,k)²                       (eq. 4, with the shared penalty's ½)

So Zenke et al.'s strength c is our λ/2. The maths, the clipping and the sources are in
:mod:`lifelong.importance.path`. Summed importance and newest anchor is
:func:`lifelong.penalties.merge_decay` with γ = 1. ω is recovered from ``p.grad`` without a second
backward pass, at O(parameters) per step.

ξ: the default 0.1 is Hsu et al. 2018's ``damping_factor`` (GT-RIPL/Continual-Learning-Benchmark,
``agents/regularization.py``) and the authors' own value for permuted MNIST (the result file of
ganguli-lab/pathint ``fig_permuted_mnist`` is named ``xi=0.1``); they used ξ = 1e-3 for split CIFAR.

Use it in your own loop (the hooks in the loop's order)::

    si = SI(lam=1.0)
    loss = F.cross_entropy(model(x), y) + si.penalty(model)
    opt.zero_grad(); loss.backward()
    si.before_step(model); opt.step(); si.after_step(model)
    ...
    si.consolidate(model)   # after each task
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..importance.path import copy_tensors, si_consolidate, si_step, unregularized_grads
from ..penalties import detach_params
from ..scenarios import Task
from .base import Regularizer


def trainable(model: nn.Module) -> dict[str, Tensor]:
    """The parameters an optimizer moves: ``{name: p}`` for ``p.requires_grad``."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


class PathStrategy(Regularizer):
    """What SI and RWalk share: a quadratic penalty, and per step the task-loss gradient g and the
    parameters θ before the optimizer step (kept only between ``before_step`` and ``after_step``).

    State is plain tensors, never updated in place, so a ``state_dict()`` taken earlier stays valid.
    """

    _buffers: tuple[str, ...] = ("step_grad", "step_theta")

    def __init__(self, lam: float):
        super().__init__(lam)
        self.step_grad: dict[str, Tensor] = {}  # g at the pending step's start
        self.step_theta: dict[str, Tensor] = {}  # θ at the pending step's start

    def _begin(self, model: nn.Module) -> None:
        """Set up the running tensors of a task, unless one is under way (so a resumed run keeps them)."""

    def before_task(self, model: nn.Module, task: Task) -> None:
        self._begin(model)

    def before_step(self, model: nn.Module) -> None:
        """Remember g = p.grad − ∂P/∂θ and θ (one multi-tensor kernel each)."""
        self._begin(model)
        params = trainable(model)
        grads = unregularized_grads(params, self.state, self.lam)
        theta = copy_tensors(list(params.values()))
        self.step_grad, self.step_theta = dict(zip(params, grads)), dict(zip(params, theta))

    def _take_step(self, model: nn.Module) -> tuple[list[str], list[Tensor], list[Tensor]]:
        """Names, g and Δθ = θ_now − θ_before of the step just taken; clears the pending step."""
        if not self.step_theta:
            raise RuntimeError(
                f"{self.name}: after_step without before_step; call strategy.before_step(model) after "
                "backward and before optimizer.step()"
            )
        names = list(self.step_theta)
        params = dict(model.named_parameters())
        delta = torch._foreach_sub([params[n].detach() for n in names], [self.step_theta[n] for n in names])
        grads = [self.step_grad[n] for n in names]
        self.step_grad, self.step_theta = {}, {}
        return names, grads, delta


class SI(PathStrategy):
    """Synaptic Intelligence: λ/2 Σ_k Ω_k (θ_k − θ_end,k)², Ω the clipped sum over past tasks of
    ω/(Δ² + ξ) (Zenke et al. 2017, eqs. 3-5); ``xi`` is the damping ξ."""

    name = "si"
    _buffers = ("omega", "start", *PathStrategy._buffers)

    hyperparameters = ("lam", "xi")

    def __init__(self, lam: float = 1.0, *, xi: float = 0.1):
        super().__init__(lam)
        if not (math.isfinite(xi) and xi > 0):
            raise UsageError(f"SI xi (the damping) must be a finite number > 0, got {xi}")
        self.xi = float(xi)
        self.omega: dict[str, Tensor] = {}  # running ω of the current task
        self.start: dict[str, Tensor] = {}  # θ at the current task's start

    def _begin(self, model: nn.Module) -> None:
        """Set θ_start and ω = 0 unless a task is already under way (so resuming keeps them)."""
        if not self.start:
            params = trainable(model)
            self.start = detach_params(params)
            self.omega = {n: torch.zeros_like(p) for n, p in params.items()}

    def after_step(self, model: nn.Module) -> None:
        """ω ← ω − g Δθ (one multi-tensor kernel)."""
        names, grads, delta = self._take_step(model)
        self.omega = dict(zip(names, si_step([self.omega[n] for n in names], grads, delta)))

    def consolidate(self, model: nn.Module, data: Iterable | None = None) -> dict[str, Tensor]:
        """End of a task: Ω ← max(0, Ω + ω/(Δ² + ξ)), anchor and next θ_start ← θ, ω ← 0. Returns the
        task's ω."""
        self._begin(model)
        end = detach_params(trainable(model))
        omega = self.omega
        self.state = si_consolidate(self.state, omega, self.start, end, self.xi)
        self.start = end
        self.omega = {n: torch.zeros_like(w) for n, w in omega.items()}
        return omega

