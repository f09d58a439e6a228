"""Running a sweep's jobs: each a run folder, in this process or a pool of worker processes, with the
sweep's index (``sweep.json``) rewritten after every run.

A job whose folder already holds its ``results.json`` (same run id) is skipped, so running an
interrupted sweep again continues where it stopped; a folder with ``config.json`` but no
``results.json`` is run again (resuming is a run's own business, see :mod:`lifelong.experiments.runs`).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from .. import _io
from ..errors import LifelongError, UsageError
from .config import ResolvedRun
from .grid import label


@dataclasses.dataclass
class Job:
    cfg: ResolvedRun  # out set
    phase: str  # "run" (plain sweep), "validation" or "final" (selection)
    method: str = ""
    params: dict = dataclasses.field(default_factory=dict)
    selection: dict | None = None  # written into results.json under "selection" (final runs)
    status: str = "pending"
    outcome: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.cfg.runtime.quiet:  # the sweep prints a line per run: its runs print nothing of their own
            self.cfg = self.cfg.replace(quiet=True)
        self.id = self.cfg.run_id
        self.config = self.cfg.to_record()

    def record(self, root: Path) -> dict:
        try:
            run_dir = Path(self.cfg.runtime.out).relative_to(root).as_posix()
        except ValueError:
            run_dir = str(self.cfg.runtime.out)
        rec = {"id": self.id, "phase": self.phase, "method": self.method, "strategy": self.cfg.strategy_name,
               "params": self.params, "seed": self.cfg.seed, "run_dir": run_dir, "status": self.status}
        if self.status == "failed":
            rec["message"] = self.outcome.get("message")
        if self.status == "done":
            rec["seconds"] = self.outcome.get("seconds")
        if self.phase != "validation" and self.outcome.get("metrics") is not None:
            rec["metrics"] = self.outcome["metrics"]  # validation runs: only validation numbers are kept here
        if self.outcome.get("val_metrics") is not None:
            rec["val_metrics"] = self.outcome["val_metrics"]
        rec["config"] = self.config
        return rec


def summary(results) -> dict:
    """The metrics a sweep keeps of a run's results (a RunResult, or results.json's content)."""
    get = results.get if isinstance(results, Mapping) else (lambda k: getattr(results, k))
    return {"metrics": get("metrics"), "val_metrics": get("val_metrics")}


def run_job(cfg: ResolvedRun, threads: int | None) -> dict:
    """Run one config (in this process or a worker); never raises for a failing run."""
    if threads is not None and cfg.runtime.threads is None:
        import torch

        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        import importlib

        runs = importlib.import_module("lifelong.experiments.runs")  # looked up at call time: tests patch it
        # an interrupted run of this job continues from its checkpoint; anything else starts afresh
        results = runs.resume(cfg.runtime.out) if runs.interrupted(cfg) else runs.run(cfg, overwrite=True)
        return {"status": "done", "seconds": round(time.perf_counter() - t0, 3), **summary(results)}
    except LifelongError as e:
        return {"status": "failed", "error": type(e).__name__, "message": str(e)}
    except Exception as e:  # noqa: BLE001 - one broken run must not stop the others; the message says what
        return {"status": "failed", "error": type(e).__name__, "message": f"{type(e).__name__}: {e}"}


def finished(job: Job) -> dict | None:
    """The results of a finished run of ``job`` in its folder (results.json and config.json both of this
    run), or None."""
    try:
        results = _io.loads((Path(job.cfg.runtime.out) / "results.json").read_text())
        config = _io.loads((Path(job.cfg.runtime.out) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(results, dict) and isinstance(config, dict)):
        return None
    return results if results.get("run_id") == job.id == config.get("run_id") else None


def check_folders(jobs: Sequence[Job], overwrite: bool) -> None:
    """Refuse, before anything runs, a run folder that holds a different run (unless ``overwrite``)."""
    if overwrite:
        return
    for job in jobs:
        previous = Path(job.cfg.runtime.out) / "config.json"
        try:
            old = _io.loads(previous.read_text()).get("run_id")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if old != job.id:
            raise UsageError(f"{job.cfg.runtime.out} holds another run ({old}); choose another `out` or pass `overwrite=True`")


def write_selection(job: Job, results: dict | None = None) -> None:
    """Put ``job.selection`` into its results.json (atomically), unless it is there already."""
    if job.selection is None:
        return
    from ..report.files import to_jsonable, write_json

    path = Path(job.cfg.runtime.out) / "results.json"
    results = results if results is not None else _io.loads(path.read_text())
    if results.get("selection") != to_jsonable(job.selection):
        write_json(path, {**results, "selection": job.selection})


def exit_with_parent(parent: int) -> None:
    """A worker's initializer: exit as soon as the sweep's process is gone (killed, terminated), so
    that no orphan goes on training and writing into the sweep's folders; its run stays resumable from
    its last checkpoint, and the next sweep resumes it."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(70)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@dataclasses.dataclass
