"""Settings: small frozen dataclasses that own their defaults and check their values.

Every configurable part of lifelong is one: a strategy's hyperparameters (``EWCSettings``), how each
task is trained (:class:`lifelong.train.TrainSettings`), which stream (:class:`lifelong.scenarios.StreamSpec`),
which model (:class:`lifelong.models.ModelSpec`). A field is declared with :func:`setting`: its default,
its help text and the rule a value obeys. The value is coerced to the field's type and checked when
the object is made, so an invalid settings object cannot exist, and the error names the field as
Python spells it::

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo(Settings):
    ...     part = "demo"
    ...     lam: float = setting(1.0, help="strength", check=lambda v: v >= 0, must="be >= 0")
    >>> Demo(lam=2).lam
    2.0
    >>> Demo(lam=-1)
    Traceback (most recent call last):
    ...
    lifelong.errors.SettingError: demo: lam must be >= 0, got -1

Everything else reads these declarations: the command line's options and ``--help`` (a field's
``flag`` is its short option name, shared by every class that declares it with the same meaning),
config files, sweep grids, run ids and the labels of ``lifelong compare``.

One coercion serves them all (:func:`coerce` for Python and JSON values, :func:`parse_text` for text
typed on a command line). Its rules: an int field takes integers (and floats without a fraction, as
JSON may write ``10.0``), never booleans or strings; a float field takes any real number; a tuple field
takes a list or tuple; ``X | None`` takes None. A library such as pydantic was weighed for this and
left out: its lax mode turns ``True`` into ``1`` and ``"3"`` into ``3``, its strict mode refuses ``10.0``
for an int and a JSON list for a tuple, so either would need as many custom rules as this module has
lines, and it would add a compiled dependency to the core library.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from typing import Any, Callable, ClassVar, Mapping, Sequence

from .errors import SettingError, UsageError, names

__all__ = ["Settings", "setting", "coerce", "parse_text", "describe", "depth", "fields_of", "field_type", "meta"]


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",
    check: Callable[[Any], bool] | None = None,
    must: str = "",
    choices: Sequence[Any] | None = None,
    maximum: float | None = None,
    flag: str | None = None,
    aliases: Sequence[str] = (),
    default_factory: Callable[[], Any] | None = None,
    strength: bool = False,
    added: bool = False,
) -> Any:
    """A settings field: its default, ``help`` text, and the rule a value obeys: ``choices``, or
    ``check(value)`` with ``must`` saying it in words. Numbers must also be finite, and at most
    ``maximum`` when given.

    ``flag``: the field's short name on the command line (``"lambda"`` for ``--lambda``), declared when
    every class that has a field of this name means the same by it; without one a strategy's field is
    reachable as ``--<strategy>.<field>`` (and by its own name where that is unambiguous). ``aliases``:
    further short names. ``strength``: a loss weight (divergence messages name it). ``added``: a field
    added after runs were made with its class: left out of the run id while at its default, so those runs
    keep their ids (:meth:`Settings.id_dict`)."""
    info = {"help": help, "check": check, "must": must, "choices": tuple(choices) if choices else None,
            "maximum": maximum, "flag": flag, "aliases": tuple(aliases), "strength": strength, "added": added}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={"lifelong": info})
    return dataclasses.field(default=default, metadata={"lifelong": info})


_NO_META = {"help": "", "check": None, "must": "", "choices": None, "maximum": None, "flag": None, "aliases": (),
            "strength": False, "added": False}

#: float32 keeps a term of a sum that is at most this many times smaller than another (24-bit mantissa):
#: a loss weight or a temperature beyond it makes one term vanish next to the others, silently.
FLOAT32_SPAN = 2.0 ** 24


def strength_setting(default: float, *, help: str, flag: str | None = None, zero: bool = True,
                     what: str = "weight") -> Any:
    """A loss weight (or, with ``what``, a temperature): 0 (the term off, when ``zero``) or within 2^±24 of 1,
    where float32 still adds it to the other terms. A weight is marked ``strength`` (divergence messages
    name it beside the learning rate)."""
    lo, hi = 1 / FLOAT32_SPAN, FLOAT32_SPAN
    return setting(default, flag=flag, help=help, check=lambda v: (zero and v == 0) or lo <= v <= hi,
                   must=f"be {'0 or ' if zero else ''}between {lo:.2g} and {hi:.2g} (2^-24 and 2^24: further out, the "
                        f"{what} makes a loss term vanish next to the others in float32)", strength=what == "weight")


def meta(f: dataclasses.Field) -> dict:
    """A field's declaration (:func:`setting`'s keywords)."""
    return f.metadata.get("lifelong", _NO_META)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_type(cls: type, name: str) -> Any:
    """The annotated type of field ``name`` of ``cls`` (``float``, ``int | None``, ``tuple[int, ...]``)."""
    return _hints(cls)[name]


def fields_of(cls_or_obj: Any) -> list[dataclasses.Field]:
    """The fields of a settings class, in declaration order."""
    return list(dataclasses.fields(cls_or_obj))


# ---- types --------------------------------------------------------------------------------------------


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


def describe(tp: Any, typed: bool = False) -> str:
    """What a value of type ``tp`` is, in words: "an integer", "a list like [400, 400] or null"; as text
    typed on a command line (``typed``, see :func:`parse_text`): "integers separated by commas, like 400,400"."""
    tp, optional = unwrap(tp)
    text = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp)
    if text is None:
        lists = ({1: "integers separated by commas, like 400,400", 2: "groups separated by /, like 0,1/2,3"} if typed
                 else {1: "a list like [400, 400]", 2: "a list of lists like [[0, 1], [2, 3]]"})
        text = lists.get(depth(tp), str(tp))
    return text + ((" or none" if typed else " or null") if optional else "")


def coerce(tp: Any, value: Any) -> Any:
    """``value`` (a Python or JSON value) as type ``tp``, or TypeError. The rules are the module's."""
    tp, optional = unwrap(tp)
    if value is None and optional:
        return None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(tp) in (tuple, list):
        if isinstance(value, (list, tuple)):
            return tuple(coerce(typing.get_args(tp)[0], v) for v in value)
    elif tp is Any:
        return value
    raise TypeError(f"expected {describe(tp)}")


