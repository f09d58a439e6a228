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

In a loop that has only DataLoaders::

    l2 = L2(lam=0.1)
    loss = F.cross_entropy(model(x), y) + l2.penalty(model)
    ...
    l2.consolidate(model)   # after each task; needs no data
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from ...penalties import QuadraticState, empty_state, merge_decay
from .base import Regularizer, trainable


class L2(Regularizer):
    """L2: λ/2 ‖θ − θ*‖² with θ* the parameters after the newest task."""

    name = "l2"

    def importance(self, model: nn.Module, data: Iterable | None, generator: torch.Generator) -> dict[str, Tensor]:
        """Ω = 1 for every trainable parameter (``data`` is not needed)."""
        return {n: torch.ones_like(p) for n, p in trainable(model).items()}

    def merge(self, importance: dict[str, Tensor], anchor: dict[str, Tensor]) -> QuadraticState:
        return merge_decay(empty_state(), importance, anchor, gamma=1.0)  # replaces: Ω = 1, θ̄ = θ*
