"""From a resolved run config to the objects the library trains: the task stream and the seeded model
(the strategy is ``lifelong.strategies.build(cfg.strategy)``: its settings know it)."""

from __future__ import annotations

from torch import nn

from ..scenarios import TaskStream
from .config import ResolvedRun


def build_stream(cfg: ResolvedRun) -> TaskStream:
    """The task stream ``cfg`` describes, its data found where the runtime says (see lifelong.data). Its
    ``info["data"]`` is the data's fingerprint."""
    return cfg.stream.build(cfg.seed, data_dir=cfg.runtime.data_dir, download=cfg.runtime.download)


def seeded_model(cfg: ResolvedRun, stream: TaskStream) -> nn.Module:
    """The model, initialized from the run's seed without touching global random state."""
    return cfg.model.build(stream.input_shape, stream.n_outputs, cfg.seed)
