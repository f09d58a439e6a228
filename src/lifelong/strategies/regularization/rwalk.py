"""Riemannian Walk (Chaudhry, Dokania, Ajanthan & Torr 2018, "Riemannian Walk for Incremental
Learning: Understanding Forgetting and Intransigence", ECCV, Sec. 4, eqs. 10-11).

With g the gradient of the task loss at a step's start, Δθ the optimizer's change and B the batch's
real size, over intervals of ``update_every`` steps (Chaudhry et al.'s code, facebookresearch/agem):

    every step:      S ← S + B g²,   ω ← ω − g Δθ                       (interval sums)
    interval's end:  F ← (1 − α) F + α S / n                            EWC++ running Fisher (Sec. 4.1)
                     s_task ← s_task + ω / (½ F Δθ_interval² + ε)        path score: loss drop per KL (eq. 10)
                     S, ω ← 0

F is never reset between tasks. At a task's end the last, partial interval is closed the same way,
the score is averaged with the previous tasks', s ← ½(s + s_task) (s = s_task after the first task),
F and s are each normalized to [0, 1], and while learning the next tasks we minimize

    L(θ) + λ/2 Σ_k (F̂_k + ŝ_k)(θ_k − θ*_k)²          θ* = parameters after the last task  (eq. 11)

(the shared penalty's ½: the paper's and the A-GEM code's λ is our λ/2). F and s are recomputed from
running statistics, so the new weight replaces the old one (no merge); the anchor is the newest θ*.
The maths and the batch-size scaling B g² of the mini-batch Fisher are in
:mod:`lifelong.importance.path`.

Defaults and where they come from:
  - ``alpha=0.9``: the A-GEM code's ``FISHER_EMA_DECAY`` (weight of the *new* Fisher, as in the
    paper's F^t = α F^t_batch + (1 − α) F^{t−1}) and Avalanche's ``ewc_alpha``.
  - ``update_every=10``: the A-GEM code's ``fisher_update_after``. With 1, F's moving average is
    essentially the last mini-batch's square (α = 0.9 on one batch) and the score is eq. 10 per step.
  - ``eps=1e-8``: our choice; the paper asks only for a small ε > 0. Because B g² makes ½ F Δθ² a
    per-sample KL in nats, ε is a KL threshold: intervals that change the predictions by much less
    than 1e-8 nats count as loss drop / ε (SI-like), larger ones as loss drop / KL. (The A-GEM code
    uses 1e-3 with the batch-mean Fisher, which typically dwarfs ½ F Δθ², so its score is close to the
    path integral over a constant; Avalanche uses the float type's machine epsilon.)

Differences from the A-GEM code, on purpose: it clips each interval's score term at 0; we add them
signed, as eq. 10 is written, and clip only the averaged score when normalizing. Its first interval
sums 9 squares instead of 10 and divides by 10; ours sums and divides by the same count. Its
per-interval denominator uses F before the interval's update; ours after it (so the first interval of
a run has a Fisher instead of zeros). It normalizes with (x − min)/(max − min); we divide by the max
(equal when the minimum is 0). It scales the first task's score by 2 and then adds the average to
the running score, which we read as the paper's ½(s_old + s_new) and implement as such.

In your own loop the steps are the Learner's (``cl.before_step(batch)``, ``cl.after_step(batch)``):
see :class:`lifelong.Learner`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from ...importance.path import (
    accumulate_sq,
    copy_tensors,
    ema_fisher_update,
    rwalk_average_scores,
    rwalk_importance,
    rwalk_interval_score,
    si_step,
)
from ...penalties import empty_state, merge_sum
from ...settings import Settings, setting
from ..base import Context, Step
from ..state import Group
from .base import convention_setting, lam_setting, model_of, trainable
from .si import PathStrategy


@dataclass(frozen=True)
class RWalkSettings(Settings):
    lam: float = lam_setting()
    alpha: float = setting(0.9, check=lambda v: 0.0 < v <= 1.0, must="be in (0, 1]",
                           help="RWalk: weight of the newest interval's Fisher in the running average")
    update_every: int = setting(10, flag="update-every", check=lambda v: v >= 1, must="be >= 1",
                                help="RWalk: steps per interval; the running Fisher and the score are updated "
                                     "once per interval")
    eps: float = setting(1e-8, flag="rwalk-eps", check=lambda v: v > 0, must="be > 0",
                         help="RWalk: ε in the score's denominator ½ F Δθ² + ε (a KL in nats)")
    convention: str = convention_setting()


class RWalk(PathStrategy):
    """RWalk: λ/2 Σ_k (F̂_k + ŝ_k)(θ_k − θ*_k)², with F the running EWC++ Fisher (interval means of the
    real-batch-size-scaled mini-batch squares, weight ``alpha`` on the newest) and s the averaged
    KL-normalized path score (damping ``eps``), each normalized to [0, 1]."""

    name = "rwalk"
    Settings = RWalkSettings
    _buffers = ("fisher", "score", "task_score", "interval_sq", "interval_omega", "interval_start")
    _buffer_when = {"fisher": "trained", "score": "done"}  # across tasks; the others within one

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fisher: dict[str, Tensor] = {}  # running Fisher F (EWC++), across tasks
        self.score: dict[str, Tensor] = {}  # averaged score of the finished tasks (raw, signed)
        self.task_score: dict[str, Tensor] = {}  # running score of the current task
        self.interval_sq: dict[str, Tensor] = {}  # Σ B g² over the current interval
        self.interval_omega: dict[str, Tensor] = {}  # −Σ g Δθ over the current interval
        self.interval_start: dict[str, Tensor] = {}  # θ at the interval's start
        self.interval_steps = 0  # steps in the current interval (a Python int: no device read per step)

    def _begin(self, model: nn.Module) -> None:
        if not self.task_score:
            params = trainable(model)
            zeros = {n: torch.zeros_like(p) for n, p in params.items()}
            self.task_score = zeros
            self.fisher = {n: self.fisher.get(n, z) for n, z in zeros.items()}
            self._new_interval(params)

    def _new_interval(self, params: dict[str, Tensor]) -> None:
        self.interval_sq = {n: torch.zeros_like(p) for n, p in params.items()}
        self.interval_omega = {n: torch.zeros_like(p) for n, p in params.items()}
        self.interval_start = dict(zip(params, copy_tensors(list(params.values()))))
        self.interval_steps = 0

    def after_step(self, ctx: Context, step: Step) -> None:
        """S ← S + B g², ω ← ω − g Δθ (two multi-tensor kernels), B the step's batch size; every
        ``update_every`` steps, close the interval (about 8 more kernels)."""
        model = model_of(ctx)
        start = step.aux.get(f"{self.name}.theta", {})
        names, grads, delta = self._take_step(model, step)
        for n in names:  # a parameter that became trainable mid-stream joins with zero sums
            if n not in self.interval_sq:
                zero = torch.zeros_like(start[n])
                self.interval_sq[n], self.interval_omega[n], self.interval_start[n] = zero, zero, start[n]
                self.task_score[n], self.fisher[n] = zero, self.fisher.get(n, zero)
        B = int(step.batch.y.shape[0])
        self.interval_sq = {**self.interval_sq, **dict(zip(names, accumulate_sq([self.interval_sq[n] for n in names], grads, B)))}
        self.interval_omega = {**self.interval_omega,
                               **dict(zip(names, si_step([self.interval_omega[n] for n in names], grads, delta)))}
        self.interval_steps += 1
        if self.interval_steps >= self.settings.update_every:
            self._close_interval(model)

    def _close_interval(self, model: nn.Module) -> None:
        n = self.interval_steps
        if n == 0:
            return
        params = trainable(model)
        names = [k for k in params if k in self.interval_sq]
        s = self.settings
        fisher = ema_fisher_update([self.fisher[k] for k in names], [self.interval_sq[k] for k in names], n, s.alpha)
        delta = torch._foreach_sub([params[k].detach() for k in names], [self.interval_start[k] for k in names])
        score = rwalk_interval_score([self.task_score[k] for k in names], [self.interval_omega[k] for k in names],
                                     delta, fisher, s.eps)
        self.fisher = {**self.fisher, **dict(zip(names, fisher))}
        self.task_score = {**self.task_score, **dict(zip(names, score))}
        self._new_interval(params)

    def state_dict(self) -> dict[str, Tensor]:
        return {**super().state_dict(), "interval_steps": torch.tensor(self.interval_steps, dtype=torch.int64)}

    def state_spec(self, ctx, at):
        return [*super().state_spec(ctx, at), Group("rwalk's step count", {"interval_steps": ((), torch.int64)})]

    def load_state_dict(self, state: dict[str, Tensor], model: nn.Module) -> None:
        state = dict(state)
        steps = state.pop("interval_steps", None)
        if steps is not None and (steps.dim() != 0 or int(steps) < 0):
            raise ValueError("rwalk's interval_steps must be a count (a 0-d int64 tensor >= 0)")
        super().load_state_dict(state, model)
        self.interval_steps = 0 if steps is None else int(steps)

    def consolidate(self, model: nn.Module, data: Iterable | None = None, *,
                    generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """End of a task: close the last interval, s ← ½(s + s_task), Ω = F̂ + ŝ anchored at θ. Returns
        Ω. The task's running sums are dropped (the next task makes them afresh): between tasks the
        state is F, s and the penalty."""
        model = model_of(model)
        self._begin(model)
        self._close_interval(model)
        self.score = rwalk_average_scores(self.score, self.task_score)
        importance = rwalk_importance(self.fisher, self.score)
        params = dict(model.named_parameters())
        anchor = {n: params[n].detach() for n in importance}
        self.state = merge_sum(empty_state(), importance, anchor)  # a fresh quadratic: replaces the old
        self.task_score, self.interval_sq, self.interval_omega, self.interval_start = {}, {}, {}, {}
        return importance
