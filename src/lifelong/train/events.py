"""Logs people already read: a JSON-lines event log (always, in the run folder) and TensorBoard scalars.

:func:`lifelong.train.run_stream` calls ``log(event)`` with plain dicts; an event log is any callable
that takes one. The events, in order::

    {"event": "start", "tasks": T, "task_names": [...], "strategy": ..., "loss_terms": ["task", ...],
     "resumed_at": null | {"task", "step"}, "accuracy": R[0]}
    {"event": "step", "task": i, "step": s, "task_step": k, "loss": ..., "losses": {"task": ..., ...}}
        every optimizer step: the loss and its named terms (task, replay, distill, ...; their sum is loss);
        every ``check_every`` steps (and a task's last) the same with "penalty": Ω(θ)
    {"event": "task", "task": i, "steps": n, "train_seconds": ..., "after_task_seconds": ...,
     "eval_seconds": ..., "accuracy": [R[i+1][0], ...], "val_accuracy": [...] (with a validation split)}
    {"event": "point", "step": s, "samples": n, "accuracy": a, "groups": [...], "seen": [...]}
        a task-free stream's accuracy curve (lifelong.eval.anytime), every ``eval_every`` samples
    {"event": "end", "metrics": {...}, "total_seconds": ...}

``step`` counts optimizer steps over the stream (TensorBoard's x axis). Step losses are read from the
device in blocks, when the loop checks them for NaN anyway (every ``check_every`` steps), so logging
adds no device synchronization per step; the penalty is one extra evaluation of Ω per block. A resumed
run logs the steps after its checkpoint again, after a ``start`` event with ``resumed_at``: readers
keep the last record of a step (:func:`read_events` does).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import _io

Log = Callable[[dict], None]
EVENTS_FILE = "events.jsonl"
LOGS = ("jsonl", "tensorboard", "none")


def _clean(v: Any) -> Any:
    """JSON without NaN/inf (written as null: the loop stops on them anyway)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


class JsonLines:
    """Appends one JSON object per line to ``path`` (flushed at every block of steps and every task)."""

    def __init__(self, path: str | Path):
        from .._io import open_own

        self.path = Path(path)  # appended to, never through a symbolic or hard link (NotOwnFile)
        self._f = os.fdopen(open_own(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a", encoding="utf-8")

    def __call__(self, event: dict) -> None:
        self._f.write(json.dumps(_clean({**event, "time": round(time.time(), 3)}), allow_nan=False) + "\n")
        if event.get("event") != "step" or "penalty" in event:
            self._f.flush()

    def close(self) -> None:
        self._f.close()


def check_tensorboard() -> None:
    """A one-line UsageError when TensorBoard's writer cannot be imported (before anything is written)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        from ..errors import UsageError

        raise UsageError('`log=tensorboard` needs the tensorboard package: pip install "lifelong[tensorboard]"') from None


class TensorBoard:
    """Scalars for TensorBoard (``torch.utils.tensorboard``, which needs ``pip install "lifelong[tensorboard]"``):
    ``train/loss``, ``train/penalty`` and ``loss/<term>`` (each named loss term) per step,
    ``time/train_seconds`` per task, ``accuracy/<task name>`` and ``accuracy/average`` (over
    the tasks trained so far) after each task, ``anytime/seen`` (a task-free stream's accuracy on the groups
    seen) at each point of its curve, ``metrics/*`` at the end; x axis: the stream's step.
    A resumed run purges what was logged after its checkpoint (``purge_step``)."""

    def __init__(self, logdir: str | Path, purge_step: int | None = None):
        check_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(logdir), purge_step=purge_step)
        self.names: list[str] = []
        self.step = 0

    def __call__(self, event: dict) -> None:
        kind, w = event.get("event"), self.writer
        if kind == "start":
            self.names = list(event.get("task_names") or [])
        elif kind == "step":
            self.step = event["step"]
            if event.get("loss") is not None:
                w.add_scalar("train/loss", event["loss"], event["step"])
            for name, value in (event.get("losses") or {}).items():
                if value is not None:
                    w.add_scalar(f"loss/{name}", value, event["step"])
            if event.get("penalty") is not None:
                w.add_scalar("train/penalty", event["penalty"], event["step"])
        elif kind == "point":
            if event.get("accuracy") is not None:
                w.add_scalar("anytime/seen", event["accuracy"], event["step"])
        elif kind == "task":
            row, i = event["accuracy"], event["task"]
            for j, acc in enumerate(row):
                w.add_scalar(f"accuracy/{self.names[j] if j < len(self.names) else j}", acc, self.step)
            w.add_scalar("accuracy/average", sum(row[: i + 1]) / (i + 1), self.step)
            w.add_scalar("time/train_seconds", event["train_seconds"], self.step)
            w.flush()
        elif kind == "end":
            for k, v in (event.get("metrics") or {}).items():
                if isinstance(v, (int, float)) and v is not None:
                    w.add_scalar(f"metrics/{k}", v, self.step)
            w.flush()

    def close(self) -> None:
        self.writer.close()


class Fanout:
    """Several logs as one."""

    def __init__(self, logs: Iterable[Log]):
        self.logs = [x for x in logs if x is not None]

    def __call__(self, event: dict) -> None:
        for log in self.logs:
            log(event)

    def close(self) -> None:
        for log in self.logs:
            getattr(log, "close", lambda: None)()


def read_events(path: str | Path) -> list[dict]:
    """The events of a log, with steps logged again after a resume replacing the earlier records."""
    events = [_io.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    last: dict[tuple[str, int], int] = {}
    for k, e in enumerate(events):
        if e.get("event") in ("step", "point"):
            last[(e["event"], e["step"])] = k
    return [e for k, e in enumerate(events) if e.get("event") not in ("step", "point") or last[(e["event"], e["step"])] == k]
