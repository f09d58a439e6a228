"""Compare methods across run folders: one table of methods × metrics, mean ± std over seeds.

:func:`compare` collects every run folder (a folder holding ``results.json`` and ``config.json``) under
the given paths, groups the runs into methods and writes ``compare.md``, ``compare.csv`` and
``compare.png``. The choices it makes:

* **A method** is a config without the fields that do not change the numbers (the seed and RunConfig's
  fields left out of the run id: ``out``, ``data_dir``, ``threads``, ``progress``, ...). Runs of one
  method differ only by seed; the same run (same run id) found twice counts once.
* **Labels**: the strategy, plus the config values that differ between the methods of the table, e.g.
  ``ewc (lam=100)``. A value only some strategies read (EWC's λ) is left out of the label of a
  strategy that does not read it (see :func:`lifelong.experiments.fields.applies_to`) unless two labels
  would then be equal.
* **Mixed benchmarks or scenarios** are compared side by side, not refused: methods are grouped per
  benchmark and scenario, labels get a ``benchmark/scenario:`` prefix, and a note says so. Values that
  differ only because the streams differ (the number of tasks, say) are not repeated in the labels.
* **Cells** are mean ± sample standard deviation (``ddof=1``) over seeds. With one seed the spread is
  unknown: the cell shows the mean alone (the CSV leaves the std empty, the returned data has None)
  rather than "± 0.00", which would claim a spread that was never measured. A metric missing or null
  in some runs (BWT of a one-task stream) gets its own count, shown as ``(n=k)`` in the cell.
* **Metrics** are names in results.json's ``metrics`` (``average_accuracy``, ``backward_transfer``, ...),
  other top-level numbers (``peak_memory_bytes``) or dotted paths (``val_metrics.average_accuracy``,
  ``timings.total_seconds``). Those under ``metrics`` and ``val_metrics`` are fractions, shown as
  percentages with 2 decimals; anything else is shown as is, with 2 decimals. The CSV holds the raw
  values (fractions) with full precision.
* **Validation runs** of a sweep's hyperparameter selection (phase ``validation`` in its
  ``sweep.json``) are left out unless given directly: they were trained with part of the training
  data held out, so they are not the method's results.

Example
-------
>>> import json, tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> for seed, acc in [(0, 0.8), (1, 0.9)]:
...     d = root / f"run{seed}"; d.mkdir()
...     _ = (d / "config.json").write_text(json.dumps({"run_id": f"r{seed}", "benchmark": "split-mnist",
...                                                    "scenario": "task", "strategy": "naive", "seed": seed}))
...     _ = (d / "results.json").write_text(json.dumps({"run_id": f"r{seed}", "accuracy_matrix": [[0.5], [acc]],
...                                                     "task_names": ["t1"], "metrics": {"average_accuracy": acc}}))
>>> table = compare([root], metrics=["average_accuracy"], write=False, quiet=True)
>>> row = table["rows"][0]
>>> row["label"], row["n"], round(row["values"]["average_accuracy"]["mean"], 6)
('naive', 2, 0.85)
>>> print(table["text"])
method  average_accuracy (%)  n
------  --------------------  -
naive           85.00 ± 7.07  2
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lifelong import _io
from lifelong.errors import UsageError
from lifelong.eval.metrics import average_accuracy_curve, check_accuracy_matrix
from lifelong.report.files import results_problem

__all__ = ["DEFAULT_METRICS", "compare", "find_runs", "format_markdown", "format_text"]

DEFAULT_METRICS = ("average_accuracy", "backward_transfer", "forward_transfer", "forgetting")
_FRACTION_SECTIONS = ("metrics", "val_metrics")  # values in [0, 1], shown in percent
_STD_NOTE = "mean ± sample std (ddof=1) over seeds; n = number of seeds; one seed: the mean alone"


def _not_method_fields() -> set[str]:
    """Config keys that do not define a method: the seed, the run id, and the fields RunConfig leaves out
    of the run id because they do not change the numbers."""
    from lifelong.experiments.config import NOT_IN_ID

    return set(NOT_IN_ID) | {"seed", "run_id", "config_version", "out", "data_dir", "threads", "progress", "download"}


def flat_config(config: dict) -> dict:
    """A config.json as one flat dict: the strategy's settings spread as keys (``lam``; ``ewc.lam`` in a
    composite), so that methods are grouped and labelled by them. Version-1 configs are flat already."""
    from lifelong.experiments.config import ADDED_IN_ID

    c = {**ADDED_IN_ID, **config}  # a field newer than the run's config has its default there
    settings = c.pop("settings", None)
    if isinstance(settings, dict):
        if "+" in str(c.get("strategy")):
            for part, values in settings.items():
                if isinstance(values, dict):
                    c.update({f"{part}.{k}": v for k, v in values.items()})
        else:
            c.update(settings)
    return c


# ---- finding and reading runs -------------------------------------------------------------------------------------


def _is_run(d: Path) -> bool:
    return (d / "results.json").is_file() and (d / "config.json").is_file()


def find_runs(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """Run folders under ``paths`` (sorted, each once) and notes on what was left out.

    A path that is itself a run folder is always taken; below a path, runs that a ``sweep.json`` lists
    as validation runs of its hyperparameter selection are left out. Raises UsageError for a path that
    does not exist or when no run is found.
    """
    if not paths:
        raise UsageError("give at least one run folder or sweep folder to compare")
    runs: dict[Path, None] = {}
    validation: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise UsageError(f"{p} does not exist: give run folders or sweep folders (holding results.json)")
        if _is_run(p):
            runs[p.resolve()] = None
            continue
        for folder, subdirs, files in os.walk(p):
            d = Path(folder)
            subdirs.sort()
            if "sweep.json" in files:
                validation |= _validation_runs(d)
            if _is_run(d):
                subdirs.clear()  # a run folder holds no further runs
                runs.setdefault(d.resolve(), None)
    given = {Path(p).resolve() for p in paths}
    skipped = [r for r in runs if r in validation and r not in given]
    found = sorted(r for r in runs if r not in skipped)
    notes = []
    if skipped:
        notes.append(f"left out {len(skipped)} validation runs of hyperparameter selection (give a run folder "
                     "directly to include it)")
    if not found:
        raise UsageError(f"no run folders (holding results.json and config.json) under {', '.join(map(str, paths))}; "
                         "give the folder of a `lifelong run` or `lifelong sweep`")
    return found, notes


def _validation_runs(sweep_dir: Path) -> set[Path]:
    try:
        index = json.loads((sweep_dir / "sweep.json").read_text())
        return {(sweep_dir / r["run_dir"]).resolve() for r in index.get("runs", ()) if r.get("phase") == "validation"}
    except (OSError, json.JSONDecodeError, TypeError, KeyError, AttributeError):
        return set()


def _load(d: Path) -> dict | None:
    try:
        config = json.loads((d / "config.json").read_text())
        results = json.loads((d / "results.json").read_text())
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
        return None
    if not isinstance(config, dict) or results_problem(results) is not None:
        return None
    if config.get("run_id") != results.get("run_id"):
        return None  # the folder mixes two runs: its numbers are not this config's
    return {"dir": d, "config": flat_config(config), "results": results,
            "id": config.get("run_id") or results.get("run_id") or str(d)}


# ---- metrics ------------------------------------------------------------------------------------------------------


_MISSING = object()


def _lookup(results: dict, path: tuple[str, ...]) -> Any:
    v: Any = results
    for part in path:
        if not isinstance(v, dict) or part not in v:
            return _MISSING
        v = v[part]
    return v


def _resolve(metric: str, runs: list[dict]) -> tuple[str, ...]:
    """Where a metric lives in results.json: a dotted path as given; a bare name in ``metrics`` if any
    run has it there, else at the top level (``peak_memory_bytes``). UsageError if no run has it."""
    candidates = [tuple(metric.split("."))] if "." in metric else [("metrics", metric), (metric,)]
    for path in candidates:
        if any(_lookup(r["results"], path) is not _MISSING for r in runs):
            return path
    available = sorted(runs[0]["results"].get("metrics") or {})
    extra = [f"val_metrics.{k}" for k in sorted(runs[0]["results"].get("val_metrics") or {})]
    raise UsageError(f"no run has the metric {metric!r}: choose from {', '.join(available + extra)} "
                     "(or a dotted path into results.json such as timings.total_seconds)")


def _undefined(results: dict, path: tuple[str, ...]) -> bool:
    """Forward transfer in the class-incremental scenario measures the initialization alone: left out
    (also for runs written before results.json said so)."""
    return path[-1] == "forward_transfer" and results.get("scenario") == "class"


def _value(results: dict, metric: str, path: tuple[str, ...]) -> float | None:
    if _undefined(results, path):
        return None
    v = _lookup(results, path)
    if v is _MISSING or v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UsageError(f"metric {metric!r} is not a number in the results (it is a {type(v).__name__}); "
                         "choose a numeric field such as average_accuracy or timings.total_seconds")
    return float(v) if math.isfinite(v) else None


def _stats(values: list[float]) -> dict:
    n = len(values)
    return {"mean": statistics.fmean(values) if n else None,
            "std": statistics.stdev(values) if n >= 2 else None,  # sample std, ddof=1
            "n": n}


# ---- grouping and labels ------------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return ("/" if v and isinstance(v[0], list) else ",").join(_fmt(x) for x in v)
    return "none" if v is None else str(v)


def _sortable(v: Any) -> tuple:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, json.dumps(v, sort_keys=True))


def _applies(key: str, strategy: str) -> bool:
    from lifelong.experiments.fields import applies_to

    try:
        return applies_to(key, strategy)
    except Exception:  # noqa: BLE001 - labels only: when unsure, show the value
        return True


def _groups(runs: list[dict]) -> list[dict]:
    """Methods: runs grouped by config without seed and the fields that do not change results."""
    skip = _not_method_fields()
    groups: dict[str, dict] = {}
    for r in runs:
        key_cfg = {k: v for k, v in r["config"].items() if k not in skip}
        key = json.dumps(key_cfg, sort_keys=True)
        g = groups.setdefault(key, {"config": key_cfg, "runs": []})
        if all(x["id"] != r["id"] for x in g["runs"]):
            g["runs"].append(r)
    for g in groups.values():
        g["runs"].sort(key=lambda r: (_sortable(r["config"].get("seed")), str(r["dir"])))
    return list(groups.values())


def _label_groups(groups: list[dict]) -> bool:
    """Set each group's block, strategy, params and label; return whether there are several blocks."""
    for g in groups:
        c = g["config"]
        g["benchmark"], g["scenario"], g["strategy"] = c.get("benchmark"), c.get("scenario"), c.get("strategy")
        g["block"] = f"{g['benchmark']}/{g['scenario']}"
    blocks = sorted({g["block"] for g in groups})
    for block in blocks:
        members = [g for g in groups if g["block"] == block]
        keys: list[str] = []
        for g in members:
            keys += [k for k in g["config"] if k not in keys and k not in ("strategy", "benchmark", "scenario")]
        differing = [k for k in keys if len({json.dumps(g["config"].get(k), sort_keys=True) for g in members}) > 1]
        for g in members:
            g["all_params"] = {k: g["config"].get(k) for k in differing}
            g["params"] = {k: v for k, v in g["all_params"].items() if _applies(k, g["strategy"])}
        for g in members:
            twins = [h for h in members if h["strategy"] == g["strategy"] and h["params"] == g["params"]]
            if len(twins) > 1:  # the filter made two labels equal: show everything for them
                for h in twins:
                    h["params_shown"] = h["all_params"]
        for g in members:
            shown = g.pop("params_shown", g["params"])
            g["params"] = shown
            inner = ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items())
            head = f"{g['block']}: " if len(blocks) > 1 else ""
            g["label"] = f"{head}{g['strategy']}{f' ({inner})' if inner else ''}"
    groups.sort(key=lambda g: (g["block"], str(g["strategy"]), [_sortable(v) for v in g["params"].values()],
                               g["label"]))
    return len(blocks) > 1


