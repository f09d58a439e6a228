"""Riemannian Walk (Chaudhry, Dokania, Ajanthan & Torr 2018, "Riemannian Walk for Incremental
Learning: Understanding Forgetting and Intransigence", ECCV, Sec. 4, eqs. 10-11).

Every step, with g the gradient of the unregularized task loss at the step's start and Δθ the
optimizer's change:

    F ← α B g² + (1 − α) F                           EWC++ running Fisher (Sec. 4.1), never reset
    s_task ← s_task − g Δθ / (½ F Δθ² + ε)            path score: loss drop per unit of KL  (eq. 10)

At a task's end the score is averaged with the previous tasks', s ← ½(s + s_task) (s = s_task after
the first task), F and s are each normalized to [0, 1], and while learning the next tasks we minimize

    L(θ) + λ/2 Σ_k (F̂_k + ŝ_k)(θ_k − θ*_k)²          θ* = parameters after the last task  (eq. 11)

(the shared penalty's ½: the paper's and the A-GEM code's λ is our λ/2). F and s are recomputed from
running statistics, so the new weight replaces the old one (no merge); the anchor is the newest θ*.
The maths and the batch-size scaling B g² of the mini-batch Fisher are in
:mod:`lifelong.importance.path`.

Defaults and where they come from:
  - ``alpha=0.9``: the A-GEM code's ``FISHER_EMA_DECAY`` (weight of the *new* Fisher, as in the
    paper's F^t = α F^t_batch + (1 − α) F^{t−1}) and Avalanche's ``ewc_alpha``.
  - ``eps=1e-8``: our choice; the paper asks only for a small ε > 0. Because B g² makes ½ F Δθ² a
    per-sample KL in nats, ε is a KL threshold: steps that change the predictions by much less than
    1e-8 nats count as loss drop / ε (SI-like), larger ones as loss drop / KL. (The A-GEM code uses
    1e-3 with the batch-mean Fisher, which typically dwarfs ½ F Δθ², so its score is close to the path
    integral over a constant; Avalanche uses the float type's machine epsilon.)
  - ``batch_size=128``: the library's default batch size; pass the run's. (An epoch's last, smaller
    batch is scaled by this B too; its weight in the running F is one step's.)

F starts at 0 and is never reset between tasks (as in the A-GEM code; Avalanche starts it at the first
step's value).

Differences from the A-GEM code, on purpose: it accumulates the score over intervals of 10 steps
(Δθ of the interval in the denominator) and clips each interval's term at 0; we add every step's
term, signed, as eq. 10 is written, and clip only the averaged score when normalizing. It normalizes
with (x − min)/(max − min); we divide by the max (equal when the minimum is 0). It scales the
first task's score by 2 and then adds the average to the running score, which we read as the
paper's ½(s_old + s_new) and implement as such.

Use it in your own loop (the hooks in the loop's order)::

    rw = RWalk(lam=1.0, batch_size=64)
    loss = F.cross_entropy(model(x), y) + rw.penalty(model)
    opt.zero_grad(); loss.backward()
    rw.before_step(model); opt.step(); rw.after_step(model)
    ...
    rw.consolidate(model)   # after each task
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..importance.path import ema_fisher_step, rwalk_average_scores, rwalk_importance, rwalk_score_step
from ..penalties import empty_state, merge_sum
from ..scenarios import Task
from .si import PathStrategy, trainable


class RWalk(PathStrategy):
    """RWalk: λ/2 Σ_k (F̂_k + ŝ_k)(θ_k − θ*_k)², with F the running EWC++ Fisher (weight ``alpha`` on
    the newest step, mini-batch square scaled by ``batch_size``) and s the averaged KL-normalized path
    score (damping ``eps``), each normalized to [0, 1]."""

    name = "rwalk"
    _buffers = ("fisher", "score", "task_score", *PathStrategy._buffers)

    hyperparameters = ("lam", "alpha")

    @classmethod
    def from_config(cls, cfg, generator):
        return cls(cfg.lam, alpha=cfg.alpha, batch_size=cfg.batch_size)

    def __init__(self, lam: float = 1.0, *, alpha: float = 0.9, eps: float = 1e-8, batch_size: int = 128):
        super().__init__(lam)
        if not 0.0 < alpha <= 1.0:
            raise UsageError(f"RWalk alpha (the Fisher moving-average weight) must be in (0, 1], got {alpha}")
        if not (math.isfinite(eps) and eps > 0):
            raise UsageError(f"RWalk eps must be a finite number > 0, got {eps}")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise UsageError(f"RWalk batch_size must be an integer >= 1 (the run's batch size), got {batch_size}")
        self.alpha, self.eps, self.batch_size = float(alpha), float(eps), batch_size
        self.fisher: dict[str, Tensor] = {}  # running Fisher F (EWC++), across tasks
        self.score: dict[str, Tensor] = {}  # averaged score of the finished tasks (raw, signed)
        self.task_score: dict[str, Tensor] = {}  # running score of the current task

    def _begin(self, model: nn.Module) -> None:
        if not self.task_score:
            zeros = {n: torch.zeros_like(p) for n, p in trainable(model).items()}
            self.task_score = zeros
            self.fisher = self.fisher or {n: z.clone() for n, z in zeros.items()}

    def after_step(self, model: nn.Module) -> None:
        """F ← α B g² + (1 − α) F, then s_task ← s_task − g Δθ / (½ F Δθ² + ε) (about 9 multi-tensor
        kernels)."""
        names, grads, delta = self._take_step(model)
        fisher = ema_fisher_step([self.fisher[n] for n in names], grads, self.alpha, self.batch_size)
        score = rwalk_score_step([self.task_score[n] for n in names], grads, delta, fisher, self.eps)
        self.fisher, self.task_score = dict(zip(names, fisher)), dict(zip(names, score))

    def consolidate(self, model: nn.Module, data: Iterable | None = None) -> dict[str, Tensor]:
        """End of a task: s ← ½(s + s_task), Ω = F̂ + ŝ anchored at θ, s_task ← 0. Returns Ω."""
        self._begin(model)
        self.score = rwalk_average_scores(self.score, self.task_score)
        importance = rwalk_importance(self.fisher, self.score)
        anchor = {n: p.detach() for n, p in trainable(model).items()}
        self.state = merge_sum(empty_state(), importance, anchor)  # a fresh quadratic: replaces the old
        self.task_score = {n: torch.zeros_like(s) for n, s in self.task_score.items()}
        return importance