def parse_text(tp: Any, text: str) -> Any:
    """A value of type ``tp`` from text typed on a command line: ``0.1``, ``true``, ``none``, lists
    as ``400,400`` and lists of lists as ``0,1/2,3``. ValueError if it is not one."""
    tp, optional = unwrap(tp)
    text = text.strip()
    if optional and text.lower() in ("none", "null"):
        return None
    if tp is bool:
        if text.lower() in ("true", "yes", "1", "on"):
            return True
        if text.lower() in ("false", "no", "0", "off"):
            return False
        raise ValueError(text)
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    if typing.get_origin(tp) in (tuple, list):
        elem = typing.get_args(tp)[0]
        sep = "/" if depth(elem) else ","
        return tuple(parse_text(elem, part) for part in text.split(sep) if part.strip())
    return text


def fmt(v: Any) -> str:
    """A value as a person reads it in a message or a label: ``0.001``, ``'exact'``, ``400,400``."""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return ("/" if v and isinstance(v[0], (list, tuple)) else ",").join(fmt(x).strip("'") for x in v)
    return str(v)


# ---- the base class -----------------------------------------------------------------------------------


class Settings:
    """Base of every settings dataclass: each value is coerced to its field's type and checked against
    its field's rule when the object is made; rules between fields go in :meth:`check`. ``part`` (or a
    strategy's name, ``strategy``) is how messages name the owner."""

    part: ClassVar[str] = "settings"

    @classmethod
    def owner(cls) -> str:
        return getattr(cls, "strategy", None) or cls.part

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_value(type(self), f, getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Rules between fields; raise with :meth:`fail`."""

    def fail(self, name: str, problem: str, *others: str) -> None:
        """Raise the SettingError ``<owner>: <name> <problem>`` (``others``: fields the problem names)."""
        raise SettingError(self.owner(), name, problem, *others)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (declaration order); nested settings as dicts too."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def id_dict(self) -> dict[str, Any]:
        """:meth:`as_dict` without the fields marked ``added`` that hold their default: what a run id
        hashes, so that a setting added later leaves the ids of runs made before it alone."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if meta(f)["added"] and v == f.default:
                continue
            out[f.name] = v.id_dict() if isinstance(v, Settings) else _plain(v)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, where: str | None = None) -> "Settings":
        """Inverse of :meth:`as_dict`; missing fields take their defaults, unknown keys are a UsageError
        that lists the known ones."""
        where = where or cls.owner()
        if d is None:
            d = {}
        if not isinstance(d, Mapping):
            raise UsageError(f"{where} must be an object of settings, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known), key=str)
        if unknown:
            raise UsageError(f"{where}: unknown settings {names(unknown)} (known: {', '.join(known) or 'none'})")
        return cls(**d)

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` (checked like any new object)."""
        return dataclasses.replace(self, **changes)


def _plain(v: Any) -> Any:
    if isinstance(v, Settings):
        return v.as_dict()
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def check_value(cls: type, f: dataclasses.Field, value: Any) -> Any:
    """``value`` for field ``f`` of ``cls``, coerced and checked against the field's own rule, or a
    SettingError naming the field."""
    m = meta(f)
    owner = cls.owner() if hasattr(cls, "owner") else cls.__name__
    tp = field_type(cls, f.name)
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, Settings):
        if not isinstance(value, tp):
            raise SettingError(owner, f.name, f"must be a {tp.__name__}, got {type(value).__name__}")
        return value
    try:
        value = coerce(tp, value)
    except TypeError:
        raise SettingError(owner, f.name, f"must be {describe(tp)}, got {value!r}") from None
    if value is None:
        return value
    items = value if isinstance(value, tuple) else (value,)
    flat = [x for item in items for x in (item if isinstance(item, tuple) else (item,))]
    if any(isinstance(x, float) and not math.isfinite(x) for x in flat):
        raise SettingError(owner, f.name, f"must be finite, got {fmt(value)}")
    if m["choices"] is not None and value not in m["choices"]:
        raise SettingError(owner, f.name, f"must be one of {', '.join(map(str, m['choices']))}; got {value!r}")
    if m["check"] is not None and not m["check"](value):
        raise SettingError(owner, f.name, f"must {m['must']}, got {fmt(value)}")
    if m["maximum"] is not None and value > m["maximum"]:
        raise SettingError(owner, f.name, f"must be at most {m['maximum']:g}, got {fmt(value)}")
    return value
