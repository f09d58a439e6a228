"""Sweeps: a grid over strategies × hyperparameters × seeds, resumable, optionally in parallel, with
hyperparameter selection on a validation split held out of the training data (never the test set).

A spec (a JSON file, or built by ``lifelong sweep --strategies ... --set ...``)::

    {"base":  {"benchmark": "split-mnist", "tasks": 3},       RunConfig fields shared by every run
     "grid":  [{"strategy": "ewc", "lam": [10, 100]},   one entry per method: a list-valued field is a
               {"strategy": "naive"}],                          set of alternatives (cross product), a scalar is fixed
     "seeds": [0, 1, 2],                                        every point of the grid runs on every seed
     "select": false}                                           true: choose each method's values on validation

For a field whose value is itself a list (``hidden``, ``angles``, ``split_groups``: read off RunConfig's
type annotations), alternatives are a list of such values, ``"hidden": [[100], [400, 400]]``; a flat
``"hidden": [400, 400]`` is one value. Keys are RunConfig's fields, so hyperparameters are whatever
RunConfig has; unknown keys and bad values are errors, raised for every expanded config before any run
starts. Sweep folder::

    DIR/sweep.json            the spec and every run: id, phase, config, status (pending/done/skipped/failed)
    DIR/runs/<run id>/        one run folder each (see lifelong.train.run)
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

>>> from lifelong.sweep import expand
>>> [(c.strategy, c.lr, c.seed) for c in expand({"grid": [{"strategy": "naive", "lr": [0.1, 0.01]}], "seeds": [0, 1]})]
[('naive', 0.1, 0), ('naive', 0.1, 1), ('naive', 0.01, 0), ('naive', 0.01, 1)]
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import multiprocessing
import os
import statistics
import time
import types
import typing
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from . import errors
from .config import STRATEGY_NAMES, RunConfig
from .strategies import STRATEGIES
from .errors import LifelongError, UsageError

__all__ = [
    "DEFAULT_VAL_FRACTION",
    "expand",
    "load_spec",
    "applies_to",
    "main_hyperparameter",
    "normalize_spec",
    "parse_set",
    "strategy_hyperparameters",
    "sweep",
]

#: Held-out fraction of each task's training data for selection when the base config has none.
DEFAULT_VAL_FRACTION = 0.1
_SPEC_KEYS = ("base", "grid", "seeds", "select")
_SET_BY_SWEEP = {"out": "the sweep puts each run in DIR/runs/<run id>", "seed": "list the seeds in 'seeds' (--seeds)"}
SCORE = "val_metrics.average_accuracy"  # what selection maximizes (mean over seeds)


# ---- RunConfig field types: coercion and parsing, without naming any field ---------------------------------------


@functools.lru_cache(maxsize=None)
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(RunConfig)


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(tp, False)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _depth(tp: Any) -> int:
    """How deeply a field's value nests: 0 for scalars, 1 for ``tuple[int, ...]``, 2 for tuples of tuples."""
    tp, _ = _unwrap(tp)
    if typing.get_origin(tp) in (tuple, list):
        return 1 + _depth(typing.get_args(tp)[0])
    return 0


def _value_depth(v: Any) -> int:
    if isinstance(v, (list, tuple)):
        return 1 + (_value_depth(v[0]) if v else 0)
    return 0


def _describe(tp: Any) -> str:
    tp, optional = _unwrap(tp)
    text = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp)
    if text is None:
        text = {1: "a list like [400, 400]", 2: "a list of lists like [[0, 1], [2, 3]]"}.get(_depth(tp), str(tp))
    return text + (" or null" if optional else "")


