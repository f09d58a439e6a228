"""lifelong: continual learning without catastrophic forgetting.

Add EWC to your own training loop::

    from lifelong import EWC
    ewc = EWC(lam=100.0)
    loss = F.cross_entropy(model(x), y) + ewc.penalty(model)   # while learning each task
    ewc.consolidate(model, loader)                              # after each task

Or run a whole experiment: ``lifelong run --benchmark permuted-mnist --strategy ewc``.
"""

__version__ = "0.1.0"

from .config import RunConfig
from .errors import DataError, LifelongError, TrainingDiverged, UsageError
from .eval import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    intransigence,
    summarize,
)
from .importance import (
    fisher_diag,
    fisher_diag_empirical,
    fisher_diag_exact,
    fisher_diag_mc,
    fisher_diag_predicted,
)
from .models import mlp, small_cnn
from .penalties import quadratic_penalty
from .scenarios import Task, TaskStream, permuted, rotated, split
from .strategies import EWC, Joint, Naive, OnlineEWC, Strategy
from .train.run import run

__all__ = [
    "EWC", "OnlineEWC", "Naive", "Joint", "Strategy",
    "fisher_diag", "fisher_diag_empirical", "fisher_diag_predicted", "fisher_diag_exact", "fisher_diag_mc",
    "quadratic_penalty",
    "Task", "TaskStream", "permuted", "rotated", "split", "mlp", "small_cnn",
    "RunConfig", "run",
    "average_accuracy", "backward_transfer", "forward_transfer", "forgetting", "intransigence", "summarize",
    "LifelongError", "UsageError", "DataError", "TrainingDiverged",
]
