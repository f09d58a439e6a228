"""What a run returns: :class:`RunResult`, the typed record behind ``results.json``.

``run_stream`` fills the training part (accuracy matrices, metrics, timings, memory, the strategy's
report); ``lifelong run`` adds the run's identity (run id, config, data fingerprint, folder). The file
``results.json`` is :meth:`RunResult.to_dict`, and :meth:`RunResult.from_dict` reads one back, also one
written by lifelong 0.2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass
class RunResult:
    """A finished run (see the module docstring). ``metrics`` has None for a metric that is undefined
    here, and ``undefined_metrics`` says why."""

    benchmark: str
    scenario: str
    strategy: str
    task_names: list[str]
    accuracy_matrix: list[list[float]]
    metrics: dict[str, float | None]
    undefined_metrics: dict[str, str] = field(default_factory=dict)
    val_accuracy_matrix: list[list[float]] | None = None
    val_metrics: dict[str, float | None] | None = None
    # the model evaluated in further scenarios (stream.eval_scenarios): {scenario: {accuracy_matrix, metrics}}
    eval_scenarios: dict[str, dict[str, Any]] | None = None
    steps_per_task: list[int] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    peak_memory_bytes: int | None = None
    peak_device_memory_bytes: int | None = None
    n_parameters: int | None = None
    extra_memory_bytes: int | None = None  # what the strategy keeps beside the model after the last task
    strategy_state: dict[str, int] | None = None  # those bytes by part of the state (penalty, memory, teacher, ...)
    replay_memory: dict[str, Any] | None = None
    capacity: dict[str, Any] | None = None  # parameter isolation: what each task uses
    laplace: dict[str, Any] | None = None  # kfac: the Kronecker-factored layers, the diagonal rest, approximation errors
    # a task-free stream's accuracy curve: its timeline, the points and their metrics (lifelong.eval.anytime)
    anytime: dict[str, Any] | None = None
    consolidations: list[int] | None = None  # steps after which a boundary-free regularizer consolidated
    seed: int = 0
    threads: int | None = None
    processes: int | None = None  # a data-parallel run's processes
    versions: dict[str, str] = field(default_factory=dict)
    # the run folder's (lifelong run): identity and where
    run_id: str | None = None
    config: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    title: str | None = None
    selection: dict[str, Any] | None = None
    run_dir: str | None = None  # not written to results.json: where it is
    rank: int | None = None  # not written: a data-parallel run's process (rank 0 speaks for the run)

    @property
    def R(self) -> np.ndarray:
        """The accuracy matrix as an array, (T+1, T)."""
        return np.array(self.accuracy_matrix)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``results.json`` (optional parts only when present)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("run_dir", "rank")}
        for key in ("val_accuracy_matrix", "val_metrics", "eval_scenarios", "processes", "run_id", "config", "data", "title",
                    "selection", "strategy_state", "laplace", "anytime", "consolidations"):
            if d[key] is None:
                del d[key]
        if not d["undefined_metrics"]:
            del d["undefined_metrics"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], run_dir: str | None = None) -> "RunResult":
        """A results.json's content (written by this version or 0.2; keys it does not know are dropped)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values.setdefault("undefined_metrics", {})
        return cls(**{**values, "run_dir": run_dir if run_dir is not None else values.get("run_dir")})
