"""The comparison table: methods × metrics, mean ± std over seeds; its text, Markdown and CSV forms and
its plots. Pure reporting: it takes methods already grouped (:mod:`lifelong.experiments.collect` does
that) as ``{"label", "strategy", "benchmark", "scenario", "params", "runs": [{"dir", "config",
"results", "id"}]}`` and knows nothing of configs.

* **Cells** are mean ± sample standard deviation (``ddof=1``) over seeds. With one seed the spread is
  unknown: the cell shows the mean alone (the CSV leaves the std empty, the returned data has None)
  rather than "± 0.00", which would claim a spread that was never measured. A metric missing or null
  in some runs (BWT of a one-task stream) gets its own count, shown as ``(n=k)`` in the cell.
* **Metrics** are names in results.json's ``metrics`` (``average_accuracy``, ``backward_transfer``, ...),
  other top-level numbers (``peak_memory_bytes``) or dotted paths (``val_metrics.average_accuracy``,
  ``timings.total_seconds``). Those under ``metrics`` and ``val_metrics`` are fractions, shown as
  percentages with 2 decimals; anything else is shown as is, with 2 decimals. The CSV holds the raw
  values (fractions) with full precision.
* Forward transfer is left out of class-incremental runs (undefined there), with a note.

Example
-------
>>> group = {"label": "naive", "strategy": "naive", "benchmark": "split-mnist", "scenario": "task", "params": {},
...          "runs": [{"dir": f"run{s}", "config": {"seed": s}, "id": f"r{s}",
...                    "results": {"metrics": {"average_accuracy": a}}} for s, a in [(0, 0.8), (1, 0.9)]]}
>>> table = build_table([group], ["average_accuracy"], [])
>>> row = table["rows"][0]
>>> row["label"], row["n"], round(row["values"]["average_accuracy"]["mean"], 6)
('naive', 2, 0.85)
>>> print(table["text"])
method       ACC (%)  n
------  ------------  -
naive   85.00 ± 7.07  2
<BLANKLINE>
ACC = average_accuracy
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io
from ..errors import UsageError
from ..eval.anytime import ANYTIME_METRICS  # a task-free run's default columns
from ..eval.metrics import average_accuracy_curve, check_accuracy_matrix

__all__ = ["DEFAULT_METRICS", "build_table", "format_markdown", "format_text", "write_table"]

DEFAULT_METRICS = ("average_accuracy", "backward_transfer", "forward_transfer", "forgetting")
_FRACTION_SECTIONS = ("metrics", "val_metrics")  # values in [0, 1], shown in percent
_STD_NOTE = "mean ± sample std (ddof=1) over seeds; n = number of seeds; one seed: the mean alone"


def build_table(groups: list[dict], metrics: Sequence[str] | None, notes: list[str], *, memory: bool = False) -> dict:
    """The table of ``groups`` (see the module docstring) over ``metrics`` (default :data:`DEFAULT_METRICS`;
    ``memory`` adds ``extra_memory_bytes``): ``{"metrics", "percent", "rows", "notes", "text", "markdown"}``;
    each row holds ``label``, ``strategy``, ``benchmark``, ``scenario``, ``params``, ``n``, ``seeds``,
    ``run_dirs`` and ``values[metric] = {"mean", "std", "n"}`` (fractions, as in results.json)."""
    chosen = bool(metrics)
    runs = [r for g in groups for r in g["runs"]]
    free = [isinstance(r["results"].get("anytime"), dict) for r in runs]
    # task-free runs: their curve's metrics; task-free and task runs together: both sets (n/a where undefined)
    default = ANYTIME_METRICS if all(free) and free else DEFAULT_METRICS + (ANYTIME_METRICS if any(free) else ())
    metrics = list(metrics) if metrics else list(default)
    if memory and "extra_memory_bytes" not in metrics:
        metrics.append("extra_memory_bytes")
    notes = list(notes)
    runs = [r for g in groups for r in g["runs"]]
    where = {m: _resolve(m, runs) for m in metrics}
    undefined = [m for m in metrics if any(_undefined(r["results"], where[m]) for r in runs)]
    if undefined and not chosen and all(_undefined(r["results"], where[m]) for m in undefined for r in runs):
        metrics = [m for m in metrics if m not in undefined]  # every run is class-incremental: no column
    for m in undefined:
        notes.append(f"{m} is left out of class-incremental runs: it is undefined there (the units of an unseen "
                     "class have never been trained, so the accuracy before training a task measures the "
                     "initialization alone)")
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
    table = {"metrics": metrics, "percent": {m: _is_fraction(where[m]) for m in metrics},
             "rows": rows, "notes": notes}
    table["text"] = format_text(table)
    table["markdown"] = format_markdown(table)
    return table


# ---- metrics --------------------------------------------------------------------------------


def _is_fraction(path: tuple[str, ...]) -> bool:
    """Rates in [0, 1], shown in percent: the ``metrics`` and ``val_metrics`` sections, and the metrics
    of a further evaluation scenario (``eval_scenarios.task.metrics.average_accuracy``)."""
    return path[0] in _FRACTION_SECTIONS or (len(path) >= 2 and path[-2] == "metrics")


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


# ---- formats and files ----------------------------------------------------------------------


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


TEXT_WIDTH = 120  # a terminal table fits in this many columns
# the terminal table's column names for the usual metrics (compare.md and compare.csv keep the full names)
_SHORT = {"average_accuracy": "ACC", "backward_transfer": "BWT", "forward_transfer": "FWT",
          "extra_memory_bytes": "memory", "intransigence": "intransig."}


def _short(metric: str) -> str:
    """A column's terminal name: ACC for average_accuracy, ``task ACC`` for a further evaluation
    scenario's (``eval_scenarios.task.metrics.average_accuracy``)."""
    parts = metric.split(".")
    if parts[0] == "eval_scenarios" and len(parts) == 4:
        return f"{parts[1]} {_SHORT.get(parts[-1], parts[-1])}"
    return _SHORT.get(metric, metric)


