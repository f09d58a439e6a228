"""Strategies by name, and composites: ``ewc``, ``si``, ``ewc+l2``.

Registering a strategy is one line in ``STRATEGIES``; everything else (CLI flags and ``--help``,
validation, sweep grids, config files, run ids, compare labels) reads its ``Settings`` dataclass.

A composite's name joins its parts with ``+``. Its settings are the parts' settings in order
(:class:`~lifelong.strategies.base.ComposeSettings`); in a config file and a sweep grid they are keyed
by part (``{"ewc": {"lam": 100}, "l2": {"lam": 0.1}}``, ``"l2.lam"``); a bare key (``"lam"``) means
that setting of every part that has it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..errors import UsageError, names
from .base import Compose, ComposeSettings, Strategy
from .baselines import Joint, Naive
from .regularization import EWC, L2, MAS, SI, OnlineEWC, RWalk
from .isolation import HAT, PackNet, Progressive, Separate, XdG
from .replay import AGEM, DER, GEM, ER, ERACE, DERpp, GDumb, ICaRL, LwF
from .settings import field_type, settings_as_dict, settings_from_dict

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (
    Naive, Joint, EWC, OnlineEWC, SI, MAS, RWalk, L2,  # regularization
    ER, ERACE, GEM, AGEM, DER, DERpp, LwF, ICaRL, GDumb,  # replay and distillation
    Separate, XdG, PackNet, HAT, Progressive,  # parameter isolation
)}

__all__ = [
    "STRATEGIES", "register", "build_strategy", "default_settings", "parts", "settings_classes", "settings_dict",
    "settings_from", "setting_keys", "check_name", "check_setting_key", "with_settings",
]


def register(cls: type[Strategy]) -> type[Strategy]:
    """Add a strategy class to the registry (usable as a decorator): its ``name`` becomes a value of
    ``--strategy`` and of composites, its ``Settings`` fields become options. A name taken, a name with
    ``+``, or a setting whose flag or type disagrees with another strategy's field of the same name is a
    UsageError."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or "+" in name or name != name.strip():
        raise UsageError(f"{cls.__name__}.name must be a plain name like 'my-method' (no '+'), got {name!r}")
    if name in STRATEGIES and STRATEGIES[name] is not cls:
        raise UsageError(f"a strategy named {name!r} is registered already ({STRATEGIES[name].__name__})")
    if not (isinstance(cls.Settings, type) and dataclasses.is_dataclass(cls.Settings)):
        raise UsageError(f"{cls.__name__}.Settings must be a dataclass (see lifelong.strategies.settings)")
    from .settings import flag_of

    for other in STRATEGIES.values():
        theirs = {f.name: f for f in dataclasses.fields(other.Settings)}
        for f in dataclasses.fields(cls.Settings):
            g = theirs.get(f.name)
            if g is not None and (flag_of(f) != flag_of(g) or field_type(cls.Settings, f.name) != field_type(other.Settings, g.name)):
                raise UsageError(f"setting {f.name!r} of {name} has another flag or type than {other.name}'s; "
                                 "rename it or use the same flag and type")
    STRATEGIES[name] = cls
    return cls


def parts(name: str) -> tuple[str, ...]:
    """The strategy names of ``name``: ``"ewc+l2"`` -> ``("ewc", "l2")``; one name for a plain strategy."""
    return tuple(p.strip() for p in str(name).split("+"))


def check_name(name: str) -> str:
    """``name`` if it names a strategy or a composite of distinct ones, else a UsageError listing them."""
    ps = parts(name)
    unknown = [p for p in ps if p not in STRATEGIES]
    if unknown:
        raise UsageError(f"unknown strategy {unknown[0]!r}: choose one of {', '.join(STRATEGIES)}, or join "
                         "several with + (e.g. ewc+l2)")
    if len(set(ps)) != len(ps):
        raise UsageError(f"strategy {name!r} names a part twice: a composite takes each strategy once")
    if len(ps) > 1 and "naive" in ps:
        raise UsageError(f"strategy {name!r}: naive adds nothing to a composite; leave it out")
    return "+".join(ps)


def settings_classes(name: str) -> dict[str, type]:
    """``{part: its Settings class}`` in order."""
    return {p: STRATEGIES[p].Settings for p in parts(check_name(name))}


