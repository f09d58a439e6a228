"""Named, runnable reproductions of published tables: ``lifelong reproduce NAME --seeds N``.

A recipe module provides ``NAME``, ``PUBLISHED`` (row -> scenario -> published numbers),
``configs(seeds, rows, scenarios, **overrides)`` (a list of (row, RunConfig)), ``compare_table(accuracies,
rows)`` and ``format_table(rows)`` (see :mod:`.table`). A row is a line of the published table: a
strategy with its settings and any run fields of its own (GEM's optimizer, a memory size). ``reproduce`` runs the recipe's grid through
:func:`lifelong.experiments.sweep.sweep` (so it is resumable: finished runs are skipped, and can use several
worker processes), then prints our table beside the published one, cell by cell, with the difference.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from ..._io import atomic_write_json, atomic_write_text
from ...errors import UsageError
from . import hsu2018, vandeven2022

RECIPES = {hsu2018.NAME: hsu2018, vandeven2022.NAME: vandeven2022}


def rows_of_runs(name: str, runs: Sequence[dict], **overrides) -> tuple[dict[tuple[str, str], list[dict]], list[dict]]:
    """The recipe's table from any runs (folders or a record, as :mod:`lifelong.experiments.collect` reads
    them): each run is a row of the recipe when its method (config without seed, run-only keys and data)
    is that of the row's config in its scenario. Returns (row, scenario) -> its runs (one per seed, in
    seed order) and the runs that are no row of the recipe (another setting or override). ``overrides``:
    those given to :func:`reproduce` (the rows' configs are made with them)."""
    from ..collect import methods_of
    from ..config import flat_record

    recipe = RECIPES[name]
    groups = methods_of(list(runs))
    skip = {"data"}

    def key(cfg: dict) -> str:
        return json.dumps({k: v for k, v in cfg.items() if k not in skip}, sort_keys=True)

    cells = {}
    for row in recipe.PUBLISHED:
        for scenario in recipe.SCENARIOS:
            if scenario in recipe.PUBLISHED[row]:
                probe = {"config": flat_record(recipe.config(row, scenario, 0, **overrides).to_record()), "dir": "", "id": ""}
                cells[key(methods_of([probe])[0]["config"])] = (row, scenario)
    found: dict[tuple[str, str], list[dict]] = {}
    other = []
    for g in groups:
        cell = cells.get(key(g["config"]))
        if cell is None:
            other += g["runs"]
            continue
        found[cell] = g["runs"]
    return found, other


def reproduce(
    name: str,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    out: str | Path | None = None,
    workers: int = 1,
    methods: Sequence[str] | None = None,
    scenarios: Sequence[str] | None = None,
    quiet: bool = False,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    **overrides,
) -> dict:
    """Run recipe ``name`` on ``seeds`` and return ``{"rows", "table", "out", "seconds", ...}``; the runs
    go through :func:`~lifelong.experiments.sweep.sweep` (``backend="ray"`` and its options as there)."""
    from ..config import run_field
    from ..sweep import sweep

    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    methods = list(methods or recipe.PUBLISHED)
    scenarios = list(scenarios or recipe.SCENARIOS)
    for m in methods:
        if m not in recipe.PUBLISHED:
            raise UsageError(f"recipe {name} has no method {m!r}: choose from {', '.join(recipe.PUBLISHED)}")
    for s in scenarios:
        if s not in recipe.SCENARIOS:
            raise UsageError(f"recipe {name} has no scenario {s!r}: choose from {', '.join(recipe.SCENARIOS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    pairs = recipe.configs(seeds, methods, scenarios, **overrides)  # (row, config) per cell and seed
    cfgs = [cfg for _, cfg in pairs]
    first = cfgs[0].flat()
    own = {"seed", "out"}  # per seed, or per run
    base = {k: v for k, v in first.items() if run_field(k) is not None and k not in own | {"strategy", "scenario", "class_units"}
            and all(c.flat().get(k) == v for c in cfgs)}  # what every run shares; the rest goes per entry
    firsts = [c for c in cfgs if c.seed == cfgs[0].seed]
    spec = {
        "base": base,
        "grid": [{k: v for k, v in c.flat().items() if k not in own and k not in base} for c in firsts],
        "seeds": list(seeds),
    }
    out = Path(out) if out else Path("reproductions") / name
    t0 = time.perf_counter()
    index = sweep(spec, out, workers=workers, quiet=quiet, backend=backend, address=address,
                  cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    seconds = time.perf_counter() - t0
    row_of = {cfg.run_id: row for row, cfg in pairs}  # ids cover the data: known once the sweep has read it
    accuracies: dict[tuple[str, str], list[float]] = {}
    failed = []
    for r in index["runs"]:
        if r.get("status") in ("done", "skipped") and r.get("metrics") and r.get("id") in row_of:
            key = (row_of[r["id"]], r["config"]["stream"]["scenario"])
            accuracies.setdefault(key, []).append(r["metrics"]["average_accuracy"])
        else:
            failed.append(r.get("id"))
    rows = recipe.compare_table(accuracies, methods)
    table = recipe.format_table(rows)
    summary = {"recipe": name, "seeds": list(seeds), "rows": rows, "failed": failed, "seconds_this_call": seconds,
               "sweep": str(out / "sweep.json"), "runs": index["runs"], "out": str(out)}
    atomic_write_json(out / "reproduction.json", {k: v for k, v in summary.items() if k != "runs"})
    atomic_write_text(out / "reproduction.md", table + "\n")
    if not quiet:
        print(table)
        hit = sum(r["meets_target"] for r in rows if r["n"])
        print(f"\n{hit} of {sum(1 for r in rows if r['n'])} cells meet the target (ours >= published - max(2 std, 1 point)); "
              f"{seconds:.0f} s; -> {out / 'reproduction.md'}")
    return {**summary, "table": table, "out": str(out)}
