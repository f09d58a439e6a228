"""Sweep specs: the grid of strategies × settings × seeds a sweep runs, normalized and expanded.

A spec (a JSON file, or built by ``lifelong sweep --strategies ... --set ...``)::

    {"base":  {"benchmark": "split-mnist", "tasks": 3},       config fields shared by every run
     "grid":  [{"strategy": "ewc", "lam": [10, 100]},   one entry per method: a list-valued key is a
               {"strategy": "naive"}],                          set of alternatives (cross product), a scalar is fixed
     "seeds": [0, 1, 2],                                        every point of the grid runs on every seed
     "select": false}                                           true: choose each method's values on validation

Keys are the flat keys of :mod:`lifelong.experiments.config`: run keys (``lr``, or ``train.lr``) and
settings of the entry's strategy (``lam``; ``der.alpha``, and ``ewc.lam`` for one part of a composite);
a strategy setting in ``base`` applies to the entries whose strategy has it. For a key
whose value is itself a list (``hidden``, ``angles``, ``split_groups``), alternatives are a list of
such values, ``"hidden": [[100], [400, 400]]``; a flat ``"hidden": [400, 400]`` is one value. Unknown
keys and bad values are errors, raised for every expanded config before any run starts.

>>> from lifelong.experiments.grid import expand
>>> [(c.strategy_name, c.train.lr, c.seed) for c in expand({"grid": [{"strategy": "naive", "lr": [0.1, 0.01]}], "seeds": [0, 1]})]
[('naive', 0.1, 0), ('naive', 0.1, 1), ('naive', 0.01, 0), ('naive', 0.01, 1)]
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from .. import _io
from ..errors import UsageError, names
from ..settings import depth, fmt as _fmt
from ..strategies import registry
from .config import (
    SET_BY_SWEEP, ResolvedRun, RunConfig, applies_to, check_unambiguous, coerce_key, key_type, leaf_of, run_field,
)

SPEC_KEYS = ("base", "grid", "seeds", "select")


def load_spec(path: str | os.PathLike) -> dict:
    """Read a JSON spec file and return it normalized (see :func:`normalize_spec`)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UsageError(f"cannot read the sweep spec {path}: {e.strerror}") from None
    try:
        spec = _io.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"the sweep spec {path} is not valid JSON: {e}") from None
    return normalize_spec(spec, where=str(path))


def value_depth(v: Any) -> int:
    if isinstance(v, (list, tuple)):
        return 1 + (value_depth(v[0]) if v else 0)
    return 0


def _entry_strategy(entry: Mapping, base: Mapping, where: str) -> str:
    name = entry.get("strategy", base.get("strategy", "naive"))
    if not isinstance(name, str):
        raise UsageError(f"{where}: strategy must be a name like \"ewc\", got {json.dumps(name)}")
    return registry.check_name(name)


def check_key(key: str, strategy: str, where: str) -> None:
    """A UsageError unless ``key`` is a run key or a setting of ``strategy``."""
    leaf_of(key, strategy, f"{where}: ")


def split_entry(entry: Mapping, where: str, strategy: str) -> tuple[dict, dict]:
    """A grid entry -> (fixed values, {key: [alternatives]}), each value coerced to its key's type."""
    fixed, varied = {}, {}
    for key, value in entry.items():
        if key in SET_BY_SWEEP:
            raise UsageError(f"{where}: {key!r} cannot be set in the grid: {SET_BY_SWEEP[key]}")
        if key != "strategy" and run_field(key) is None:
            check_key(key, strategy, where)
        tp = key_type(key, strategy)
        if isinstance(value, list) and value_depth(value) == (depth(tp) if tp is not None else 0) + 1:
            if not value:
                raise UsageError(f"{where}: {key} has an empty list of values; give at least one")
            varied[key] = [coerce_key(key, v, where, strategy) for v in value]
        else:
            fixed[key] = coerce_key(key, value, where, strategy)
    return fixed, varied


