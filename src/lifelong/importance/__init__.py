"""Importance estimators: per-parameter weights for quadratic penalties.

Each estimator is a pure function ``(model, batches, ...) -> dict[str, Tensor]`` named by what it
computes; all Fisher variants and MAS share the per-sample engine in :mod:`.persample`.
"""

from __future__ import annotations

from lifelong.importance.fisher import (
    FISHER_KINDS,
    fisher_diag,
    fisher_diag_empirical,
    fisher_diag_exact,
    fisher_diag_mc,
    fisher_diag_predicted,
    logit_directions,
    multinomial_cov_factor,
)
from lifelong.importance.mas import mas_importance, norm_sq_direction
from lifelong.importance.persample import sum_abs_grads, sum_sq_grads
from lifelong.models.heads import masked_logits

__all__ = [
    "FISHER_KINDS",
    "fisher_diag",
    "fisher_diag_empirical",
    "fisher_diag_exact",
    "fisher_diag_mc",
    "fisher_diag_predicted",
    "logit_directions",
    "mas_importance",
    "masked_logits",
    "multinomial_cov_factor",
    "norm_sq_direction",
    "sum_abs_grads",
    "sum_sq_grads",
]
