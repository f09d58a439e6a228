"""A comparison's runs in one file: ``lifelong compare PATHS --record FILE`` writes it, and ``lifelong
compare FILE`` (or a ``FILE`` among other paths) reads its runs back as if their folders were there.

A record is what a results table needs and nothing more, so that it can be committed beside the page
that shows its numbers (the docs render their tables from records) or mailed with a paper:

* per run, its ``config.json`` (the method and its data, what compare groups and labels by; the
  machine's paths, ``runtime.out`` and ``runtime.data_dir``, are left out) and
  the part of its ``results.json`` that reports numbers: the accuracy matrix and the metrics computed
  from it, validation metrics, memory and parameter counts, capacity, the machine and versions, the
  thread count, and the total seconds (per-task timings and the data fingerprint, which ``config.json``
  already holds, are left out);
* the folder each run was read from, relative to the common folder of the compared paths, so a table
  from a record names the same runs.

One JSON object, one line per run (diffs stay readable). Reading checks every run as compare checks a
run folder (:func:`lifelong.report.files.results_problem`): a record whose numbers were edited by hand,
so that its metrics no longer follow from its matrices, is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from .. import _io
from ..errors import UsageError

__all__ = ["FORMAT", "is_record", "read_record", "write_record"]

FORMAT = "lifelong-record"
VERSION = 1
#: the results.json fields a record keeps (the rest is per-task timing and copies of config.json)
RESULTS_KEPT = ("run_id", "benchmark", "scenario", "strategy", "task_names", "accuracy_matrix", "metrics",
                "val_metrics", "steps_per_task", "device", "peak_memory_bytes", "peak_device_memory_bytes",
                "n_parameters", "extra_memory_bytes", "strategy_state", "replay_memory", "capacity", "seed",
                "threads", "versions", "eval_scenarios", "title", "laplace", "anytime", "consolidations")


def _slim(results: dict) -> dict:
    kept = {k: results[k] for k in RESULTS_KEPT if k in results}
    timings = results.get("timings")
    if isinstance(timings, dict) and "total_seconds" in timings:
        kept["timings"] = {"total_seconds": timings["total_seconds"]}
    return kept


def _portable(config: dict) -> dict:
    """``config`` without the paths of the machine that ran it (where its folder and data were)."""
    paths = ("out", "data_dir")
    runtime = config.get("runtime")
    if not isinstance(runtime, dict):  # a flat config of lifelong 0.2 or 0.1
        return {k: v for k, v in config.items() if k not in paths}
    return {**config, "runtime": {k: v for k, v in runtime.items() if k not in paths}}


def _common_root(dirs: list[Path]) -> Path:
    try:
        return Path(os.path.commonpath([str(d) for d in dirs])) if dirs else Path(".")
    except ValueError:  # different drives
        return Path("/")


def write_record(runs: Iterable[dict], path: str | os.PathLike) -> Path:
    """Write ``runs`` (as :func:`lifelong.experiments.collect.load_run` returns them) to ``path``."""
    runs = list(runs)
    path = Path(path)
    if path.suffix != ".json":
        raise UsageError(f"record {path}: a record is a JSON file; give a name ending in .json", params=("record",))
    if path.exists() and not is_record(path):
        raise UsageError(f"record {path}: that file exists and is not a lifelong record; it was left as it is: "
                         "give another name", params=("record",))
    dirs = [Path(r["dir"]) for r in runs if not str(r["dir"]).startswith("record:")]
    root = _common_root([d.parent for d in dirs]) if len(dirs) == 1 else _common_root(dirs)
    entries = []
    for r in sorted(runs, key=lambda r: str(r["dir"])):
        d = str(r["dir"])
        rel = d.split(":", 2)[2] if d.startswith("record:") else os.path.relpath(d, root)
        entries.append({"dir": Path(rel).as_posix(), "config": _portable(r["raw_config"]), "results": _slim(r["results"])})
    lines = ",\n".join(json.dumps(e, sort_keys=True, separators=(",", ":"), allow_nan=False) for e in entries)
    text = f'{{"format": "{FORMAT}", "version": {VERSION}, "runs": [\n{lines}\n]}}\n'
    _io.atomic_write_text(path, text)
    return path


def is_record(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file that starts as a record does (cheap: reads the first bytes)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return head.startswith(b'{"format": "' + FORMAT.encode() + b'"')


def read_record(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """The runs of the record at ``path`` as compare reads run folders (``dir`` is
    ``record:PATH:FOLDER``), and notes on runs left out (damaged)."""
    from .collect import run_of

    p = Path(path)
    try:
        data = _io.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"{p}: not a readable lifelong record ({e}); make one with compare(paths, record=FILE)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("runs"), list):
        raise UsageError(f"{p}: not a lifelong record (no \"format\": \"{FORMAT}\" and runs list); make one with "
                         "compare(paths, record=FILE)")
    if data.get("version") != VERSION:
        raise UsageError(f"{p}: a record of version {data.get('version')!r}; this lifelong reads version {VERSION}: "
                         "upgrade lifelong")
    runs, bad = [], []
    for i, e in enumerate(data["runs"]):
        run, problem = (run_of(f"record:{p}:{e['dir']}", e.get("config"), e.get("results"))
                        if isinstance(e, dict) and isinstance(e.get("dir"), str) else (None, "not a run entry"))
        if run is None:
            bad.append(f"run {i + 1} ({problem})")
        else:
            runs.append(run)
    notes = [f"left out {len(bad)} damaged runs of record {p}: {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}"] \
        if bad else []
    return runs, notes


def record_summary(runs: list[dict]) -> dict[str, Any]:
    """Where the numbers of ``runs`` come from: the sets of machines (platform and device), thread counts
    and versions, the seeds, and the total seconds of training (what a page says beside a table)."""
    def values(get) -> list:
        return sorted({json.dumps(get(r), sort_keys=True) for r in runs})

    res = [r["results"] for r in runs]
    return {
        "runs": len(runs),
        "platforms": [json.loads(v) for v in values(lambda r: (r["results"].get("versions") or {}).get("platform"))],
        "devices": [json.loads(v) for v in values(lambda r: r["results"].get("device"))],
        "threads": [json.loads(v) for v in values(lambda r: r["results"].get("threads"))],
        "torch": [json.loads(v) for v in values(lambda r: (r["results"].get("versions") or {}).get("torch"))],
        "lifelong": [json.loads(v) for v in values(lambda r: (r["results"].get("versions") or {}).get("lifelong"))],
        "seeds": sorted({r["config"].get("seed") for r in runs if isinstance(r["config"].get("seed"), int)}),
        "seconds": sum(float((x.get("timings") or {}).get("total_seconds") or 0.0) for x in res),
    }
