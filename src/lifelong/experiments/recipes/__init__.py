"""Named, runnable reproductions of published tables: ``lifelong reproduce NAME --seeds N``.

A recipe module provides ``NAME``, ``PUBLISHED``, ``configs(seeds, methods, scenarios, **overrides)``,
``compare_table(accuracies)`` and ``format_table(rows)``. ``reproduce`` runs the recipe's grid through
:func:`lifelong.experiments.sweep.sweep` (so it is resumable: finished runs are skipped, and can use several
worker processes), then prints our table beside the published one, cell by cell, with the difference.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from ..._io import atomic_write_json, atomic_write_text
from ...errors import UsageError
from . import hsu2018

RECIPES = {hsu2018.NAME: hsu2018}


def reproduce(
    name: str,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    out: str | Path | None = None,
    workers: int = 1,
    methods: Sequence[str] | None = None,
    scenarios: Sequence[str] | None = None,
    quiet: bool = False,
    **overrides,
) -> dict:
    """Run recipe ``name`` on ``seeds`` and return ``{"rows", "table", "out", "seconds", ...}``."""
    from ..fields import run_fields
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
    cfgs = recipe.configs(seeds, methods, scenarios, **overrides)
    first = cfgs[0].flat()
    own = {"seed", "strategy", "scenario", "out"}  # per grid entry (with the strategy's settings), or per seed
    spec = {
        "base": {k: v for k, v in first.items() if k in run_fields() and k not in own},
        "grid": [
            {k: v for k, v in c.flat().items() if k in ("strategy", "scenario") or k not in run_fields()}
            for c in cfgs if c.seed == cfgs[0].seed
        ],
        "seeds": list(seeds),
    }
    out = Path(out) if out else Path("reproductions") / name
    t0 = time.perf_counter()
    index = sweep(spec, out, workers=workers, quiet=quiet)
    seconds = time.perf_counter() - t0
    accuracies: dict[tuple[str, str], list[float]] = {}
    failed = []
    for r in index["runs"]:
        if r.get("status") in ("done", "skipped") and r.get("metrics"):
            key = (r["config"]["strategy"], r["config"]["scenario"])
            accuracies.setdefault(key, []).append(r["metrics"]["average_accuracy"])
        else:
            failed.append(r.get("id"))
    rows = recipe.compare_table(accuracies)
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
