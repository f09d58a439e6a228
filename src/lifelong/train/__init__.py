"""Training: the one-screen loop (``loop``), a whole stream (``stream``), devices, checkpoint files."""

from .device import resolve_device
from .loop import OPTIMIZERS, TrainSettings, make_optimizer, train_task
from .stream import run_stream

__all__ = ["OPTIMIZERS", "TrainSettings", "make_optimizer", "resolve_device", "run_stream", "train_task"]
