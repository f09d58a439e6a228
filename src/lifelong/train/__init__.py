"""Training: the one-screen loop (``loop``), a whole stream (``stream``), devices, checkpoint files."""

from .device import resolve_device
from .learner import Learner
from .loop import OPTIMIZERS, TrainSettings, make_optimizer, train_task
from .stream import run_stream

__all__ = ["Learner", "OPTIMIZERS", "TrainSettings", "make_optimizer", "resolve_device", "run_stream", "train_task"]