def default_settings(name: str) -> Any:
    """The default settings of ``name``: its Settings(), or a ComposeSettings of its parts'."""
    classes = settings_classes(name)
    if len(classes) == 1:
        return next(iter(classes.values()))()
    return ComposeSettings(tuple(cls() for cls in classes.values()))


def _as_parts(name: str, settings: Any) -> dict[str, Any]:
    names = parts(name)
    if isinstance(settings, ComposeSettings):
        if len(settings.parts) != len(names):
            raise UsageError(f"{name}: settings for {len(settings.parts)} parts, the strategy has {len(names)}")
        return dict(zip(names, settings.parts))
    return {names[0]: settings}


def settings_dict(name: str, settings: Any) -> dict[str, Any]:
    """Settings as JSON: the fields for a plain strategy, ``{part: fields}`` for a composite."""
    by_part = {p: settings_as_dict(s) for p, s in _as_parts(name, settings).items()}
    return by_part[parts(name)[0]] if len(by_part) == 1 else by_part


def settings_from(name: str, d: Mapping[str, Any] | None, where: str = "settings") -> Any:
    """Inverse of :func:`settings_dict`; missing fields take their defaults, unknown ones are errors."""
    classes = settings_classes(name)
    d = {} if d is None else d
    if not isinstance(d, Mapping):
        raise UsageError(f"{where} must be an object, got {type(d).__name__}")
    if len(classes) == 1:
        (cls,) = classes.values()
        return settings_from_dict(cls, dict(d), where)
    unknown = sorted(set(d) - set(classes))
    if unknown:
        raise UsageError(f"{where}: {names(unknown)} is not a part of {name} (parts: {', '.join(classes)})")
    return ComposeSettings(tuple(settings_from_dict(cls, dict(d.get(p) or {}), f"{where}.{p}") for p, cls in classes.items()))


def setting_keys(name: str) -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """Every key a setting of ``name`` can be given by: ``"lam"`` -> every part with a ``lam`` field;
    for composites also ``"ewc.lam"`` -> that part's. Values are ``[(part, field), ...]``."""
    keys: dict[str, list[tuple[str, dataclasses.Field]]] = {}
    classes = settings_classes(name)
    for p, cls in classes.items():
        for f in dataclasses.fields(cls):
            keys.setdefault(f.name, []).append((p, f))
            if len(classes) > 1:
                keys[f"{p}.{f.name}"] = [(p, f)]
    return keys


def with_settings(name: str, settings: Any, values: Mapping[str, Any], where: str = "") -> Any:
    """``settings`` of strategy ``name`` with ``values`` (keys as in :func:`setting_keys`) replaced; an
    unknown key is a UsageError that says which strategies have it."""
    keys = setting_keys(name)
    by_part = {p: settings_as_dict(s) for p, s in _as_parts(name, settings).items()}
    for key, value in values.items():
        check_setting_key(name, key, where)
        for p, f in keys[key]:
            by_part[p][f.name] = value
    classes = settings_classes(name)
    made = [classes[p](**by_part[p]) for p in classes]
    return made[0] if len(made) == 1 else ComposeSettings(tuple(made))


def check_setting_key(name: str, key: str, where: str = "") -> None:
    """A UsageError unless ``key`` is a setting of ``name``; it says which strategies have it."""
    if key in setting_keys(name):
        return
    owners = [s for s, cls in STRATEGIES.items() if key.split(".")[-1] in {f.name for f in dataclasses.fields(cls.Settings)}]
    hint = f" (it is a setting of {', '.join(owners)})" if owners else ""
    raise UsageError(f"{where}{key} is not a setting of {name}{hint}")


def build_strategy(name: str, settings: Any = None) -> Strategy:
    """The strategy ``name`` with ``settings`` (default: its defaults); a composite for ``a+b``."""
    name = check_name(name)
    settings = default_settings(name) if settings is None else settings
    built = [STRATEGIES[p](s) for p, s in _as_parts(name, settings).items()]
    return built[0] if len(built) == 1 else Compose(*built)


def setting_type(name: str, key: str) -> Any:
    """The type of setting ``key`` of strategy ``name`` (the first part's that has it)."""
    (p, f), *_ = setting_keys(name)[key]
    return field_type(STRATEGIES[p].Settings, f.name)
