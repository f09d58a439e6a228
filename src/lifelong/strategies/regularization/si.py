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
:func:`lifelong.penalties.merge_decay` with γ = 1. g is read from ``p.grad`` in ``after_backward``,
before the loop adds the penalty's gradient: the task-loss gradient itself, with no second backward
pass and no subtraction (which would lose precision in float32 at large λ), at O(parameters) per step.

ξ: the default 0.1 is Hsu et al. 2018's ``damping_factor`` (GT-RIPL/Continual-Learning-Benchmark,
``agents/regularization.py``) and the authors' own value for permuted MNIST (the result file of
ganguli-lab/pathint ``fig_permuted_mnist`` is named ``xi=0.1``); they used ξ = 1e-3 for split CIFAR.

In your own loop the steps are the Learner's (``cl.before_step(batch)`` runs after_backward and
add_penalty_grad, ``cl.after_step(batch)`` the path integral): see :class:`lifelong.Learner`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from ...importance.path import copy_tensors, si_consolidate, si_step
from ...penalties import detach_params
from ...settings import Settings, setting
from ..base import Context, Step
from .base import Regularizer, convention_setting, lam_setting, model_of, trainable


class PathStrategy(Regularizer):
    """What SI and RWalk share: a quadratic penalty, and per step the task-loss gradient g and the
    parameters θ before the optimizer step, which ``after_backward`` leaves in the step record
    (``step.aux["<name>.grad"]``, ``["<name>.theta"]``) for ``after_step``.

    State is plain tensors, never updated in place, so a ``state_dict()`` taken earlier stays valid.
    The set of trainable parameters may change between tasks (a layer frozen or unfrozen): running
    tensors are (re)made for the parameters trainable when a task starts.
    """

    def _begin(self, model: nn.Module) -> None:
        """Set up the running tensors of a task, unless one is under way (so a resumed run keeps them)."""

    def before_task(self, ctx: Context) -> None:
        self._begin(model_of(ctx))

    def after_backward(self, ctx: Context, step: Step) -> None:
        """Keep g = p.grad (the task-loss gradient: the penalty's is not added yet) and θ in the step
        record, one multi-tensor copy each; a trainable parameter without a gradient has g = 0."""
        model = model_of(ctx)
        self._begin(model)
        params = trainable(model)
        grads = copy_tensors([p.grad if p.grad is not None else torch.zeros_like(p) for p in params.values()])
        theta = copy_tensors(list(params.values()))
        step.aux[f"{self.name}.grad"], step.aux[f"{self.name}.theta"] = dict(zip(params, grads)), dict(zip(params, theta))

    def _take_step(self, model: nn.Module, step: Step) -> tuple[list[str], list[Tensor], list[Tensor]]:
        """Names, g and Δθ = θ_now − θ_before of the step just taken."""
        theta = step.aux.get(f"{self.name}.theta")
        if theta is None:
            raise RuntimeError(f"{self.name}: after_step without after_backward in the same step")
        grad = step.aux[f"{self.name}.grad"]
        names = list(theta)
        params = dict(model.named_parameters())
        delta = torch._foreach_sub([params[n].detach() for n in names], [theta[n] for n in names])
        return names, [grad[n] for n in names], delta


@dataclass(frozen=True)
class SISettings(Settings):
    lam: float = lam_setting()
    xi: float = setting(0.1, flag="xi", check=lambda v: v > 0, must="be > 0", help="SI damping ξ in Ω += ω / (Δθ² + ξ)")
    convention: str = convention_setting()


class SI(PathStrategy):
    """Synaptic Intelligence: λ/2 Σ_k Ω_k (θ_k − θ_end,k)², Ω the clipped sum over past tasks of
    ω/(Δ² + ξ) (Zenke et al. 2017, eqs. 3-5); ``xi`` is the damping ξ."""

    name = "si"
    Settings = SISettings
    _buffers = ("omega", "start")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.omega: dict[str, Tensor] = {}  # running ω of the current task
        self.start: dict[str, Tensor] = {}  # θ at the current task's start

    def _begin(self, model: nn.Module) -> None:
        """Set θ_start and ω = 0 unless a task is already under way (so resuming keeps them)."""
        if not self.start:
            params = trainable(model)
            self.start = detach_params(params)
            self.omega = {n: torch.zeros_like(p) for n, p in params.items()}

    def after_step(self, ctx: Context, step: Step) -> None:
        """ω ← ω − g Δθ (one multi-tensor kernel). A parameter that became trainable mid-task starts at ω = 0."""
        model = model_of(ctx)
        names, grads, delta = self._take_step(model, step)
        params = dict(model.named_parameters())
        for n in names:
            if n not in self.omega:
                self.omega[n] = torch.zeros_like(params[n])
                self.start[n] = params[n].detach().clone()
        self.omega = {**self.omega, **dict(zip(names, si_step([self.omega[n] for n in names], grads, delta)))}

    def consolidate(self, model: nn.Module, data: Iterable | None = None, *,
                    generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """End of a task: Ω ← max(0, Ω + ω/(Δ² + ξ)) anchored at θ. Returns the task's ω. Parameters
        frozen now keep what they earned while they were trainable. The running ω and θ_start are
        dropped (the next task makes them afresh, from the parameters trainable then), so between
        tasks the state is the penalty alone."""
        model = model_of(model)
        self._begin(model)
        params = dict(model.named_parameters())
        end = {n: params[n].detach().clone() for n in self.omega}
        omega = self.omega
        self.state = si_consolidate(self.state, omega, self.start, end, self.settings.xi)
        self.start, self.omega = {}, {}
        return omega
