"""Strategy settings: each strategy declares its own small frozen dataclass of hyperparameters.

A field is declared with :func:`setting`, which records what the rest of the library needs to know
about it: the command-line flag (``--lambda``), its help text, and the rule a value must satisfy.
From these declarations come the CLI options and ``--help``, validation with one-line errors, sweep
grids (``--set lam=10,100``), the nested ``settings`` of ``config.json`` and the run id, and the labels
of ``lifelong compare``: a new method touches its own file and one line of the registry.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo(Settings):
...     lam: float = setting(1.0, flag="--lambda", help="strength", check=lambda v: v >= 0, must="be >= 0")
>>> Demo(lam=2).lam
2.0
>>> Demo(lam=-1)
Traceback (most recent call last):
...
lifelong.errors.UsageError: --lambda must be >= 0, got -1
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, Callable, Sequence

from ..errors import UsageError, names

__all__ = ["Settings", "check_field", "setting", "setting_fields", "settings_as_dict", "settings_from_dict", "field_type"]


def setting(
    default: Any,
    *,
    flag: str,
    help: str,
    check: Callable[[Any], bool] | None = None,
    must: str = "",
    choices: Sequence[Any] | None = None,
    aliases: Sequence[str] = (),
    maximum: float | None = None,
) -> Any:
    """A settings field: its default, command-line ``flag`` (plus ``aliases``), ``help`` text, and the
    rule a value obeys: ``choices``, or ``check(value)`` with ``must`` saying it in words. Numbers are
    also required to be finite, and at most ``maximum`` when given."""
    meta = {"flag": flag, "help": help, "check": check, "must": must, "choices": tuple(choices) if choices else None,
            "aliases": tuple(aliases), "maximum": maximum}
    return dataclasses.field(default=default, metadata={"lifelong": meta})


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_type(cls: type, name: str) -> Any:
    """The annotated type of field ``name`` of settings class ``cls`` (``float``, ``int``, ``str``, ...)."""
    return _hints(cls)[name]


def setting_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a settings class, in declaration order."""
    return list(dataclasses.fields(cls))


def _meta(f: dataclasses.Field) -> dict:
    return f.metadata.get("lifelong", {"flag": f"--{f.name.replace('_', '-')}", "help": "", "check": None,
                                       "must": "", "choices": None, "aliases": (), "maximum": None})


def flag_of(f: dataclasses.Field) -> str:
    return _meta(f)["flag"]


def help_of(f: dataclasses.Field) -> str:
    return _meta(f)["help"]


def aliases_of(f: dataclasses.Field) -> tuple[str, ...]:
    return _meta(f)["aliases"]


def choices_of(f: dataclasses.Field) -> tuple | None:
    return _meta(f)["choices"]


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v) if isinstance(v, str) else str(v)


def coerce(tp: Any, value: Any, flag: str) -> Any:
    """``value`` as type ``tp`` (float, int, str, bool, ``X | None``), or UsageError naming ``flag``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        tp = args[0]
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    what = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}.get(tp, str(tp))
    raise UsageError(f"{flag} must be {what}, got {value!r}")


class Settings:
    """Base of every settings dataclass: values are coerced to their field's type and checked against
    the field's rule when the object is made, so an invalid settings object cannot exist."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_field(type(self), f.name, getattr(self, f.name)))


def check_field(cls: type, name: str, value: Any) -> Any:
    """``value`` for field ``name`` of settings class ``cls``, coerced to its type, or a UsageError
    naming the flag: the field's own rule (rules between fields are the class's ``__post_init__``)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    meta = _meta(f)
    value = coerce(field_type(cls, name), value, meta["flag"])
    if value is None:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{meta['flag']} must be a finite number, got {value}")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise UsageError(f"unknown {meta['flag'].lstrip('-')} {value!r}: choose one of "
                         f"{', '.join(map(str, meta['choices']))}")
    if meta["check"] is not None and not meta["check"](value):
        raise UsageError(f"{meta['flag']} must {meta['must']}, got {_fmt(value)}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise UsageError(f"{meta['flag']} must be at most {meta['maximum']:g}, got {_fmt(value)}")
    return value


def settings_as_dict(settings: Any) -> dict[str, Any]:
    """A settings object as a plain JSON-ready dict (field order kept)."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def settings_from_dict(cls: type, d: dict[str, Any], where: str = "settings") -> Any:
    """Inverse of :func:`settings_as_dict`; unknown keys are a UsageError that lists the known ones."""
    if not isinstance(d, dict):
        raise UsageError(f"{where} must be an object of settings, got {type(d).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise UsageError(f"{where}: unknown settings {names(unknown)} (known: {', '.join(known) or 'none'})")
    return cls(**d)
