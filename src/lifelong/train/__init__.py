"""Training: the one driver (``Learner``), the one-screen loop (``fit_task``), a whole stream
(``run_stream``), devices, checkpoint files, data-parallel groups and event logs."""

from .device import resolve_device
from .learner import Learner, check_run
from .loop import OPTIMIZERS, TrainSettings, fit_task, make_optimizer, steps_per_task
from .result import RunResult
from .stream import run_stream, train_stream

__all__ = ["Learner", "OPTIMIZERS", "RunResult", "TrainSettings", "check_run", "fit_task", "make_optimizer",
           "resolve_device", "run_stream", "steps_per_task", "train_stream"]