# ---- the table ----------------------------------------------------------------------------------------------------


def compare(
    paths: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike | None = None,
    metrics: Sequence[str] | None = None,
    write: bool = True,
    quiet: bool = False,
    memory: bool = False,
) -> dict:
    """Aggregate the run folders under ``paths`` into one methods × metrics table (see the module doc).

    ``memory``: add the column ``extra_memory_bytes`` (what each method keeps beside the model after the
    last task: a regularizer's importance and anchor, a replay memory, LwF's previous model; shown in
    MB) and write ``compare-memory.png``, accuracy against that memory (the memory-matched comparison).

    ``metrics``: names in results.json's ``metrics`` or dotted paths (``val_metrics.average_accuracy``);
    default :data:`DEFAULT_METRICS`. Prints the table unless ``quiet``; writes ``compare.md``,
    ``compare.csv`` and ``compare.png`` into ``out`` (default: the first path) unless ``write`` is False.
    Returns ``{"metrics", "percent", "rows", "notes", "text", "markdown", "files"}``; each row holds ``label``,
    ``strategy``, ``benchmark``, ``scenario``, ``params``, ``n``, ``seeds``, ``run_dirs`` and
    ``values[metric] = {"mean", "std", "n"}`` (fractions, as in results.json).
    """
    chosen = bool(metrics)
    metrics = list(metrics) if metrics else list(DEFAULT_METRICS)
    if memory and "extra_memory_bytes" not in metrics:
        metrics.append("extra_memory_bytes")
    dirs, notes = find_runs(paths)
    runs, broken = [], []
    for d in dirs:
        r = _load(d)
        (runs if r is not None else broken).append(r if r is not None else d)
    if broken:
        notes.append(f"left out {len(broken)} unreadable run folders (damaged JSON or results, or results.json and "
                     f"config.json of two different runs: a mixed folder): {', '.join(map(str, broken[:3]))}"
                     f"{' ...' if len(broken) > 3 else ''}")
    if not runs:
        raise UsageError(f"no readable runs under {', '.join(map(str, paths))}: their results.json or config.json "
                         "are not valid JSON")
    where = {m: _resolve(m, runs) for m in metrics}
    undefined = [m for m in metrics if any(_undefined(r["results"], where[m]) for r in runs)]
    if undefined and not chosen and all(_undefined(r["results"], where[m]) for m in undefined for r in runs):
        metrics = [m for m in metrics if m not in undefined]  # every run is class-incremental: no column
    for m in undefined:
        notes.append(f"{m} is left out of class-incremental runs: it is undefined there (the units of an unseen "
                     "class have never been trained, so the accuracy before training a task measures the "
                     "initialization alone)")

    groups = _groups(runs)
    if _label_groups(groups):
        notes.append("the runs span several benchmarks or scenarios: methods are grouped per benchmark/scenario "
                     "(label prefix); compare numbers within a group")
    rows = []
    for g in groups:
        values = {}
        for m in metrics:
            vals = [_value(r["results"], m, where[m]) for r in g["runs"]]
            values[m] = _stats([v for v in vals if v is not None])
        rows.append({
            "label": g["label"], "strategy": g["strategy"], "benchmark": g["benchmark"], "scenario": g["scenario"],
            "params": g["params"], "n": len(g["runs"]),
            "seeds": [r["config"].get("seed") for r in g["runs"]],
            "run_dirs": [str(r["dir"]) for r in g["runs"]],
            "values": values,
        })
    table = {"metrics": metrics, "percent": {m: where[m][0] in _FRACTION_SECTIONS for m in metrics},
             "rows": rows, "notes": notes}
    table["text"] = format_text(table)
    table["markdown"] = format_markdown(table)
    table["files"] = {}
    if write:
        table["files"] = _write(table, groups, Path(out) if out is not None else Path(paths[0]))
    if not quiet:
        print(table["text"])
        for note in notes:
            print(f"note: {note}")
        if table["files"]:
            print(f"-> {', '.join(str(p) for p in table['files'].values())}")
    return table


