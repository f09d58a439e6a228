"""L2 regularization towards the previous parameters: the quadratic penalty with uniform importance.

After each task, anchor at θ* and, while learning the next tasks, minimize

    L(θ) + λ/2 ‖θ − θ*‖²  =  L(θ) + λ/2 Σ_i 1 · (θ_i − θ*_i)²

the shared penalty (:func:`lifelong.penalties.quadratic_penalty`) with Ω = 1 for every trainable
parameter. It is the baseline of Kirkpatrick et al. 2017 (PNAS, Fig. 2A, "L2") and of Hsu, Liu,
Ramasamy & Kira 2018 ("Re-evaluating continual learning scenarios", GT-RIPL/Continual-Learning-Benchmark,
``agents/regularization.py``, class ``L2`` with ``online_reg=True``): one importance, the latest
parameters, so only the newest θ* is kept and Ω stays 1 (it is not summed over tasks). Comparing it
with EWC or MAS at their best λ shows what importance weighting buys. (Hsu et al.'s penalty has no ½:
their ``reg_coef`` is our λ/2.)

Use it in your own loop::

    l2 = L2(lam=0.1)
    loss = F.cross_entropy(model(x), y) + l2.penalty(model)
    ...
    l2.consolidate(model)   # after each task; needs no data
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from ...penalties import empty_state, merge_decay
from .base import Regularizer, model_of


class L2(Regularizer):
    """L2: λ/2 ‖θ − θ*‖² with θ* the parameters after the newest task."""

    name = "l2"

    def consolidate(self, model: nn.Module, data: Iterable | None = None) -> dict[str, Tensor]:
        """Anchor at the current θ with Ω = 1 (``data`` is not needed) and return that Ω."""
        model = model_of(model)
        ones = {n: torch.ones_like(p) for n, p in model.named_parameters() if p.requires_grad}
        anchor = {n: p.detach() for n, p in model.named_parameters() if n in ones}
        self.state = merge_decay(empty_state(), ones, anchor, gamma=1.0)  # replaces: Ω = 1, θ̄ = θ*
        return ones

    def after_task(self, ctx) -> None:
        self.consolidate(ctx.model)