def _as(tp: Any, v: Any) -> Any:
    """``v`` (a JSON value) as type ``tp``, or TypeError. ints stay ints and floats become floats, so the
    same experiment hashes to the same run id whether a value was written ``10`` or ``10.0``."""
    if tp is bool:
        if isinstance(v, bool):
            return v
    elif tp is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
    elif tp is float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    elif tp is str:
        if isinstance(v, str):
            return v
    elif typing.get_origin(tp) in (tuple, list):
        if isinstance(v, (list, tuple)):
            return tuple(_as(typing.get_args(tp)[0], x) for x in v)
    else:
        return v  # a type this code does not know: RunConfig's validation judges it
    raise TypeError


def _coerce(key: str, value: Any, where: str) -> Any:
    """A JSON value for RunConfig field ``key``, converted to the field's type, or UsageError."""
    if key not in _field_types():
        return value  # RunConfig.from_dict reports unknown keys (with the list of known ones)
    tp, optional = _unwrap(_field_types()[key])
    if value is None and optional:
        return None
    try:
        return _as(tp, value)
    except TypeError:
        raise UsageError(f"{where}: {key}={json.dumps(value)} must be {_describe(_field_types()[key])}") from None


def _parse_text(tp: Any, text: str) -> Any:
    tp, optional = _unwrap(tp)
    text = text.strip()
    if optional and text.lower() in ("none", "null"):
        return None
    if tp is bool:
        if text.lower() in ("true", "yes", "1"):
            return True
        if text.lower() in ("false", "no", "0"):
            return False
        raise ValueError(text)
    if tp in (int, float, str):
        return tp(text)
    if typing.get_origin(tp) in (tuple, list):
        elem = typing.get_args(tp)[0]
        sep = "/" if _depth(elem) else ","
        return tuple(_parse_text(elem, part) for part in text.split(sep) if part.strip())
    return text