def _is_bytes(metric: str) -> bool:
    return metric == "extra_memory_bytes"  # shown in MB; other numbers as they are


def _cell(stats: dict, percent: bool, n_runs: int, scale: float | None = None) -> str:
    if stats["mean"] is None:
        return "n/a"
    scale = scale if scale is not None else 100.0 if percent else 1.0
    text = f"{scale * stats['mean']:.2f}"
    if stats["std"] is not None:
        text += f" ± {scale * stats['std']:.2f}"
    if stats["n"] != n_runs:
        text += f" (n={stats['n']})"
    return text


def _cells(table: dict) -> tuple[list[str], list[list[str]]]:
    pct = table["percent"]
    unit = {m: "%" if pct[m] else "MB" if _is_bytes(m) else "" for m in table["metrics"]}
    header = ["method", *(f"{m} ({unit[m]})" if unit[m] else m for m in table["metrics"]), "n"]
    body = [[r["label"], *(_cell(r["values"][m], pct[m], r["n"], 1e-6 if _is_bytes(m) else None)
                           for m in table["metrics"]), str(r["n"])]
            for r in table["rows"]]
    return header, body


def format_text(table: dict) -> str:
    """The table as aligned text for a terminal: method left-aligned, numbers right-aligned."""
    header, body = _cells(table)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in body)])


