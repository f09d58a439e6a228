"""Config keys and their types: coercion of JSON values and parsing of command-line text.

A key is a RunConfig field (``lr``, ``hidden``) or a setting of the run's strategy (``lam``; ``ewc.lam``
in a composite): :func:`key_type` finds its annotated type either way, so grids, ``--set`` and spec
files convert values without naming any field. Ints stay ints and floats become floats, so the same
experiment hashes to the same run id whether a value was written ``10`` or ``10.0``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from typing import Any

from ..errors import UsageError
from ..strategies import STRATEGIES, registry
from .config import RunConfig
from .value_types import as_type, depth, describe, unwrap, value_depth

__all__ = ["applies_to", "coerce", "key_type", "main_hyperparameter", "parse_set", "run_fields", "setting_names",
           "describe", "depth", "value_depth"]


@functools.lru_cache(maxsize=None)
def run_fields() -> dict[str, Any]:
    """RunConfig's fields and their types (``settings`` excluded: its keys are the strategy's)."""
    return {k: v for k, v in typing.get_type_hints(RunConfig).items() if k != "settings"}


def setting_names() -> set[str]:
    """Every setting name some registered strategy has."""
    return {f.name for cls in STRATEGIES.values() for f in dataclasses.fields(cls.Settings)}


def key_type(key: str, strategy: str | None) -> Any:
    """The type of ``key`` for a run of ``strategy``: a RunConfig field's, else the strategy's setting's
    (any strategy's when ``strategy`` is None); None for a key nothing knows."""
    if key in run_fields():
        return run_fields()[key]
    names = [strategy] if strategy else list(STRATEGIES)
    for name in names:
        try:
            if key in registry.setting_keys(name):
                return registry.setting_type(name, key)
        except UsageError:
            return None
    return None


def applies_to(key: str, strategy: str) -> bool:
    """Whether ``key`` can change the results of ``strategy``: a run field, or one of its settings."""
    return key in run_fields() or key in registry.setting_keys(strategy)


def main_hyperparameter(strategy: str) -> str | None:
    """The first setting of ``strategy`` (e.g. EWC's λ), or None if it has none."""
    keys = [k for k in registry.setting_keys(strategy) if "." not in k]
    return keys[0] if keys else None


def coerce(key: str, value: Any, where: str, strategy: str | None = None) -> Any:
    """A JSON value for ``key``, converted to its type, or UsageError. Unknown keys pass through (the
    config reports them, with the list of known ones)."""
    tp = key_type(key, strategy)
    if tp is None:
        return value
    tp, optional = unwrap(tp)
    if value is None and optional:
        return None
    try:
        return as_type(tp, value)
    except TypeError:
        raise UsageError(f"{where}: {key}={json.dumps(value)} must be {describe(key_type(key, strategy))}") from None


def parse_text(tp: Any, text: str) -> Any:
    tp, optional = unwrap(tp)
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
        sep = "/" if depth(elem) else ","
        return tuple(parse_text(elem, part) for part in text.split(sep) if part.strip())
    return text


def _parse_unknown(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


SET_BY_SWEEP = {"out": "the sweep puts each run in DIR/runs/<run id>", "seed": "list the seeds in 'seeds' (--seeds)"}


def parse_set(text: str) -> tuple[str | None, str, list]:
    """Parse ``--set [STRATEGY:]KEY=V1,V2,...`` into ``(strategy or None, key, [values])``.

    Values are parsed by the type of ``KEY`` (dashes read as underscores): a RunConfig field's or a
    strategy setting's. For keys whose value is a list (``hidden=400,400``), alternatives are
    separated by ``;``: ``hidden=100;400,400``; class groups use ``/``: ``split_groups=0,1/2,3;0,1``.

    >>> parse_set("lr=0.1,0.01")
    (None, 'lr', [0.1, 0.01])
    >>> parse_set("hidden=32;64,64")
    (None, 'hidden', [(32,), (64, 64)])
    >>> parse_set("ewc:lam=10,100")
    ('ewc', 'lam', [10.0, 100.0])
    """
    if "=" not in text:
        raise UsageError(f"--set expects KEY=V1,V2,... (e.g. lr=0.01,0.001), got {text!r}")
    lhs, rhs = text.split("=", 1)
    scope = None
    if ":" in lhs:
        scope, lhs = (s.strip() for s in lhs.split(":", 1))
        scope = registry.check_name(scope)
    key = lhs.strip().replace("-", "_")
    if key == "strategy":
        raise UsageError("--set strategy=...: list strategies with --strategies instead")
    if key in SET_BY_SWEEP:
        raise UsageError(f"--set {key}=...: {SET_BY_SWEEP[key]}")
    tp = key_type(key, scope)
    alternatives = [v for v in rhs.split(";" if tp is not None and depth(tp) else ",") if v.strip()]
    if not alternatives:
        raise UsageError(f"--set {text}: give at least one value after '='")
    values = []
    for v in alternatives:
        try:
            values.append(_parse_unknown(v.strip()) if tp is None else parse_text(tp, v))
        except ValueError:
            raise UsageError(f"--set {key}: {v.strip()!r} is not {describe(tp)}") from None
    return scope, key, values
