"""Collecting runs to compare: find the run folders under some paths, read each, and decide which runs
are one method and how each method is labelled. What the table computes and how it is written is
:mod:`lifelong.report.table`'s, which knows nothing of configs.

* **A method** is a config without the keys that do not change the numbers (the seed and the keys left
  out of the run id: ``out``, ``data_dir``, ``threads``, ``progress``, ...). Runs of one method differ
  only by seed; the same run (same run id) found twice counts once.
* **Labels**: the strategy, plus the config values that differ between the methods of the table, e.g.
  ``ewc (lam=100)``. A value only some strategies read (EWC's λ) is left out of the label of a
  strategy that does not read it unless two labels would then be equal.
* **Mixed benchmarks or scenarios** are compared side by side, not refused: methods are grouped per
  benchmark and scenario (and schedule, for task-free streams), labels get a ``benchmark/scenario:``
  prefix, and a note says so.
* **Validation runs** of a sweep's hyperparameter selection (phase ``validation`` in its ``sweep.json``)
  are left out unless given directly: they were trained with part of the training data held out.
* Run folders of lifelong 0.2 and 0.1 are read as they are (their flat configs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import _io
from ..errors import UsageError
from ..report.files import results_problem
from ..report.table import DEFAULT_METRICS, build_table, write_table
from .config import applies_to, flat_record, not_method_keys, run_field

__all__ = ["DEFAULT_METRICS", "compare", "find_runs", "load_run", "methods_of", "run_of"]


# ---- finding and reading runs ------------------------------------------------------------


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
        if p.is_file():
            raise UsageError(f"{p} is a file, not a run folder or a lifelong record: give run folders, sweep folders "
                             "or a record written by compare(paths, record=FILE)")
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
                         "give the folder of a run or of a sweep")
    return found, notes


def _validation_runs(sweep_dir: Path) -> set[Path]:
    try:
        index = _io.loads((sweep_dir / "sweep.json").read_text())
        return {(sweep_dir / r["run_dir"]).resolve() for r in index.get("runs", ()) if r.get("phase") == "validation"}
    except (OSError, json.JSONDecodeError, TypeError, KeyError, AttributeError):
        return set()


def load_run(d: Path) -> dict | None:
    try:
        config = _io.loads((d / "config.json").read_text())
        results = _io.loads((d / "results.json").read_text())
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
        return None
    return run_of(d, config, results)[0]


def run_of(where: Path | str, config: Any, results: Any) -> tuple[dict | None, str | None]:
    """A run as compare takes it (``{"dir", "config" (flat), "raw_config", "results", "id"}``) from its
    config and results, wherever they were read (a folder, a record), or None and why it cannot be one:
    the results must be readable as a run's and be this config's (the same run id)."""
    if not isinstance(config, dict):
        return None, "its config is not an object"
    problem = results_problem(results)
    if problem is None and config.get("run_id") != results.get("run_id"):
        problem = "its config and results are of two different runs"  # a mixed folder
    if problem is not None:
        return None, problem
    return {"dir": where, "config": flat_record(config), "raw_config": config, "results": results,
            "id": config.get("run_id") or results.get("run_id") or str(where)}, None


# ---- methods and labels ----------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if isinstance(v, dict) and ("file" in v or "stream" in v or "dataset" in v):  # a data fingerprint
        if "file" in v or "stream" in v:
            return str(v.get("file") or v.get("stream"))
        md5 = "".join(sorted(str(x) for x in (v.get("md5") or {}).values()))
        return str(v["dataset"]) + ("" if v.get("canonical") else f" (files {md5[:8]})")
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
    try:
        return applies_to(key, strategy)
    except Exception:  # noqa: BLE001 - labels only: when unsure, show the value
        return True


def methods_of(runs: list[dict]) -> list[dict]:
    """Methods: runs grouped by config without seed and the fields that do not change results."""
    skip = not_method_keys() | {"out", "data_dir", "threads", "progress", "download"}
    groups: dict[str, dict] = {}
    for r in runs:
        key_cfg = {k: v for k, v in r["config"].items() if k not in skip}
        key = json.dumps(key_cfg, sort_keys=True)
        g = groups.setdefault(key, {"config": key_cfg, "runs": []})
        # a group is one config on one data set (its fingerprint is in the key): the same seed again is the
        # same experiment, whatever id scheme the version that ran it used (0.2's ids did not cover the data)
        if all(x["config"].get("seed") != r["config"].get("seed") for x in g["runs"]):
            g["runs"].append(r)
    for g in groups.values():
        g["runs"].sort(key=lambda r: (_sortable(r["config"].get("seed")), str(r["dir"])))
    return list(groups.values())


def label_methods(groups: list[dict]) -> bool:
    """Set each group's block, strategy, params and label; return whether there are several blocks."""
    for g in groups:
        c = g["config"]
        g["benchmark"], g["scenario"], g["strategy"] = c.get("benchmark"), c.get("scenario"), c.get("strategy")
        schedule = c.get("schedule")  # a task-free stream is another protocol than the same data in tasks
        g["block"] = f"{g['benchmark']}/{g['scenario']}" + (f" {schedule}" if schedule not in (None, "tasks") else "")
    blocks = sorted({g["block"] for g in groups})
    for block in blocks:
        members = [g for g in groups if g["block"] == block]
        keys: list[str] = []
        for g in members:
            keys += [k for k in g["config"] if k not in keys and k not in ("strategy", "benchmark", "scenario")]
        def varies(k: str, among: list[dict]) -> bool:
            return len({json.dumps(h["config"].get(k), sort_keys=True) for h in among}) > 1

        differing = [k for k in keys if varies(k, members)]
        for g in members:
            g["all_params"] = {k: g["config"].get(k) for k in differing}
            # what tells this method from the others shown: a run setting (lr, data, ...) that varies in the
            # block, or a setting of its strategy that varies between the methods of that strategy (the
            # strategy's name tells it from the others; a setting it does not have is never "=none")
            same = [h for h in members if h["strategy"] == g["strategy"]]
            g["params"] = {k: v for k, v in g["all_params"].items() if _applies(k, g["strategy"]) and (
                run_field(k) is not None or (v is not None and varies(k, same)))}
        for g in members:
            twins = [h for h in members if h["strategy"] == g["strategy"] and h["params"] == g["params"]]
            if len(twins) > 1:  # the filter made two labels equal: show what differs between them too
                apart = [k for k in g["all_params"] if varies(k, twins)]
                for h in twins:
                    h["params_shown"] = {k: v for k, v in h["all_params"].items() if k in h["params"] or k in apart}
        for g in members:
            shown = g.pop("params_shown", g["params"])
            g["params"] = shown
            inner = ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items())
            head = f"{g['block']}: " if len(blocks) > 1 else ""
            g["label"] = f"{head}{g['strategy']}{f' ({inner})' if inner else ''}"
    groups.sort(key=lambda g: (g["block"], str(g["strategy"]), [_sortable(v) for v in g["params"].values()],
                               g["label"]))
    return len(blocks) > 1