def format_markdown(table: dict) -> str:
    """The table as Markdown, with a line saying what the cells hold and the notes."""
    header, body = _cells(table)

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

    align = "|" + "|".join([":---", *("---:" for _ in header[1:])]) + "|"
    lines = [line(header), align, *(line(r) for r in body), "", f"Cells: {_STD_NOTE}; percentages with 2 decimals."]
    lines += [f"Note: {n}." for n in table["notes"]]
    return "\n".join(lines) + "\n"


def _csv_text(table: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "strategy", "benchmark", "scenario", "params", "n", "seeds",
                *(f"{m}_{s}" for m in table["metrics"] for s in ("mean", "std", "n"))])
    num = lambda v: "" if v is None else repr(float(v))  # noqa: E731 - full precision, empty for undefined
    for r in table["rows"]:
        w.writerow([r["label"], r["strategy"], r["benchmark"], r["scenario"], json.dumps(r["params"], sort_keys=True),
                    r["n"], " ".join(str(s) for s in r["seeds"]),
                    *(x for m in table["metrics"] for x in (num(r["values"][m]["mean"]), num(r["values"][m]["std"]),
                                                            r["values"][m]["n"]))])
    return buf.getvalue()


def _mean_curves(groups: list[dict], rows: list[dict]) -> tuple[dict[str, np.ndarray], list[str] | None]:
    """Average accuracy along the stream per method, mean over its seeds; shared task names if any."""
    curves, names = {}, []
    for g, row in zip(groups, rows):
        per_seed = []
        for r in g["runs"]:
            try:
                per_seed.append(average_accuracy_curve(check_accuracy_matrix(r["results"]["accuracy_matrix"])))
                names.append(tuple(r["results"].get("task_names") or ()))
            except (KeyError, UsageError):
                continue
        if per_seed and len({c.shape for c in per_seed}) == 1:
            curves[row["label"]] = np.mean(per_seed, axis=0)  # (T,)
    shared = list(names[0]) if names and len(set(names)) == 1 and names[0] else None
    if shared is not None and any(len(c) != len(shared) for c in curves.values()):
        shared = None
    return curves, shared


