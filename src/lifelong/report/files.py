"""Run outputs on disk: JSON results, the accuracy matrix as CSV, and the standard plots.

Every file is written atomically through :mod:`lifelong._io` (temporary file in the same folder,
fsync, rename), so a crash leaves either the previous file or the new one, never half of one.

Example
-------
>>> import tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> R = np.array([[0.1, 0.1], [0.9, 0.2], [0.7, 0.8]])
>>> p = write_matrix_csv(f"{d}/R.csv", R, ["t1", "t2"])
>>> print(p.read_text(), end="")
after,t1,t2
init,0.100000,0.100000
t1,0.900000,0.200000
t2,0.700000,0.800000
>>> R2, names = read_matrix_csv(p)
>>> names, bool((R2 == R).all())
(['t1', 't2'], True)
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lifelong import _io
from lifelong.errors import DataError, UsageError
from lifelong.eval.metrics import check_accuracy_matrix
from lifelong.report.plots import _check_task_names, plot_accuracy_curves, plot_accuracy_matrix, plot_capacity

__all__ = [
    "results_problem",
    "to_jsonable",
    "write_json",
    "write_matrix_csv",
    "read_matrix_csv",
    "write_run_outputs",
    "RUN_OUTPUT_FILES",
]

#: Keys of :func:`write_run_outputs`' return value and the file each one names.
RUN_OUTPUT_FILES = {
    "accuracy_matrix_csv": "accuracy_matrix.csv",
    "accuracy_curves_png": "accuracy_curves.png",
    "accuracy_matrix_png": "accuracy_matrix.png",
    "results_json": "results.json",
}

#: Written beside them when the results hold a ``capacity`` (parameter isolation).
CAPACITY_PNG = "capacity.png"
ANYTIME_PNG = "anytime.png"
#: a further evaluation scenario's plots (results["eval_scenarios"]): the curves and the matrix, per scenario
EVAL_PNGS = tuple(f"accuracy_{kind}-{e}.png" for e in ("task", "class") for kind in ("curves", "matrix"))

_REQUIRED_RESULT_KEYS = ("task_names", "accuracy_matrix", "metrics")


def _is_tensor(obj: Any) -> bool:
    # Look torch up only if something already imported it: no tensor can exist otherwise, and
    # this keeps `import lifelong.report` free of the torch import cost.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def results_problem(results: Any) -> str | None:
    """Why ``results`` (a results.json's content) cannot be read as a run's results, or None: it must be
    an object with a run id, a valid accuracy matrix, one task name (a string) per column, and metrics
    (and validation metrics, if any) that are objects of numbers or nulls."""
    if not isinstance(results, Mapping):
        return "not a JSON object"
    if not isinstance(results.get("run_id"), str):
        return "no run id"
    try:
        A = check_accuracy_matrix(results.get("accuracy_matrix"))
    except (UsageError, ValueError, TypeError):
        return "no valid accuracy matrix"
    names = results.get("task_names")
    if not (isinstance(names, list) and len(names) == A.shape[1] and all(isinstance(n, str) for n in names)):
        return f"task_names must list {A.shape[1]} names"
    for key in ("metrics", "val_metrics"):
        m = results.get(key)
        if key == "val_metrics" and m is None:
            continue
        if not isinstance(m, Mapping) or not all(
                isinstance(k, str) and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))
                for k, v in m.items()):
            return f"{key} must be an object of numbers"
        bad = next((k for k, v in m.items() if v is not None and not (math.isfinite(v) and -1.0 <= v <= 1.0)
                    and k in RATES), None)
        if bad is not None:
            return f"{key}.{bad} is {m[bad]!r}, not a rate in [-1, 1]"
    problem = _metrics_problem(results, A)
    evals = results.get("eval_scenarios")
    if problem is None and evals is not None:  # each further scenario: its own matrix, its metrics from it
        if not isinstance(evals, Mapping):
            return "eval_scenarios must be an object of scenarios"
        for name, e in evals.items():
            try:
                B = check_accuracy_matrix(e.get("accuracy_matrix") if isinstance(e, Mapping) else None)
            except (UsageError, ValueError, TypeError):
                return f"eval_scenarios.{name} has no valid accuracy matrix"
            if B.shape != A.shape or not isinstance(e.get("metrics"), Mapping):
                return f"eval_scenarios.{name} must hold a matrix of the run's shape and its metrics"
            problem = _metrics_problem({**results, "scenario": name, "metrics": e["metrics"]}, B)
            if problem is not None:
                return f"eval_scenarios.{name}: {problem}"
    return problem


#: metrics that are rates (accuracies and their differences): within [-1, 1]
RATES = ("average_accuracy", "backward_transfer", "forward_transfer", "forgetting", "intransigence")


def _metrics_problem(results: Mapping, A) -> str | None:
    """The test metrics must be those of the accuracy matrix beside them (one source: the matrix): a
    metric that differs was edited, or belongs to another run. A metric undefined for this matrix may
    hold a number written by an older version."""
    from lifelong.eval.metrics import summarize

    scenario = results.get("scenario") if isinstance(results.get("scenario"), str) else None
    steps = results.get("steps_per_task")
    steps = steps if isinstance(steps, list) and all(isinstance(s, int) for s in steps) else None
    try:
        ours = summarize(A, scenario=scenario, steps_per_task=steps)
    except (UsageError, ValueError):
        return None
    for k, v in results["metrics"].items():
        if k in ours and ours[k] is not None and (v is None or abs(v - ours[k]) > 1e-6):
            return f"metrics.{k} is {v!r} but the accuracy matrix gives {ours[k]:.6g}"
    return None


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` recursively into plain JSON types (dict, list, str, int, float, bool, None).

    * NumPy arrays, torch tensors → nested lists; NumPy / 0-d scalars → Python scalars;
    * NaN and ±inf → ``None`` (JSON has no non-finite numbers);
    * ``Path`` → ``str``; ``Enum`` → its value; dataclass instances → dict of their fields;
    * tuples, lists → lists; sets → sorted lists; mapping keys → ``str``.

    Raises ``TypeError`` for anything else, like ``json.dumps`` does.

    >>> import numpy as np
    >>> to_jsonable({"a": np.array([0.5, np.nan]), 1: (np.int64(2), float("inf"))})
    {'a': [0.5, None], '1': [2, None]}
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)  # also unwraps int subclasses such as IntEnum
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if _is_tensor(obj):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        items = [to_jsonable(v) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    raise TypeError(
        f"cannot convert {type(obj).__name__} to JSON; convert it to a dict, list or number first"
    )


def _key(k: Any) -> str:
    k = to_jsonable(k)
    return k if isinstance(k, str) else str(k)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``to_jsonable(obj)`` as indented JSON to ``path``, atomically. Returns the path."""
    return _io.atomic_write_json(path, to_jsonable(obj))


def write_matrix_csv(path: str | os.PathLike, R: ArrayLike, task_names: Sequence[str]) -> Path:
    """Write the accuracy matrix ``R`` (``(T+1, T)``) as CSV, atomically. Returns the path.

    Header ``after,<task_names...>``; then one row per matrix row, whose first cell says after which
    task it was measured (``init`` for row 0, then ``task_names[0..T-1]``), values with 6 decimals.
    Inverse: :func:`read_matrix_csv`.
    """
    A = check_accuracy_matrix(R)
    names = _check_task_names(task_names, A.shape[1])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["after", *names])
    for label, row in zip(["init", *names], A):
        w.writerow([label, *(f"{x:.6f}" for x in row)])
    return _io.atomic_write_text(path, buf.getvalue())


