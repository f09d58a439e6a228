"""Strategies by name, and composites: ``ewc``, ``si``, ``ewc+l2``.

Registering a strategy is one line in ``STRATEGIES`` (or ``@register`` for a strategy defined outside
the package); everything else (command-line options and ``--help``, validation, sweep grids, config
files, run ids, compare labels) reads its ``Settings`` dataclass, which knows its strategy
(``settings.strategy``): :func:`build` makes the strategy from its settings alone.

A composite's name joins its parts with ``+``; its settings are a
:class:`~lifelong.strategies.compose.ComposeSettings` of the parts' settings, in order, and in a
config file they are keyed by part (``{"ewc": {"lam": 100}, "l2": {"lam": 0.1}}``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..errors import UsageError, names
from ..settings import Settings, field_type, meta
from .base import Strategy
from .baselines import Joint, JointEnd, Naive
from .compose import Compose, ComposeSettings
from .isolation import HAT, PackNet, Progressive, Separate, XdG
from .regularization import EWC, KFAC, L2, MAS, SI, OnlineEWC, RWalk
from .replay import AGEM, DER, GEM, ER, ERACE, DERpp, GDumb, ICaRL, LwF

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (
    Naive, Joint, JointEnd, EWC, OnlineEWC, KFAC, SI, MAS, RWalk, L2,  # regularization
    ER, ERACE, GEM, AGEM, DER, DERpp, LwF, ICaRL, GDumb,  # replay and distillation
    Separate, XdG, PackNet, HAT, Progressive,  # parameter isolation
)}

#: The family of each built-in strategy (for documentation, the contract tests' composites and reports).
FAMILIES = {
    "baseline": ("naive", "joint", "joint-end"),
    "regularization": ("ewc", "online-ewc", "kfac", "si", "mas", "rwalk", "l2"),
    "replay": ("er", "er-ace", "gem", "agem", "der", "derpp", "lwf", "icarl", "gdumb"),
    "isolation": ("separate", "xdg", "packnet", "hat", "progressive"),
}

__all__ = ["STRATEGIES", "FAMILIES", "register", "build", "parts", "one_meaning", "check_name", "default_settings",
           "settings_from_dict", "part_settings", "settings_dict"]


def register(cls: type[Strategy]) -> type[Strategy]:
    """Add a strategy class to the registry (usable as a decorator): its ``name`` becomes a strategy name
    on the command line and in composites, its ``Settings`` fields become options. A name taken, a name
    with ``+``, or a field that declares another strategy's short flag with another field name or type is
    a UsageError."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or "+" in name or name != name.strip() or "." in name:
        raise UsageError(f"{cls.__name__}.name must be a plain name like 'my-method' (no '+' or '.'), got {name!r}")
    if name in STRATEGIES and STRATEGIES[name] is not cls:
        raise UsageError(f"a strategy named {name!r} is registered already ({STRATEGIES[name].__name__})")
    S = cls.Settings
    if not (isinstance(S, type) and dataclasses.is_dataclass(S) and issubclass(S, Settings)):
        raise UsageError(f"{cls.__name__}.Settings must be a frozen dataclass deriving from lifelong.settings.Settings")
    check_flags([*STRATEGIES.values(), cls])
    STRATEGIES[name] = cls
    return cls


def check_flags(classes) -> None:
    """Every short flag means one field: the classes that declare it name the same field, of one type."""
    seen: dict[str, tuple[str, Any, str]] = {}
    for c in classes:
        for f in dataclasses.fields(c.Settings):
            for flag in filter(None, (meta(f)["flag"], *meta(f)["aliases"])):
                mine = (f.name, field_type(c.Settings, f.name), c.name)
                theirs = seen.setdefault(flag, mine)
                if theirs[:2] != mine[:2]:
                    raise UsageError(f"{c.name}'s setting {f.name!r} declares the flag {flag!r}, which {theirs[2]} "
                                     f"declares for its {theirs[0]!r}: a flag means one setting; drop or rename it")


