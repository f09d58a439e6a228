"""Orchestration: run configs and folders, resume, sweeps (grids, executors, selection), tuning and
recipes. It imports the library; the library (data, scenarios, models, importance, penalties,
strategies, train, eval) never imports it."""

from .build import build_strategy, build_stream, seeded_model
from .config import RunConfig
from .runs import resume, run

__all__ = ["RunConfig", "build_strategy", "build_stream", "resume", "run", "seeded_model"]
