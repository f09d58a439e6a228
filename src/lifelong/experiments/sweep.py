"""Sweeps: a grid over strategies × hyperparameters × seeds, resumable, optionally in parallel, with
hyperparameter selection on a validation split held out of the training data (never the test set).

The spec (strategies, settings, seeds) is described in :mod:`lifelong.experiments.grid`; jobs run
through :mod:`lifelong.experiments.executor`, selection is :mod:`lifelong.experiments.selection`.
Sweep folder::

    DIR/sweep.json            the spec and every run: id, phase, config, status (pending/done/skipped/failed)
    DIR/runs/<run id>/        one run folder each (see lifelong.experiments.runs)
    DIR/validation/<run id>/  with selection: the runs that scored each candidate on the validation split
    DIR/selection.json        with selection: the candidates, their validation scores and the choice

A run whose ``results.json`` exists is skipped, so running an interrupted sweep again continues where it
stopped; a folder with ``config.json`` but no ``results.json`` is run again from scratch.

Selection (``select``): for each grid entry and strategy (a "method"), every candidate (a combination of
the entry's list-valued fields) runs on every seed with ``val_fraction`` of each task's training data held
out (the base's value, or 0.1 if it is 0). The score of a candidate is the mean over seeds of its final
validation average accuracy (``val_metrics.average_accuracy`` in results.json); a candidate that failed on
any seed is out; ties go to the first in grid order. The chosen config then runs with ``val_fraction=0``
on every seed, and its results.json gets a ``selection`` key saying what was chosen and on what.

>>> from lifelong.experiments.grid import expand
>>> [(c.strategy_name, c.train.lr, c.seed) for c in expand({"grid": [{"strategy": "naive", "lr": [0.1, 0.01]}], "seeds": [0, 1]})]
[('naive', 0.1, 0), ('naive', 0.1, 1), ('naive', 0.01, 0), ('naive', 0.01, 1)]
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from .. import errors
from ..errors import LifelongError, UsageError
from .config import ResolvedRun
from .executor import Index, Job, LocalPool
from .folder import locked
from .grid import Point, label, load_spec, normalize_spec, points, spec_id, split_entry, validated
from .selection import DEFAULT_VAL_FRACTION, SCORE, choose

__all__ = ["sweep", "backend_of"]


def sweep(
    spec: Mapping | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    workers: int = 1,
    select: bool | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
) -> dict:
    """Run every config of ``spec`` (a dict or a JSON file) into ``out``; return the sweep index.

    ``out`` defaults to ``sweeps/sweep-<hash of the spec>``. ``workers`` > 1 runs that many spawned
    processes, each with ``cpu_count // workers`` PyTorch threads unless the config sets ``threads``.
    ``select`` (default: the spec's ``select``) first chooses each method's hyperparameters on a
    validation split (see the module docstring). A failing run is recorded (``status: failed`` with its
    message; its id in ``index["failed"]``) and does not stop the others. The index is also written to
    ``out/sweep.json``, after every run. ``overwrite``: reuse run folders that hold other runs.

    ``backend="ray"`` runs the same jobs as Ray tasks instead (:mod:`lifelong.experiments.ray_backend`):
    ``address`` of a Ray cluster (default: a local Ray), ``cpus_per_run`` (default 1) and ``gpus_per_run``
    (default 0, fractions allowed) reserved per run. Same run ids, folders and results as the local pool.
    """
    spec = load_spec(spec) if isinstance(spec, (str, os.PathLike)) else normalize_spec(spec)
    if select is not None:
        spec["select"] = bool(select)
    runner = backend_of(backend, workers, address, cpus_per_run, gpus_per_run)
    pts = points(spec)  # every config is validated before anything is created
    _check_data(pts)
    # Ray: there, and room for a run, checked before any folder is made; a Ray this sweep started is shut down
    with runner:
        return _prepare_and_run(spec, pts, out, workers, runner, overwrite, quiet)


def _prepare_and_run(spec, pts, out, workers: int, runner, overwrite: bool, quiet: bool) -> dict:
    root = Path(out) if out is not None else Path("sweeps") / f"sweep-{spec_id(spec)}"
    methods: dict[tuple[int, str], list[Point]] = {}  # a method: a grid entry's strategy
    for p in pts:
        methods.setdefault((p.entry, p.cfg.strategy_name), []).append(p)
    names = _method_names(spec, methods)

    def job(cfg: ResolvedRun, phase: str, p: Point, folder: str) -> Job:
        changes = {"out": str(root / folder / cfg.run_id)}
        if not runner.in_process:
            changes["progress"] = False
        return Job(cfg.replace(**changes), phase, names[(p.entry, p.cfg.strategy_name)], p.params)

    book = Index(spec, root, workers, quiet, runner)
    variants = _selection_variants(spec, pts, methods, names) if spec["select"] else None
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the sweep folder {root}: {e.strerror}; choose another `out`") from None
    with locked(root, "sweep"):  # one sweep per folder (each run also locks its own)
        return _sweep(spec, pts, methods, names, job, book, root, overwrite, quiet, variants)


def backend_of(name, workers: int, address, cpus_per_run, gpus_per_run):
    """The local pool or the Ray backend; each option only where it means something."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"`workers` must be >= 1, got {workers}")
    if name == "local":
        given = [f"`{name}`" for name, v in (("address", address), ("cpus_per_run", cpus_per_run),
                                             ("gpus_per_run", gpus_per_run)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only with `backend=ray` (the local pool takes `workers`)")
        return LocalPool(workers)
    if name != "ray":
        raise UsageError(f"`backend` must be local or ray, got {name!r}")
    if workers != 1:
        raise UsageError("`workers` is the local pool's: with `backend=ray`, Ray runs as many runs at once as "
                         "the cluster has room for; size each with `cpus_per_run` and `gpus_per_run`")
    from .ray_backend import RayBackend

    return RayBackend(address, 1.0 if cpus_per_run is None else cpus_per_run,
                      0.0 if gpus_per_run is None else gpus_per_run)


def _selection_variants(spec, pts, methods, names) -> tuple[list, dict]:
    """Both variants of every candidate (split held out, then not), validated before anything runs."""
    if any("val_fraction" in p.params for p in pts):
        raise UsageError("val_fraction cannot be varied in a sweep with selection: it sets the validation split")
    val_cfgs, finals = [], {}
    for key, group in methods.items():
        several = len({json.dumps(p.params, sort_keys=True) for p in group}) > 1
        for p in group:
            where = f"{names[key]} {label(p.params)} seed {p.cfg.seed}"
            vf = p.cfg.stream.val_fraction or DEFAULT_VAL_FRACTION
            val_cfg = validated(lambda: p.cfg.replace(val_fraction=vf), where)
            finals[id(p)] = validated(lambda: p.cfg.replace(val_fraction=0.0), where)
            if several:  # a single candidate needs no validation runs
                val_cfgs.append((val_cfg, p))
    return val_cfgs, finals


def _sweep(spec, pts, methods, names, job, book: Index, root: Path, overwrite: bool, quiet: bool, variants) -> dict:
    if not spec["select"]:
        book.run([job(p.cfg, "run", p, "runs") for p in pts], overwrite)
        return _done(book)

    # Selection: the validation runs, the choice, then the chosen config on every seed.
    val_cfgs, finals = variants
    val_jobs = [job(cfg, "validation", p, "validation") for cfg, p in val_cfgs]
    if not quiet:
        print(f"sweep: selecting on validation; {len(val_jobs)} validation runs -> {root}", flush=True)
    book.run(val_jobs, overwrite)

    final_jobs: list[Job] = []
    for key, pts in methods.items():
        name = names[key]
        vjobs = [j for j in val_jobs if j.method == name]
        vf = pts[0].cfg.stream.val_fraction or DEFAULT_VAL_FRACTION
        if vjobs:
            choice = choose(name, vjobs, spec["seeds"], vf)
        else:
            choice = {"method": name, "params": pts[0].params, "scored_on": None,
                      "note": "one candidate: nothing to select, no validation runs", "candidates": []}
        book.selection.append(choice)
        if not quiet:
            chosen = label(choice["params"]) or "(fixed)" if choice["params"] is not None else "none: all failed"
            print(f"selected for {name}: {chosen}", flush=True)
        for p in pts:
            if choice["params"] is not None and p.params == choice["params"]:
                j = job(finals[id(p)], "final", p, "runs")
                j.selection = choice
                if all(j.id != f.id for f in final_jobs):
                    final_jobs.append(j)
    from ..report.files import write_json

    write_json(root / "selection.json", {"scored_on": "validation", "score": SCORE, "seeds": spec["seeds"],
                                         "methods": book.selection})
    book.run(final_jobs, overwrite)
    return _done(book)


def _check_data(pts) -> None:
    """Load each data set the grid needs once, before any run: missing or damaged data is one error
    now, not the same failure in every run."""
    from ..data import load_dataset

    for stream, seed, data_dir in dict.fromkeys((p.cfg.stream, p.cfg.seed, p.cfg.runtime.data_dir) for p in pts
                                                if p.cfg.stream.kind == "custom"):
        stream.build(seed, data_dir=data_dir)  # your own tasks: the file or the function, read and validated once
    for dataset, data_dir, download in dict.fromkeys((p.cfg.dataset, p.cfg.runtime.data_dir, p.cfg.runtime.download)
                                                     for p in pts if p.cfg.stream.kind != "custom"):
        load_dataset(dataset, data_dir, download=download)


def _done(book: Index) -> dict:
    book.save()
    result = book.as_dict()
    if not book.quiet:
        c = result["counts"]
        print(f"sweep: {c['done']} run, {c['skipped']} finished before, {c['failed']} failed -> "
              f"{book.root / 'sweep.json'}; compare with `lifelong compare {book.root}`", flush=True)
    return result


def _method_names(spec: dict, methods: Mapping[tuple[int, str], list[Point]]) -> dict[tuple[int, str], str]:
    """A name per (grid entry, strategy): the strategy, plus the entry's fixed values where two methods
    would otherwise share a name."""
    names = {key: key[1] for key in methods}
    taken = [n for n in names.values()]
    for key in methods:
        if taken.count(key[1]) > 1:
            fixed, _ = split_entry(spec["grid"][key[0]], "grid", key[1])
            fixed.pop("strategy", None)
            names[key] = f"{key[1]} ({label(fixed) or f'grid entry {key[0] + 1}'})"
    return names


def error_of(outcome: Mapping) -> LifelongError:
    """The error a failed run's outcome describes, as its LifelongError type (for callers that raise)."""
    kind = getattr(errors, str(outcome.get("error")), None)
    kind = kind if isinstance(kind, type) and issubclass(kind, LifelongError) else LifelongError
    return kind(outcome.get("message") or "the run failed")