def one_meaning(name: str, owners) -> bool:
    """Whether the setting ``name`` means one thing to the strategies ``owners`` that have it: one owner,
    or every owner declares it with the same short flag (which :func:`check_flags` ties to one field and
    type). Where it does, the bare name (``lam``, ``--lambda``) sets it for all of them; else each must
    be named by its part (``der.alpha``)."""
    owners = list(owners)
    flags = {meta(f)["flag"] for p in owners for f in dataclasses.fields(STRATEGIES[p].Settings) if f.name == name}
    return len(owners) == 1 or (len(flags) == 1 and None not in flags)


def parts(name: str) -> tuple[str, ...]:
    """The strategy names of ``name``: ``"ewc+l2"`` -> ``("ewc", "l2")``; one name for a plain strategy."""
    return tuple(p.strip() for p in str(name).split("+"))


def check_name(name: str) -> str:
    """``name`` if it names a strategy or a composite of distinct ones, else a UsageError listing them."""
    if not isinstance(name, str):
        raise UsageError(f"a strategy is named by a string like 'ewc' or 'ewc+l2', got {name!r}", params=("strategy",))
    ps = parts(name)
    unknown = [p for p in ps if p not in STRATEGIES]
    if unknown:
        raise UsageError(f"unknown strategy {unknown[0]!r}: choose one of {', '.join(STRATEGIES)}, or join "
                         "several with + (e.g. ewc+l2)", params=("strategy",))
    if len(set(ps)) != len(ps):
        raise UsageError(f"strategy {name!r} names a part twice: a composite takes each strategy once", params=("strategy",))
    if len(ps) > 1 and "naive" in ps:
        raise UsageError(f"strategy {name!r}: naive adds nothing to a composite; leave it out", params=("strategy",))
    return "+".join(ps)


def default_settings(name: str) -> Settings | ComposeSettings:
    """The default settings of ``name``: its Settings(), or a ComposeSettings of its parts'."""
    made = [STRATEGIES[p].Settings() for p in parts(check_name(name))]
    return made[0] if len(made) == 1 else ComposeSettings(tuple(made))


def part_settings(settings: Settings | ComposeSettings) -> list[Settings]:
    """The settings of each part, in order (one for a plain strategy)."""
    return list(settings.parts) if isinstance(settings, ComposeSettings) else [settings]


def settings_dict(settings: Settings | ComposeSettings) -> dict[str, Any]:
    """Settings as JSON: the fields for a plain strategy, ``{part: fields}`` for a composite."""
    return settings.as_dict()


def settings_from_dict(name: str, d: Mapping[str, Any] | None, where: str = "settings") -> Settings | ComposeSettings:
    """Inverse of :func:`settings_dict` for strategy ``name``; missing fields take their defaults, unknown
    ones are errors."""
    name = check_name(name)
    ps = parts(name)
    d = {} if d is None else d
    if not isinstance(d, Mapping):
        raise UsageError(f"{where} must be an object, got {type(d).__name__}")
    if len(ps) == 1:
        return STRATEGIES[name].Settings.from_dict(dict(d), where)
    unknown = sorted(set(d) - set(ps), key=str)
    if unknown:
        raise UsageError(f"{where}: {names(unknown)} is not a part of {name} (parts: {', '.join(ps)})")
    return ComposeSettings(tuple(STRATEGIES[p].Settings.from_dict(dict(d.get(p) or {}), f"{where}.{p}") for p in ps))


def build(settings: Settings | ComposeSettings | str | None = None) -> Strategy:
    """The strategy its ``settings`` describe (a composite for a ComposeSettings); a name builds it with
    its defaults."""
    if settings is None or isinstance(settings, str):
        settings = default_settings(settings or "naive")
    made = []
    for s in part_settings(settings):
        name = getattr(s, "strategy", None)
        if not name or name not in STRATEGIES or not isinstance(s, STRATEGIES[name].Settings):
            raise UsageError(f"{type(s).__name__} is not the settings of a registered strategy")
        made.append(STRATEGIES[name](s))
    return made[0] if len(made) == 1 else Compose(*made)
