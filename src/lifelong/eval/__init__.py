"""Evaluation: accuracy on each task (``evaluate``, asking the strategy how to predict) and the
continual-learning metrics as pure functions of the accuracy matrix.

``R`` has shape ``(T+1, T)``: row 0 = accuracy before any training, row ``i`` = accuracy on every
task after training the ``i``-th task. See :mod:`lifelong.eval.metrics` for formulas and papers.
"""

from __future__ import annotations

from lifelong.eval.evaluation import evaluate
from lifelong.eval.metrics import (
    average_accuracy,
    average_accuracy_curve,
    backward_transfer,
    check_accuracy_matrix,
    forgetting,
    forgetting_per_task,
    forward_transfer,
    intransigence,
    intransigence_per_task,
    summarize,
    undefined_metrics,
)

__all__ = [
    "evaluate",
    "average_accuracy",
    "average_accuracy_curve",
    "backward_transfer",
    "check_accuracy_matrix",
    "forgetting",
    "forgetting_per_task",
    "forward_transfer",
    "intransigence",
    "intransigence_per_task",
    "summarize",
    "undefined_metrics",
]