# ---- the comparison ----------------------------------------------------------------------


def compare(
    paths: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike | None = None,
    metrics: Sequence[str] | None = None,
    write: bool = True,
    quiet: bool = False,
    memory: bool = False,
    html: bool = False,
    record: str | os.PathLike | None = None,
) -> dict:
    """Aggregate the run folders under ``paths`` into one methods × metrics table (see the module doc and
    :func:`lifelong.report.table.build_table`).

    ``memory``: add the column ``extra_memory_bytes`` (what each method keeps beside the model after the
    last task) and write ``compare-memory.png``, accuracy against that memory. ``metrics``: names in
    results.json's ``metrics`` or dotted paths (``val_metrics.average_accuracy``); default
    :data:`DEFAULT_METRICS`. Prints the table unless ``quiet``; writes ``compare.md``, ``compare.csv`` and
    ``compare.png`` into ``out`` (default: the first path) unless ``write`` is False; ``html`` adds
    ``compare.html``, one self-contained page (:mod:`lifelong.report.html`). A path may be a record
    (:mod:`lifelong.experiments.record`): its runs are read from it. ``record``: also write the runs
    compared into that record file. Returns the table (``{"metrics", "percent", "rows", "notes", "text",
    "markdown", "files"}``).
    """
    from .record import is_record, read_record, write_record

    runs, broken, notes = [], [], []
    records = [p for p in paths if Path(p).is_file() and is_record(p)]
    for p in records:
        got, why = read_record(p)
        runs += got
        notes += why
    others = [p for p in paths if p not in records]
    dirs, found_notes = find_runs(others) if others or not records else ([], [])
    notes += found_notes
    for d in dirs:
        r = load_run(d)
        (runs if r is not None else broken).append(r if r is not None else d)
    if broken:
        notes.append(f"left out {len(broken)} unreadable run folders (damaged JSON or results, or results.json and "
                     f"config.json of two different runs: a mixed folder): {', '.join(map(str, broken[:3]))}"
                     f"{' ...' if len(broken) > 3 else ''}")
    if not runs:
        raise UsageError(f"no readable runs under {', '.join(map(str, paths))}: their results.json or config.json "
                         "are not valid JSON")
    groups = methods_of(runs)
    if record is not None:
        write_record([r for g in groups for r in g["runs"]], record)
    if label_methods(groups):
        notes.append("the runs span several benchmarks, scenarios or schedules: methods are grouped per "
                     "benchmark/scenario (and task-free schedule; label prefix); compare numbers within a group")
    table = build_table(groups, metrics, notes, memory=memory)
    table["files"] = {"record": Path(record)} if record is not None else {}
    if write:
        first = Path(paths[0])
        where = Path(out) if out is not None else first.parent if first.is_file() else first
        table["files"] = {**write_table(table, groups, where), **table["files"]}
        if html:  # one page: the table, the plots, every run's config and folder
            from ..report.html import write_html

            table["files"]["html"] = write_html(table, groups, table["files"], where)
    if not quiet:
        print(table["text"])
        import textwrap

        for note in table["notes"]:
            print(textwrap.fill(f"note: {note}", 120, subsequent_indent="      "))
        if table["files"]:
            print(f"-> {', '.join(str(p) for p in table['files'].values())}")
    return table
