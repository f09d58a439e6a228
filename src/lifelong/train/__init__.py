"""Training: the one-screen loop (``loop``) and the whole-stream runner (``run``)."""

from .loop import OPTIMIZERS, TrainSettings, evaluate, make_optimizer, train_task

__all__ = ["OPTIMIZERS", "TrainSettings", "evaluate", "make_optimizer", "train_task"]