def format_text(table: dict, width: int = TEXT_WIDTH) -> str:
    """The table as aligned text for a terminal: method left-aligned, numbers right-aligned, within
    ``width`` columns: labels too long for it are numbered ([1], [2], ...) and spelled out below."""
    header, body = _cells(table)
    short = [_short(h.split(" (")[0]) + (" (" + h.split(" (")[1] if " (" in h else "") for h in header]
    named = [f"{s.split(' (')[0]} = {h.split(' (')[0]}" for s, h in zip(short, header) if s != h]
    header = short
    rest = sum(max(len(row[i]) for row in [header, *body]) + 2 for i in range(1, len(header)))
    room = max(width - rest, 12)
    legend = []
    if any(len(r[0]) > room for r in body):
        for k, r in enumerate(body, 1):
            legend.append(f"[{k}] {r[0]}")
            short = f"[{k}] {r[0]}"
            r[0] = short if len(short) <= room else short[: room - 1] + "…"
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    lines = [line(header), line(["-" * w for w in widths]), *(line(r) for r in body)]
    if named:
        lines += ["", textwrap.fill("; ".join(named), width)]
    if legend:
        lines += ["", *(textwrap.fill(x, width, subsequent_indent="    ") for x in legend)]
    return "\n".join(lines)


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


def _anytime_curves(groups: list[dict], rows: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For task-free runs only: each method's accuracy curve against the samples seen, mean over its seeds
    (seeds whose curves have other evaluation points are left out of the mean)."""
    runs = [r for g in groups for r in g["runs"]]
    if not runs or not all(isinstance(r["results"].get("anytime"), dict) for r in runs):
        return {}
    out = {}
    for g, row in zip(groups, rows):
        pts = [r["results"]["anytime"]["points"] for r in g["runs"]]
        n = [p["samples"] for p in pts[0]]
        same = [c for c in pts if [p["samples"] for p in c] == n]
        acc = np.array([[np.nan if p["accuracy"] is None else p["accuracy"] for p in c] for c in same], dtype=float)
        out[row["label"]] = (np.array(n, dtype=float), np.nanmean(acc, axis=0) if len(acc) else acc)
    return out


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


def write_table(table: dict, groups: list[dict], out: Path) -> dict[str, Path]:
    from .plots import plot_comparison

    try:
        out.mkdir(parents=True, exist_ok=True)
        files = {"md": _io.atomic_write_text(out / "compare.md", table["markdown"]),
                 "csv": _io.atomic_write_text(out / "compare.csv", _csv_text(table))}
    except OSError as e:
        raise UsageError(f"cannot write the comparison into {out}: {e.strerror}; choose another `out`") from None
    blocks = {r["label"]: f"{r['benchmark']}/{r['scenario']}" for r in table["rows"]}
    panels = blocks if len(set(blocks.values())) > 1 else None  # a panel per benchmark/scenario when several
    points = _memory_points(table)
    if points:
        from .plots import plot_accuracy_vs_memory

        files["memory_png"] = plot_accuracy_vs_memory(points, out / "compare-memory.png", panels=panels)
    free = _anytime_curves(groups, table["rows"])
    if free:  # task-free runs: the accuracy against the samples seen, a panel per stream and schedule
        from .plots import plot_anytime_comparison

        streams = {lab: f"{blocks[lab]}: {g['runs'][0]['results']['anytime']['schedule']}"
                   for lab, g in zip(blocks, groups)}
        files["png"] = plot_anytime_comparison(free, out / "compare.png",
                                               panels=streams if len(set(streams.values())) > 1 else None,
                                               title="Accuracy on the groups seen along the stream (mean over seeds)")
        return files
    curves, names = _mean_curves(groups, table["rows"])
    if curves:
        files["png"] = plot_comparison(curves, out / "compare.png", task_names=names,
                                       title="Average accuracy along the stream (mean over seeds)", panels=panels)
    return files