def _memory_points(table: dict) -> dict[str, tuple[float, float]]:
    """label -> (extra memory in bytes, average accuracy), when both columns are in the table."""
    if "extra_memory_bytes" not in table["metrics"] or "average_accuracy" not in table["metrics"]:
        return {}
    pts = {}
    for r in table["rows"]:
        mem, acc = r["values"]["extra_memory_bytes"]["mean"], r["values"]["average_accuracy"]["mean"]
        if mem is not None and acc is not None:
            pts[r["label"]] = (mem, acc)
    return pts


def _write(table: dict, groups: list[dict], out: Path) -> dict[str, Path]:
    from lifelong.report.plots import plot_comparison

    try:
        out.mkdir(parents=True, exist_ok=True)
        files = {"md": _io.atomic_write_text(out / "compare.md", table["markdown"]),
                 "csv": _io.atomic_write_text(out / "compare.csv", _csv_text(table))}
    except OSError as e:
        raise UsageError(f"cannot write the comparison into {out}: {e.strerror}; choose another --out") from None
    points = _memory_points(table)
    if points:
        from lifelong.report.plots import plot_accuracy_vs_memory

        files["memory_png"] = plot_accuracy_vs_memory(points, out / "compare-memory.png")
    curves, names = _mean_curves(groups, table["rows"])
    if curves:
        files["png"] = plot_comparison(curves, out / "compare.png", task_names=names,
                                       title="Average accuracy along the stream (mean over seeds)")
    return files
