"""Memory Aware Synapses (Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars 2018, ECCV, eqs. 2-4).

After task t, compute the label-free importance Ω_t = 1/N Σ_n |∂‖z_n‖²/∂θ| at θ*_t (eqs. 2, 4; see
:func:`lifelong.importance.mas_importance`) and, while learning the next tasks, minimize

    L(θ) + λ/2 Σ_i Ω_i (θ_i − θ*_i)²                           (eq. 3, with the shared penalty's ½)

Accumulation over tasks: one importance, Ω ← Ω + Ω_t, anchored at the newest θ* (the offset stays
0). Aljundi et al. accumulate the importance of successive tasks, and Hsu, Liu, Ramasamy & Kira 2018
("Re-evaluating continual learning scenarios", GT-RIPL/Continual-Learning-Benchmark,
``agents/regularization.py``, class ``MAS`` with ``online_reg=True``) keep a single slot: the new Ω_t
is added to the stored importance and the stored parameters are replaced by the latest ones. That is
:func:`lifelong.penalties.merge_decay` with γ = 1. (Separate per-task anchors, as in separate EWC,
would be ``merge_sum``; MAS does not use them.)

Differences from Hsu et al.'s code, on purpose: they take the absolute value of a mini-batch gradient
of mean_{n,c} z_{n,c}² averaged over batches, which is at most 1/C times our Ω (mean over C outputs
instead of the norm, and |Σ_n g_n| ≤ Σ_n |g_n|) and depends on the batch size; and their penalty has
no ½. So their ``reg_coef`` does not carry over to our ``lam`` unchanged.

In a loop that has only DataLoaders::

    mas = MAS(lam=1.0)
    loss = F.cross_entropy(model(x), y) + mas.penalty(model)
    ...
    mas.consolidate(model, loader)   # after each task; loader yields x, (x, y) or (x, y, mask)
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from ...importance import mas_importance
from ...penalties import QuadraticState, merge_decay
from .base import LambdaSettings, Regularizer
from .consolidation import with_consolidation


MASSettings = with_consolidation(
    LambdaSettings, "MASSettings", "λ and the convention, and the boundary-free consolidation "
    "(:mod:`.consolidation`; Aljundi et al. 2019 is MAS with plateaus).", __name__)


class MAS(Regularizer):
    """MAS: λ/2 Σ_i Ω_i (θ_i − θ*_i)² with Ω the sum of the tasks' MAS importances and θ* the newest
    parameters. Importance needs no labels; with task masks only the task's own units count."""

    name = "mas"
    Settings = MASSettings

    def importance(self, model: nn.Module, data: Iterable, generator: torch.Generator) -> dict[str, Tensor]:
        """Ω_t at θ* over ``data`` (x, (x,), (x, y) or (x, y, mask) batches)."""
        return mas_importance(model, data)

    def merge(self, importance: dict[str, Tensor], anchor: dict[str, Tensor]) -> QuadraticState:
        return merge_decay(self.state, importance, anchor, gamma=1.0)  # Ω ← Ω + Ω_t, θ̄ ← θ*_t
