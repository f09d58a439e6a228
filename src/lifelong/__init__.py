"""lifelong: continual learning without catastrophic forgetting.

Add EWC to your own training loop::

    from lifelong import EWC
    ewc = EWC(lam=100.0)
    loss = F.cross_entropy(model(x), y) + ewc.penalty(model)   # while learning each task
    ewc.consolidate(model, loader)                              # after each task

Any strategy in your own loop, on your own tensors: :class:`Learner` (see lifelong.train.learner) over
``TaskStream.from_tensors(...)``.

Or run a whole experiment: ``lifelong run --benchmark permuted-mnist --strategy ewc``.
"""

from ._version import __version__
from .errors import DataError, LifelongError, TrainingDiverged, UsageError
from .eval import (
    average_accuracy,
    backward_transfer,
    evaluate,
    forgetting,
    forward_transfer,
    intransigence,
    summarize,
)
from .experiments import RunConfig, run
from .importance import (
    fisher_diag,
    fisher_diag_empirical,
    fisher_diag_exact,
    fisher_diag_mc,
    fisher_diag_predicted,
)
from .models import Heads, mlp, small_cnn
from .penalties import quadratic_penalty
from .scenarios import Task, TaskStream, permuted, rotated, split
from .strategies import (
    AGEM, DER, ER, ERACE, EWC, GEM, HAT, L2, MAS, SI, Compose, Context, DERpp, GDumb, ICaRL, Joint, LwF, Naive,
    OnlineEWC, PackNet, Progressive, RWalk, Separate, Strategy, XdG, build_strategy,
)
from .train import Learner, TrainSettings, run_stream

__all__ = [
    "__version__",
    "EWC", "OnlineEWC", "SI", "MAS", "RWalk", "L2", "Naive", "Joint", "Compose", "Strategy", "Context",
    "ER", "ERACE", "GEM", "AGEM", "DER", "DERpp", "LwF", "ICaRL", "GDumb",
    "Separate", "XdG", "PackNet", "HAT", "Progressive", "Learner",
    "build_strategy",
    "fisher_diag", "fisher_diag_empirical", "fisher_diag_predicted", "fisher_diag_exact", "fisher_diag_mc",
    "quadratic_penalty",
    "Task", "TaskStream", "permuted", "rotated", "split", "mlp", "small_cnn", "Heads",
    "TrainSettings", "run_stream", "evaluate",
    "RunConfig", "run",
    "average_accuracy", "backward_transfer", "forward_transfer", "forgetting", "intransigence", "summarize",
    "LifelongError", "UsageError", "DataError", "TrainingDiverged",
]
