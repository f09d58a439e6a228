"""Types of config values: what a JSON value must be to fill a field annotated ``float``, ``int``,
``tuple[int, ...]``, ``X | None``... (used by the config reader, sweep grids and ``--set``)."""

from __future__ import annotations

import types
import typing
from typing import Any


def unwrap(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(tp, False)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def depth(tp: Any) -> int:
    """How deeply a value nests: 0 for scalars, 1 for ``tuple[int, ...]``, 2 for tuples of tuples."""
    tp, _ = unwrap(tp)
    if typing.get_origin(tp) in (tuple, list):
        return 1 + depth(typing.get_args(tp)[0])
    return 0


def value_depth(v: Any) -> int:
    if isinstance(v, (list, tuple)):
        return 1 + (value_depth(v[0]) if v else 0)
    return 0


def describe(tp: Any) -> str:
    tp, optional = unwrap(tp)
    text = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp)
    if text is None:
        text = {1: "a list like [400, 400]", 2: "a list of lists like [[0, 1], [2, 3]]"}.get(depth(tp), str(tp))
    return text + (" or null" if optional else "")


def as_type(tp: Any, v: Any) -> Any:
    """``v`` (a JSON value) as type ``tp``, or TypeError."""
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
            return tuple(as_type(typing.get_args(tp)[0], x) for x in v)
    else:
        return v  # a type this code does not know: the config's validation judges it
    raise TypeError
