"""lifelong: continual learning without catastrophic forgetting.

Three ways to train, from the least lifelong does for you to the most:

1. **Your loop and DataLoaders, a regularizer as a penalty** (EWC, online EWC, MAS, L2)::

       ewc = EWC(lam=100.0)
       loss = F.cross_entropy(model(x), y) + ewc.penalty(model)   # while learning each task
       ewc.consolidate(model, loader)                              # after each task

2. **Your loop, any strategy**: ``cl = Learner(model, ER(memory=500), stream, seed=0)`` draws the batches
   (``cl.batches()``), computes the strategy's loss (``cl.loss(batch)``), calls its hooks
   (``cl.before_step``, ``cl.after_step``) and keeps the accuracy matrix; it also runs inside Lightning
   and the Hugging Face Trainer (:mod:`lifelong.integrations`).
3. **The whole protocol in one call**: ``run_stream(model, stream, strategy, TrainSettings(), seed=0)``
   returns a :class:`RunResult`. On the command line, ``lifelong run`` adds run folders, resume, sweeps
   and comparisons (:mod:`lifelong.experiments`, which ``import lifelong`` does not load).

Streams: ``benchmark("split-mnist", scenario="class")`` or your tensors, ``TaskStream.from_tensors(...)``.
"""

from ._version import __version__
from .errors import DataError, LifelongError, SettingError, TrainingDiverged, UsageError
from .eval import (
    average_accuracy, backward_transfer, evaluate, forgetting, forward_transfer, intransigence, summarize,
)
from .importance import fisher_diag, fisher_diag_empirical, fisher_diag_exact, fisher_diag_mc, fisher_diag_predicted
from .models import ModelSpec, mlp, small_cnn
from .scenarios import StreamSpec, TaskStream, benchmark, task_free
from .strategies import (
    AGEM, DER, ER, ERACE, EWC, GEM, HAT, KFAC, L2, MAS, SI, Compose, DERpp, GDumb, ICaRL, Joint, JointEnd, LwF, Naive, OnlineEWC,
    PackNet, Progressive, RWalk, Separate, Strategy, XdG,
)
from .train import Learner, RunResult, TrainSettings, run_stream

__all__ = [
    "__version__",
    # ways to train
    "Learner", "run_stream", "TrainSettings", "RunResult",
    # strategies
    "Strategy", "Compose", "Naive", "Joint", "JointEnd", "EWC", "OnlineEWC", "KFAC", "SI", "MAS", "RWalk", "L2",
    "ER", "ERACE", "GEM", "AGEM", "DER", "DERpp", "LwF", "ICaRL", "GDumb",
    "Separate", "XdG", "PackNet", "HAT", "Progressive",
    # streams and models
    "TaskStream", "StreamSpec", "benchmark", "task_free", "ModelSpec", "mlp", "small_cnn",
    # evaluation and metrics
    "evaluate", "summarize", "average_accuracy", "backward_transfer", "forward_transfer", "forgetting", "intransigence",
    # Fisher estimators
    "fisher_diag", "fisher_diag_empirical", "fisher_diag_predicted", "fisher_diag_exact", "fisher_diag_mc",
    # errors
    "LifelongError", "UsageError", "SettingError", "DataError", "TrainingDiverged",
]