def _parse_unknown(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_set(text: str) -> tuple[str | None, str, list]:
    """Parse ``--set [STRATEGY:]KEY=V1,V2,...`` into ``(strategy or None, key, [values])``.

    Values are parsed by the type of RunConfig's field ``KEY`` (dashes read as underscores). For fields
    whose value is a list (``hidden=400,400``), alternatives are separated by ``;``:
    ``hidden=100;400,400``; class groups use ``/``: ``split_groups=0,1/2,3;0,1``.

    >>> parse_set("lr=0.1,0.01")
    (None, 'lr', [0.1, 0.01])
    >>> parse_set("hidden=32;64,64")
    (None, 'hidden', [(32,), (64, 64)])
    """
    if "=" not in text:
        raise UsageError(f"--set expects KEY=V1,V2,... (e.g. lr=0.01,0.001), got {text!r}")
    lhs, rhs = text.split("=", 1)
    scope = None
    if ":" in lhs:
        scope, lhs = (s.strip() for s in lhs.split(":", 1))
        if scope not in STRATEGY_NAMES:
            raise UsageError(f"--set {text}: unknown strategy {scope!r}: choose one of {', '.join(STRATEGY_NAMES)}")
    key = lhs.strip().replace("-", "_")
    if key == "strategy":
        raise UsageError("--set strategy=...: list strategies with --strategies instead")
    if key in _SET_BY_SWEEP:
        raise UsageError(f"--set {key}=...: {_SET_BY_SWEEP[key]}")
    tp = _field_types().get(key)
    alternatives = [v for v in rhs.split(";" if tp is not None and _depth(tp) else ",") if v.strip()]
    if not alternatives:
        raise UsageError(f"--set {text}: give at least one value after '='")
    values = []
    for v in alternatives:
        try:
            values.append(_parse_unknown(v.strip()) if tp is None else _parse_text(tp, v))
        except ValueError:
            raise UsageError(f"--set {key}: {v.strip()!r} is not {_describe(tp)}") from None
    return scope, key, values


# ---- which fields does each strategy read? -----------------------------------------------------------------------


def strategy_hyperparameters(strategy: str) -> tuple[str, ...] | None:
    """The RunConfig fields ``strategy`` reads as its own hyperparameters (its class's
    ``hyperparameters``, e.g. EWC's ``lam``, ``fisher``, ``mc_samples``); None for an unknown name.

    >>> strategy_hyperparameters("naive")
    ()
    """
    cls = STRATEGIES.get(strategy)
    return None if cls is None else tuple(cls.hyperparameters)


def _strategy_specific() -> set[str]:
    """Fields some strategy reads as a hyperparameter: a --set of one applies to the strategies reading it."""
    return {k for cls in STRATEGIES.values() for k in cls.hyperparameters}


def applies_to(key: str, strategy: str) -> bool:
    """Whether field ``key`` can change the results of ``strategy`` (True when unsure)."""
    own = strategy_hyperparameters(strategy)
    return own is None or key in own or key not in _strategy_specific()


def main_hyperparameter(strategy: str) -> str | None:
    """The first strategy-specific field ``strategy`` reads (e.g. EWC's λ), or None if it has none."""
    own = strategy_hyperparameters(strategy)
    return own[0] if own else None


# ---- specs --------------------------------------------------------------------------------------------------------


def load_spec(path: str | os.PathLike) -> dict:
    """Read a JSON spec file and return it normalized (see :func:`normalize_spec`)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UsageError(f"cannot read the sweep spec {path}: {e.strerror}") from None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"the sweep spec {path} is not valid JSON: {e}") from None
    return normalize_spec(spec, where=str(path))


def _split_entry(entry: Mapping, where: str) -> tuple[dict, dict]:
    """A grid entry -> (fixed values, {key: [alternatives]}), each value coerced to its field's type."""
    fixed, varied = {}, {}
    for key, value in entry.items():
        if key in _SET_BY_SWEEP:
            raise UsageError(f"{where}: {key!r} cannot be set in the grid: {_SET_BY_SWEEP[key]}")
        tp = _field_types().get(key)
        if isinstance(value, list) and _value_depth(value) == (_depth(tp) if tp is not None else 0) + 1:
            if not value:
                raise UsageError(f"{where}: {key} has an empty list of values; give at least one")
            varied[key] = [_coerce(key, v, where) for v in value]
        else:
            fixed[key] = _coerce(key, value, where)
    return fixed, varied


def normalize_spec(spec: Mapping, where: str = "sweep spec") -> dict:
    """Check a spec's shape and coerce its values to RunConfig's field types; returns a plain dict with
    every key present (``seeds`` defaults to the base's seed, ``grid`` to one point: the base)."""
    if not isinstance(spec, Mapping):
        raise UsageError(f"{where} must be a JSON object with keys {', '.join(_SPEC_KEYS)}")
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown keys {', '.join(unknown)} (known: {', '.join(_SPEC_KEYS)})")
    base = spec.get("base") or {}
    if not isinstance(base, Mapping):
        raise UsageError(f"{where}: 'base' must be an object of RunConfig fields")
    base = {k: _coerce(k, v, f"{where}, base") for k, v in base.items()}
    if "out" in base:
        raise UsageError(f"{where}, base: 'out' is set by the sweep (each run goes to DIR/runs/<run id>)")
    grid = spec.get("grid", [{}])
    if not isinstance(grid, list) or not grid or not all(isinstance(e, Mapping) for e in grid):
        raise UsageError(f"{where}: 'grid' must be a non-empty list of objects, e.g. [{{\"strategy\": \"naive\"}}]")
    for i, entry in enumerate(grid):
        _split_entry(entry, f"{where}, grid entry {i + 1}")  # raises on bad entries
    seeds = spec.get("seeds")
    if seeds is None:
        seeds = [base.pop("seed", RunConfig.__dataclass_fields__["seed"].default)]
    elif "seed" in base:
        raise UsageError(f"{where}: give either base.seed or 'seeds', not both")
    if not isinstance(seeds, list) or not seeds:
        raise UsageError(f"{where}: 'seeds' must be a non-empty list of integers like [0, 1, 2]")
    seeds = list(dict.fromkeys(_coerce("seed", s, f"{where}, seeds") for s in seeds))
    select = spec.get("select", False)
    if not isinstance(select, bool):
        raise UsageError(f"{where}: 'select' must be true or false")
    from .report.files import to_jsonable

    return to_jsonable({"base": base, "grid": [dict(e) for e in grid], "seeds": seeds, "select": select})


@dataclasses.dataclass(frozen=True)
class _Point:
    cfg: RunConfig  # resolved; out not set
    entry: int  # index of the grid entry
    params: dict  # the values of the entry's list-valued fields at this point


def _label(params: Mapping) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ("/" if v and isinstance(v[0], (list, tuple)) else ",").join(_fmt(x) for x in v)
    return str(v)


def _points(spec: dict) -> list[_Point]:
    """Every (grid point, seed) of a normalized spec, validated; duplicates (same run id) dropped."""
    combos = []
    for i, entry in enumerate(spec["grid"]):
        fixed, varied = _split_entry(entry, f"grid entry {i + 1}")
        for values in itertools.product(*varied.values()):
            combos.append((i, fixed, dict(zip(varied, values))))
    n = len(combos) * len(spec["seeds"])
    points, seen, k = [], set(), 0
    for i, fixed, params in combos:
        for seed in spec["seeds"]:
            k += 1
            d = {**spec["base"], **fixed, **params, "seed": seed}
            where = f"sweep run {k} of {n} (grid entry {i + 1}{', ' + _label(params) if params else ''}, seed {seed})"
            cfg = _validated(lambda: RunConfig.from_dict(d), where)
            if cfg.run_id() not in seen:
                seen.add(cfg.run_id())
                points.append(_Point(cfg, i, params))
    return points


def _validated(make: Callable[[], RunConfig], where: str) -> RunConfig:
    try:
        return make().resolved()
    except UsageError as e:
        raise UsageError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise UsageError(f"{where}: invalid value ({e})") from None


def expand(spec: Mapping) -> list[RunConfig]:
    """The resolved, validated configs a spec describes, in order: grid entries, their cross products,
    then seeds innermost. Raises UsageError for the first invalid one (saying which)."""
    return [p.cfg for p in _points(normalize_spec(spec))]


def _spec_id(spec: Mapping) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


# ---- running jobs -------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Job:
    cfg: RunConfig  # resolved, out set
    phase: str  # "run" (plain sweep), "validation" or "final" (selection)
    method: str = ""
    params: dict = dataclasses.field(default_factory=dict)
    selection: dict | None = None  # written into results.json under "selection" (final runs)
    status: str = "pending"
    outcome: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = self.cfg.run_id()  # computed once: the index is rewritten after every run
        self.config = self.cfg.to_dict()

    def record(self, root: Path) -> dict:
        try:
            run_dir = Path(self.cfg.out).relative_to(root).as_posix()
        except ValueError:
            run_dir = str(self.cfg.out)
        rec = {"id": self.id, "phase": self.phase, "method": self.method, "strategy": self.cfg.strategy,
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


def _summary(results: Mapping) -> dict:
    return {"metrics": results.get("metrics"), "val_metrics": results.get("val_metrics")}


def _run_job(cfg: RunConfig, threads: int | None) -> dict:
    """Run one config (in this process or a worker); never raises for a failing run."""
    if threads is not None and cfg.threads is None:
        import torch

        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        import importlib

        run = importlib.import_module("lifelong.train.run").run  # looked up at call time: tests patch it
        results = run(cfg, overwrite=True)
        return {"status": "done", "seconds": round(time.perf_counter() - t0, 3), **_summary(results)}
    except LifelongError as e:
        return {"status": "failed", "error": type(e).__name__, "message": str(e)}
    except Exception as e:  # noqa: BLE001 - one broken run must not stop the others; the message says what
        return {"status": "failed", "error": type(e).__name__, "message": f"{type(e).__name__}: {e}"}


def _finished(job: _Job) -> dict | None:
    """The results of a finished run of ``job`` in its folder, or None."""
    try:
        results = json.loads((Path(job.cfg.out) / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return results if results.get("run_id") == job.id else None


def _check_folders(jobs: Sequence[_Job], overwrite: bool) -> None:
    """Refuse, before anything runs, a run folder that holds a different run (unless ``overwrite``)."""
    if overwrite:
        return
    for job in jobs:
        previous = Path(job.cfg.out) / "config.json"
        try:
            old = json.loads(previous.read_text()).get("run_id")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if old != job.id:
            raise UsageError(f"{job.cfg.out} holds another run ({old}); choose another --out or pass --overwrite")


def _write_selection(job: _Job, results: dict | None = None) -> None:
    """Put ``job.selection`` into its results.json (atomically), unless it is there already."""
    if job.selection is None:
        return
    from .report.files import to_jsonable, write_json

    path = Path(job.cfg.out) / "results.json"
    results = results if results is not None else json.loads(path.read_text())
    if results.get("selection") != to_jsonable(job.selection):
        write_json(path, {**results, "selection": job.selection})


# ---- selection ----------------------------------------------------------------------------------------------------


def _choose(method: str, jobs: Sequence[_Job], seeds: Sequence[int], val_fraction: float) -> dict:
    """The candidate with the best mean validation score over seeds (first in grid order on ties)."""
    by_params: dict[str, list[_Job]] = {}
    for job in jobs:
        by_params.setdefault(json.dumps(job.params, sort_keys=True), []).append(job)
    candidates = []
    for group in by_params.values():
        scores = {}
        for job in group:
            val = job.outcome.get("val_metrics") if job.status in ("done", "skipped") else None
            scores[job.cfg.seed] = None if val is None else val.get("average_accuracy")
        ok = all(v is not None for v in scores.values())
        candidates.append({
            "params": group[0].params,
            "val_average_accuracy": statistics.fmean(scores.values()) if ok else None,
            "per_seed": {str(s): v for s, v in scores.items()},
            "run_ids": [j.id for j in group],
            **({} if ok else {"failed": [j.outcome.get("message") for j in group if j.status == "failed"]}),
        })
    scored = [c for c in candidates if c["val_average_accuracy"] is not None]
    best = max(scored, key=lambda c: c["val_average_accuracy"]) if scored else None
    return {
        "method": method,
        "params": None if best is None else best["params"],
        "scored_on": "validation",
        "score": f"mean over seeds of {SCORE}: final average accuracy on a validation split held out of the "
                 f"training data (val_fraction={val_fraction:g})",
        "val_fraction": val_fraction,
        "seeds": list(seeds),
        "candidates": candidates,
        **({} if best else {"message": "every candidate failed on some seed; nothing to choose"}),
    }


# ---- the index: runs jobs, keeps sweep.json up to date -------------------------------------------------------------


class _Index:
    """The jobs of a sweep and their statuses; ``run(jobs)`` runs them and rewrites ``sweep.json``."""

    def __init__(self, spec: dict, root: Path, workers: int, quiet: bool):
        self.spec, self.root, self.workers, self.quiet = spec, root, workers, quiet
        self.jobs: list[_Job] = []
        self.selection: list[dict] | None = [] if spec.get("select") else None

    def as_dict(self) -> dict:
        counts = {s: sum(j.status == s for j in self.jobs) for s in ("done", "skipped", "failed", "pending")}
        d = {"spec": self.spec, "out": str(self.root), "workers": self.workers, "counts": counts,
             "failed": [j.id for j in self.jobs if j.status == "failed"],
             "runs": [j.record(self.root) for j in self.jobs]}
        if self.selection is not None:
            d["selection"] = self.selection
        return d

    def save(self) -> None:
        from .report.files import write_json

        write_json(self.root / "sweep.json", self.as_dict())

    def run(self, jobs: Sequence[_Job], overwrite: bool) -> None:
        """Run the jobs not finished before: in this process, or ``workers`` spawned processes."""
        _check_folders(jobs, overwrite)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(
                f"cannot create the sweep folder {self.root}: {e.strerror}; choose another --out"
            ) from None
        self.jobs.extend(jobs)
        todo = []
        for job in jobs:
            results = _finished(job)
            if results is None:
                todo.append(job)
            else:
                _write_selection(job, results)
                self._finish(job, {"status": "skipped", **_summary(results)})
        self.save()
        n_proc = min(self.workers, len(todo))
        if n_proc <= 1:
            for job in todo:
                self._finish(job, _run_job(job.cfg, None))
            return
        # PyTorch's OpenMP threads spin while they wait: N processes using all cores each stall one another.
        threads = max(1, (os.cpu_count() or 1) // n_proc)
        with ProcessPoolExecutor(n_proc, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_run_job, dataclasses.replace(j.cfg, progress=False), threads): j for j in todo}
            try:
                for future in as_completed(futures):
                    try:
                        outcome = future.result()
                    except Exception as e:  # noqa: BLE001 - the worker process died (killed, out of memory)
                        outcome = {"status": "failed", "error": type(e).__name__,
                                   "message": f"worker process failed: {e!r}"}
                    self._finish(futures[future], outcome)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    def _finish(self, job: _Job, outcome: dict) -> None:
        job.status, job.outcome = outcome["status"], outcome
        if job.status == "done":
            _write_selection(job)
        if job.status != "skipped":
            self.save()
        if self.quiet:
            return
        k = sum(j.status != "pending" for j in self.jobs)
        what = f"{job.cfg.strategy}{' ' + _label(job.params) if job.params else ''} seed={job.cfg.seed}"
        if job.status == "failed":
            detail = f"FAILED: {outcome['message']}"
        else:
            metrics = outcome.get("val_metrics") if job.phase == "validation" else outcome.get("metrics")
            acc = (metrics or {}).get("average_accuracy")
            name = "validation" if job.phase == "validation" else "test"
            detail = f"{name} average accuracy {'n/a' if acc is None else f'{100 * acc:.2f}%'}"
            detail += " (finished before)" if job.status == "skipped" else ""
        print(f"[{k}/{len(self.jobs)}] {job.status:<7} {what}: {detail}  -> {job.cfg.out}", flush=True)


# ---- the sweep ----------------------------------------------------------------------------------------------------


def sweep(
    spec: Mapping | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    workers: int = 1,
    select: bool | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> dict:
    """Run every config of ``spec`` (a dict or a JSON file) into ``out``; return the sweep index.

    ``out`` defaults to ``sweeps/sweep-<hash of the spec>``. ``workers`` > 1 runs that many spawned
    processes, each with ``cpu_count // workers`` PyTorch threads unless the config sets ``threads``.
    ``select`` (default: the spec's ``select``) first chooses each method's hyperparameters on a
    validation split (see the module docstring). A failing run is recorded (``status: failed`` with its
    message; its id in ``index["failed"]``) and does not stop the others. The index is also written to
    ``out/sweep.json``, after every run. ``overwrite``: reuse run folders that hold other runs.
    """
    spec = load_spec(spec) if isinstance(spec, (str, os.PathLike)) else normalize_spec(spec)
    if select is not None:
        spec["select"] = bool(select)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    points = _points(spec)  # every config is validated before anything is created
    root = Path(out) if out is not None else Path("sweeps") / f"sweep-{_spec_id(spec)}"
    methods: dict[tuple[int, str], list[_Point]] = {}
    for p in points:
        methods.setdefault((p.entry, p.cfg.strategy), []).append(p)
    names = _method_names(spec, methods)

    def job(cfg: RunConfig, phase: str, p: _Point, folder: str) -> _Job:
        if workers > 1:
            cfg = dataclasses.replace(cfg, progress=False)
        cfg = dataclasses.replace(cfg, out=str(root / folder / cfg.run_id()))
        return _Job(cfg, phase, names[(p.entry, p.cfg.strategy)], p.params)

    book = _Index(spec, root, workers, quiet)
    if not spec["select"]:
        book.run([job(p.cfg, "run", p, "runs") for p in points], overwrite)
        return _done(book)

    # Selection. Both variants of every candidate (split held out, then not) are validated up front.
    if any("val_fraction" in p.params for p in points):
        raise UsageError("val_fraction cannot be varied in a sweep with selection: it sets the validation split")
    val_jobs, finals = [], {}
    for key, pts in methods.items():
        several = len({json.dumps(p.params, sort_keys=True) for p in pts}) > 1
        for p in pts:
            where = f"{names[key]} {_label(p.params)} seed {p.cfg.seed}"
            vf = p.cfg.val_fraction or DEFAULT_VAL_FRACTION
            val_cfg = _validated(lambda: dataclasses.replace(p.cfg, val_fraction=vf), where)
            finals[id(p)] = _validated(lambda: dataclasses.replace(p.cfg, val_fraction=0.0), where)
            if several:  # a single candidate needs no validation runs
                val_jobs.append(job(val_cfg, "validation", p, "validation"))
    if not quiet:
        print(f"sweep: selecting on validation; {len(val_jobs)} validation runs -> {root}", flush=True)
    book.run(val_jobs, overwrite)

    final_jobs: list[_Job] = []
    for key, pts in methods.items():
        name = names[key]
        vjobs = [j for j in val_jobs if j.method == name]
        vf = pts[0].cfg.val_fraction or DEFAULT_VAL_FRACTION
        if vjobs:
            choice = _choose(name, vjobs, spec["seeds"], vf)
        else:
            choice = {"method": name, "params": pts[0].params, "scored_on": None,
                      "note": "one candidate: nothing to select, no validation runs", "candidates": []}
        book.selection.append(choice)
        if not quiet:
            chosen = _label(choice["params"]) or "(fixed)" if choice["params"] is not None else "none: all failed"
            print(f"selected for {name}: {chosen}", flush=True)
        for p in pts:
            if choice["params"] is not None and p.params == choice["params"]:
                j = job(finals[id(p)], "final", p, "runs")
                j.selection = choice
                if all(j.id != f.id for f in final_jobs):
                    final_jobs.append(j)
    from .report.files import write_json

    write_json(root / "selection.json", {"scored_on": "validation", "score": SCORE, "seeds": spec["seeds"],
                                         "methods": book.selection})
    book.run(final_jobs, overwrite)
    return _done(book)


def _done(book: _Index) -> dict:
    book.save()
    result = book.as_dict()
    if not book.quiet:
        c = result["counts"]
        print(f"sweep: {c['done']} run, {c['skipped']} finished before, {c['failed']} failed -> "
              f"{book.root / 'sweep.json'}; compare with `lifelong compare {book.root}`", flush=True)
    return result


def _method_names(spec: dict, methods: Mapping[tuple[int, str], list[_Point]]) -> dict[tuple[int, str], str]:
    """A name per (grid entry, strategy): the strategy, plus the entry's fixed values where two methods
    would otherwise share a name."""
    names = {key: key[1] for key in methods}
    taken = [n for n in names.values()]
    for key in methods:
        if taken.count(key[1]) > 1:
            fixed, _ = _split_entry(spec["grid"][key[0]], "grid")
            fixed.pop("strategy", None)
            names[key] = f"{key[1]} ({_label(fixed) or f'grid entry {key[0] + 1}'})"
    return names


def _error_of(outcome: Mapping) -> LifelongError:
    """The error a failed run's outcome describes, as its LifelongError type (for callers that raise)."""
    kind = getattr(errors, str(outcome.get("error")), None)
    kind = kind if isinstance(kind, type) and issubclass(kind, LifelongError) else LifelongError
    return kind(outcome.get("message") or "the run failed")