def read_matrix_csv(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a file written by :func:`write_matrix_csv`: returns ``(R, task_names)``.

    Raises :class:`DataError` if the file does not have that layout.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise DataError(f"cannot read accuracy matrix {path}: {e.strerror}") from None
    if not rows or not rows[0] or rows[0][0] != "after":
        raise DataError(f"{path} is not an accuracy-matrix CSV: its header must start with 'after'")
    names = rows[0][1:]
    T = len(names)
    labels = ["init", *names]
    if [r[0] if r else "" for r in rows[1:]] != labels or any(len(r) != T + 1 for r in rows[1:]):
        raise DataError(
            f"{path} is not an accuracy-matrix CSV: expected {T + 1} rows labelled {labels} "
            f"with {T} values each"
        )
    try:
        R = check_accuracy_matrix([[float(x) for x in r[1:]] for r in rows[1:]])
    except (ValueError, UsageError) as e:
        raise DataError(f"{path} holds an invalid accuracy matrix: {e}") from None
    return R, names


def write_run_outputs(run_dir: str | os.PathLike, results: Mapping[str, Any]) -> dict[str, Path]:
    """Write a run's standard outputs into ``run_dir`` (created if needed); return their paths.

    ``results`` must hold ``task_names`` (list of T names), ``accuracy_matrix`` (``(T+1) × T``,
    see :mod:`lifelong.eval.metrics`) and ``metrics``; an optional ``title`` (str) heads the plots.
    Writes ``accuracy_matrix.csv``, ``accuracy_curves.png``, ``accuracy_matrix.png`` and, last,
    ``results.json`` (all of ``to_jsonable(results)``), so a ``results.json`` that exists marks a
    complete set. Returned keys are those of :data:`RUN_OUTPUT_FILES`.
    """
    missing = [k for k in _REQUIRED_RESULT_KEYS if k not in results]
    if missing:
        raise UsageError(
            f"results lack the keys {missing}; expected at least {list(_REQUIRED_RESULT_KEYS)}"
        )
    R = check_accuracy_matrix(results["accuracy_matrix"])
    names = _check_task_names(results["task_names"], R.shape[1])
    title = results.get("title")
    jsonable = to_jsonable(results)  # fail on unconvertible values before writing anything

    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(
            f"cannot create run folder {run_dir}: {e.strerror}; choose a writable folder"
        ) from None
    paths = {key: run_dir / name for key, name in RUN_OUTPUT_FILES.items()}
    write_matrix_csv(paths["accuracy_matrix_csv"], R, names)
    plot_accuracy_curves(R, names, paths["accuracy_curves_png"], title=title)
    plot_accuracy_matrix(R, names, paths["accuracy_matrix_png"], title=title)
    if results.get("anytime"):  # a task-free stream: the accuracy curve against samples seen
        from .plots import plot_anytime

        paths["anytime_png"] = plot_anytime(results["anytime"], run_dir / ANYTIME_PNG, title=title)
    if results.get("capacity"):  # parameter isolation: what each task uses
        paths["capacity_png"] = plot_capacity(results["capacity"], names, run_dir / CAPACITY_PNG, title=title)
    for e, scored in (results.get("eval_scenarios") or {}).items():  # the same model in a further scenario
        E = check_accuracy_matrix(scored["accuracy_matrix"])
        sub = f"{title + ', ' if title else ''}evaluated in the {e} scenario"
        paths[f"accuracy_curves_{e}_png"] = plot_accuracy_curves(E, names, run_dir / f"accuracy_curves-{e}.png", title=sub)
        paths[f"accuracy_matrix_{e}_png"] = plot_accuracy_matrix(E, names, run_dir / f"accuracy_matrix-{e}.png", title=sub)
    _io.atomic_write_json(paths["results_json"], jsonable)
    return paths