class LocalPool:
    """The default backend: the jobs in this process, or in ``workers`` spawned processes, each with
    ``cpu_count // workers`` PyTorch threads (unless the config sets ``threads``). A backend is a context
    (entered around a sweep: :class:`~.ray_backend.RayBackend` connects there) with ``run(jobs, finish)``,
    which runs each job's config (:func:`run_job`) and calls ``finish(job, outcome)`` as each ends, and
    ``describe()`` for ``sweep.json``."""

    workers: int = 1

    @property
    def in_process(self) -> bool:
        """Whether runs train in this process (then they may show a progress bar)."""
        return self.workers <= 1

    def describe(self) -> dict:
        return {"name": "local", "workers": self.workers}

    def __enter__(self) -> "LocalPool":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def run(self, todo: Sequence[Job], finish: Callable[[Job, dict], None]) -> None:
        n_proc = min(self.workers, len(todo))
        if n_proc <= 1:
            for job in todo:
                finish(job, run_job(job.cfg, None))
            return
        # PyTorch's OpenMP threads spin while they wait: N processes using all cores each stall one another.
        threads = max(1, (os.cpu_count() or 1) // n_proc)
        with ProcessPoolExecutor(n_proc, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(run_job, j.cfg.replace(progress=False), threads): j for j in todo}
            try:
                for future in as_completed(futures):
                    try:
                        outcome = future.result()
                    except Exception as e:  # noqa: BLE001 - the worker process died (killed, out of memory)
                        outcome = {"status": "failed", "error": type(e).__name__,
                                   "message": f"worker process failed: {e!r}"}
                    finish(futures[future], outcome)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise


class Index:
    """The jobs of a sweep and their statuses; ``run(jobs)`` runs them on ``backend`` (default: the
    local pool of ``workers`` processes) and rewrites ``sweep.json``."""

    def __init__(self, spec: dict, root: Path, workers: int, quiet: bool, backend=None):
        self.spec, self.root, self.workers, self.quiet = spec, root, workers, quiet
        self.backend = backend if backend is not None else LocalPool(workers)
        self.jobs: list[Job] = []
        self.selection: list[dict] | None = [] if spec.get("select") else None

    def as_dict(self) -> dict:
        counts = {s: sum(j.status == s for j in self.jobs) for s in ("done", "skipped", "failed", "pending")}
        d = {"spec": self.spec, "out": str(self.root), "workers": self.workers, "backend": self.backend.describe(),
             "counts": counts,
             "failed": [j.id for j in self.jobs if j.status == "failed"],
             "runs": [j.record(self.root) for j in self.jobs]}
        if self.selection is not None:
            d["selection"] = self.selection
        return d

    def save(self) -> None:
        from ..report.files import write_json

        write_json(self.root / "sweep.json", self.as_dict())

    def run(self, jobs: Sequence[Job], overwrite: bool) -> None:
        """Run the jobs not finished before, on the backend."""
        check_folders(jobs, overwrite)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(
                f"cannot create the sweep folder {self.root}: {e.strerror}; choose another `out`"
            ) from None
        self.jobs.extend(jobs)
        todo = []
        for job in jobs:
            results = finished(job)
            if results is None:
                todo.append(job)
            else:
                write_selection(job, results)
                self._finish(job, {"status": "skipped", **summary(results)})
        self.save()
        self.backend.run(todo, self._finish)

    def _finish(self, job: Job, outcome: dict) -> None:
        job.status, job.outcome = outcome["status"], outcome
        if job.status == "done":
            write_selection(job)
        if job.status != "skipped":
            self.save()
        if self.quiet:
            return
        k = sum(j.status != "pending" for j in self.jobs)
        what = f"{job.cfg.strategy_name}{' ' + label(job.params) if job.params else ''} seed={job.cfg.seed}"
        if job.status == "failed":
            detail = f"FAILED: {outcome['message']}"
        else:
            metrics = outcome.get("val_metrics") if job.phase == "validation" else outcome.get("metrics")
            acc = (metrics or {}).get("average_accuracy")
            name = "validation" if job.phase == "validation" else "test"
            detail = f"{name} average accuracy {'n/a' if acc is None else f'{100 * acc:.2f}%'}"
            detail += " (finished before)" if job.status == "skipped" else ""
        print(f"[{k}/{len(self.jobs)}] {job.status:<7} {what}: {detail}  -> {job.cfg.runtime.out}", flush=True)


