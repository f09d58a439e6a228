"""Orchestration: run configs and folders, resume, sweeps (grids, executors, selection), tuning,
recipes and the collection of runs for comparison. It imports the library; the library (data,
scenarios, models, importance, penalties, strategies, train, eval) never imports it."""

from .build import build_stream, seeded_model
from .config import ResolvedRun, RunConfig, Runtime
from .runs import resume, run

__all__ = ["ResolvedRun", "RunConfig", "Runtime", "build_stream", "resume", "run", "seeded_model"]
