"""A whole stream in one call: train task after task, fill the accuracy matrix. No files, no command line.

``run_stream(model, stream, strategy, settings, seed=0)`` is what ``lifelong run``, the Python API and
the integrations share: a :class:`~lifelong.train.Learner` (the one driver) and :func:`fit_task` (the
one loop) for every task. Saving is the caller's business: ``checkpoint(tensors, meta)`` receives, at
the end of every task and every ``checkpoint_every`` steps, the Learner's state (model, optimizer,
strategy state, generators, progress), and ``resume=(tensors, meta)`` continues from one.

R[0] is measured before any training, R[i] after task i (see :mod:`lifelong.eval.metrics`).
"""

from __future__ import annotations

import platform
import sys
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from .._version import __version__
from ..models import count_parameters
from ..scenarios import TaskStream
from ..strategies import Strategy
from .device import peak_device_memory, peak_rss_bytes, reset_peak_memory, resolve_device
from .learner import Learner
from .loop import TrainSettings, fit_task
from .result import RunResult

Checkpoint = Callable[[dict[str, Tensor], dict[str, Any]], None]


def run_stream(
    model: nn.Module,
    stream: TaskStream,
    strategy: Strategy,
    settings: TrainSettings | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    checkpoint: Checkpoint | None = None,
    checkpoint_every: int = 0,
    resume: tuple[dict[str, Tensor], dict[str, Any]] | None = None,
    progress: bool = False,
    log: Callable[[dict], None] | None = None,
    dist=None,
) -> RunResult:
    """Train ``model`` on each task of ``stream`` in turn with ``strategy``; return the
    :class:`RunResult` (accuracy matrix, metrics, timings, memory). The model, the data (uint8), the
    strategy's state and the optimizer live on ``device``. ``log(event)`` receives the events of
    :mod:`lifelong.train.events` (per-step loss, loss terms and penalty, per-task timings and accuracy
    row). ``dist``: this process's place in a data-parallel run (:mod:`lifelong.train.distributed`); the
    caller passes ``checkpoint`` and ``log`` on rank 0 only."""
    device = resolve_device(device)
    reset_peak_memory(device)
    cl = Learner(model, strategy, stream, settings=settings, seed=seed, device=device, dist=dist)
    if resume is not None:
        cl.load_state_dict(resume)
    return train_stream(cl, checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress, log=log,
                        resumed=resume is not None)


def train_stream(cl: Learner, *, checkpoint: Checkpoint | None = None, checkpoint_every: int = 0,
                 progress: bool = False, log: Callable[[dict], None] | None = None, resumed: bool = False) -> RunResult:
    """Every task of ``cl``'s stream not learned yet, each with :func:`fit_task`; a checkpoint after each
    task and every ``checkpoint_every`` steps (see :func:`run_stream`)."""
    stream, T = cl.stream, len(cl.stream)

    def save() -> None:
        if checkpoint is not None:
            checkpoint(*cl.state_dict())

    row0 = cl.begin()  # R[0], before any training
    if log is not None:
        task, step = cl.position
        log({"event": "start", "tasks": T, "task_names": stream.task_names, "strategy": cl.strategy.name,
             "scenario": stream.scenario, "loss_terms": ["task", *(t for t in cl.strategy.loss_terms if t != "task")],
             "resumed_at": {"task": task, "step": step} if resumed else None, "accuracy": row0})
    bar = _progress_bar() if progress else None
    if log is not None and cl.eval_every:  # a task-free stream's accuracy curve, point by point
        cl.on_point = lambda p: log({"event": "point", **p})
    for task in range(cl.next_task, T):
        cl.start_task(task)
        if bar is not None:
            bar.set_description(f"task {task + 1}/{T} {stream[task].name}")
        n = fit_task(cl, bar=bar, checkpoint_every=checkpoint_every, on_checkpoint=save,
                     on_losses=None if log is None else _step_logger(cl, log, task))
        cl.end_task()
        if log is not None:
            log({"event": "task", "task": task, "name": stream[task].name, "steps": n,
                 **{k: v[-1] for k, v in cl.timings.items()}, "accuracy": cl.rows[-1],
                 **({"val_accuracy": cl.val_rows[-1]} if cl.has_val else {})})
        save()
    if bar is not None:
        bar.close()
    result = results_of(cl)
    if log is not None:
        log({"event": "end", "metrics": result.metrics, "total_seconds": result.timings["total_seconds"]})
    return result


def _step_logger(cl: Learner, log: Callable[[dict], None], task: int):
    base = sum(cl.steps_per_task)  # the stream's steps before this task

    def on_losses(first: int, losses: list[float], terms: list[dict[str, float]]) -> None:
        pen = cl.penalty()  # Ω at θ after the block's last step
        last = len(losses) - 1
        for k, (loss, named) in enumerate(zip(losses, terms)):
            event = {"event": "step", "task": task, "step": base + first + k, "task_step": first + k, "loss": loss,
                     "losses": named}
            if k == last:
                event["penalty"] = 0.0 if pen is None else float(pen)
            log(event)

    return on_losses


def results_of(cl: Learner) -> RunResult:
    """The RunResult of a Learner that has learned its whole stream."""
    stream = cl.stream
    report = cl.strategy.report(cl.ctx)
    return RunResult(
        benchmark=stream.name, scenario=stream.scenario, strategy=cl.strategy.name, task_names=stream.task_names,
        accuracy_matrix=cl.accuracy_matrix.tolist(), metrics=cl.summary(), undefined_metrics=cl.undefined_metrics(),
        val_accuracy_matrix=np.array(cl.val_rows).tolist() if cl.has_val else None,
        val_metrics=cl.summary("val") if cl.has_val else None,
        eval_scenarios=cl.eval_scenarios() or None,
        steps_per_task=list(cl.steps_per_task),
        timings={**{k: list(v) for k, v in cl.timings.items()}, "total_seconds": time.perf_counter() - cl._clock},
        device=str(cl.device), peak_memory_bytes=peak_rss_bytes(), peak_device_memory_bytes=peak_device_memory(cl.device),
        n_parameters=count_parameters(cl.model), extra_memory_bytes=report["state_bytes"],
        strategy_state=report["keeps"], replay_memory=report.get("memory"), capacity=report.get("capacity"),
        laplace=report.get("laplace"), anytime=cl.anytime(), consolidations=report.get("consolidations"),
        seed=cl.seed, threads=torch.get_num_threads(), processes=cl.dist.world if cl.dist.world > 1 else None,
        versions=versions(),
    )


def _progress_bar():
    from tqdm.auto import tqdm

    return tqdm(total=None, unit="step", dynamic_ncols=True, leave=False, file=sys.stderr)


def versions() -> dict[str, str]:
    return {
        "lifelong": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