def normalize_spec(spec: Mapping, where: str = "sweep spec") -> dict:
    """Check a spec's shape and coerce its values to their keys' types; returns a plain dict with
    every key present (``seeds`` defaults to the base's seed, ``grid`` to one point: the base)."""
    if not isinstance(spec, Mapping):
        raise UsageError(f"{where} must be a JSON object with keys {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown keys {names(unknown)} (known: {', '.join(SPEC_KEYS)})")
    base = spec.get("base") or {}
    if not isinstance(base, Mapping):
        raise UsageError(f"{where}: 'base' must be an object of config fields")
    base = {k: coerce_key(k, v, f"{where}, base") for k, v in base.items()}
    if "out" in base:
        raise UsageError(f"{where}, base: 'out' is set by the sweep (each run goes to DIR/runs/<run id>)")
    grid = spec.get("grid", [{}])
    if not isinstance(grid, list) or not grid or not all(isinstance(e, Mapping) for e in grid):
        raise UsageError(f"{where}: 'grid' must be a non-empty list of objects, e.g. [{{\"strategy\": \"naive\"}}]")
    # an entry whose strategy is a list of alternatives is one entry per strategy (each has its own settings)
    grid = [{**e, "strategy": s} if isinstance(e.get("strategy"), list) else dict(e)
            for e in grid for s in (e["strategy"] if isinstance(e.get("strategy"), list) else [None])]
    strategies = []
    for i, entry in enumerate(grid):
        w = f"{where}, grid entry {i + 1}"
        strategies.append(_entry_strategy(entry, base, w))
        split_entry(entry, w, strategies[-1])  # raises on bad entries
    for key in base:
        try:
            check_unambiguous(key, strategies)
        except UsageError as e:
            raise e.within(f"{where}, base") from None
    seeds = spec.get("seeds")
    if seeds is None:
        seeds = [base.pop("seed", 0)]
    elif "seed" in base:
        raise UsageError(f"{where}: give either base.seed or 'seeds', not both")
    if not isinstance(seeds, list) or not seeds:
        raise UsageError(f"{where}: 'seeds' must be a non-empty list of integers like [0, 1, 2]")
    seeds = list(dict.fromkeys(coerce_key("seed", s, f"{where}, seeds") for s in seeds))
    select = spec.get("select", False)
    if not isinstance(select, bool):
        raise UsageError(f"{where}: 'select' must be true or false")
    from ..report.files import to_jsonable

    return to_jsonable({"base": base, "grid": [dict(e) for e in grid], "seeds": seeds, "select": select})


@dataclasses.dataclass(frozen=True)
class Point:
    cfg: ResolvedRun  # out not set
    entry: int  # index of the grid entry
    params: dict  # the values of the entry's list-valued keys at this point


def label(params: Mapping) -> str:
    return " ".join(f"{k}={fmt(v)}" for k, v in params.items())


def fmt(v: Any) -> str:
    return _fmt(v).strip("'")


def points(spec: dict) -> list[Point]:
    """Every (grid point, seed) of a normalized spec, validated; duplicates (same run id) dropped."""
    combos = []
    for i, entry in enumerate(spec["grid"]):
        where = f"grid entry {i + 1}"
        strategy = _entry_strategy(entry, spec["base"], where)
        fixed, varied = split_entry(entry, where, strategy)
        base = {k: v for k, v in spec["base"].items() if run_field(k) is not None or applies_to(k, strategy)}
        for values in itertools.product(*varied.values()):
            combos.append((i, {**base, **fixed, "strategy": strategy}, dict(zip(varied, values))))
    n = len(combos) * len(spec["seeds"])
    out, seen, k = [], set(), 0
    for i, fixed, params in combos:
        for seed in spec["seeds"]:
            k += 1
            d = {**fixed, **params, "seed": seed}
            where = f"sweep run {k} of {n} (grid entry {i + 1}{', ' + label(params) if params else ''}, seed {seed})"
            cfg = validated(lambda: RunConfig.from_flat(d), where)
            key = json.dumps(cfg.method_record(), sort_keys=True)  # one experiment (the data: the same data_dir)
            if key not in seen:
                seen.add(key)
                out.append(Point(cfg, i, params))
    return out


def validated(make: Callable[[], RunConfig], where: str) -> ResolvedRun:
    try:
        return make().resolve()
    except UsageError as e:
        raise e.within(where) from None
    except (TypeError, ValueError) as e:
        raise UsageError(f"{where}: invalid value ({e})") from None


def expand(spec: Mapping) -> list[ResolvedRun]:
    """The resolved, validated configs a spec describes, in order: grid entries, their cross products,
    then seeds innermost. Raises UsageError for the first invalid one (saying which)."""
    return [p.cfg for p in points(normalize_spec(spec))]


def spec_id(spec: Mapping) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
