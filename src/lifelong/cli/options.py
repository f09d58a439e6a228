"""Command-line options, generated from the settings dataclasses, and errors rendered with them.

Every leaf of a run config is an option: its short flag (the field's declared ``flag``, else its flat
key: ``--lr``, ``--hidden``, ``--model``, ``--data``) and its dotted one (``--train.lr``). The settings of
the strategies in play (``--strategy``, ``--strategies``, the strategy of a run being resumed or of a
sweep's spec) are options too: ``--<strategy>.<field>`` always (``--der.alpha``), and the short flag
where it is unambiguous among them (``--lambda`` for ``ewc+l2``, where both parts declare it; ``--alpha``
for ``der`` alone but not for ``der+lwf``, where it means two things). ``lifelong run --help`` lists
only the chosen strategy's settings.

Every option defaults to "not given", so the options a user typed are known exactly (a resume compares
them with the saved run; a sweep puts them in its base). Values are parsed by their field's type
(:func:`lifelong.settings.parse_text`) and checked by the settings classes; a library error names Python
parameters, and :func:`render` writes them as the flags that set them.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing
from collections.abc import Sequence
from typing import Any

from .. import _io
from ..errors import LifelongError, SettingError, UsageError
from ..experiments.config import _PART_TYPES, RENAMES, RunConfig
from ..settings import describe, meta, parse_text, unwrap
from ..strategies import registry

GIVEN = argparse.SUPPRESS  # an option not typed is absent from the namespace
SETTING = "setting:"  # dest prefix of a strategy setting's option


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line) instead of printing usage and exiting."""

    strategies: Sequence[str] = ()  # the --strategy given, for the hint on a setting it does not have

    def error(self, message: str):  # noqa: D401 - argparse API
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)  # one line, whatever was typed
        raise UsageError(f"{message}{_hint(message, self.strategies)} (see `{self.prog} --help`)")


def _hint(message: str, strategies: Sequence[str] = ()) -> str:
    """For an unrecognized setting flag: which strategies have it, and how to name it."""
    m = re.search(r"unrecognized arguments: (--[\w.-]+)", message)
    if not m:
        return ""
    typed = m.group(1)[2:]
    if typed == "setting":
        return ": --setting was replaced by one option per setting, e.g. --ewc.lam 100 (or --lambda 100)"
    owners: dict[str, str] = {}  # strategy -> the field the flag sets
    for s, cls in registry.STRATEGIES.items():
        for f in dataclasses.fields(cls.Settings):
            spelled = {f.name, _dashed(f.name), meta(f)["flag"], *meta(f)["aliases"]}
            if typed in {_dashed(x) for x in spelled if x}:
                owners.setdefault(s, f.name)
    if not owners:
        return ""
    first, field = next(iter(owners.items()))
    mine = [p for s in strategies for p in registry.parts(s) if p in owners]
    if len(mine) > 1:
        return (f": in {'+'.join(registry.parts(strategies[0]))} it means different things to "
                f"{' and '.join(mine)}; name the part: {' or '.join(f'--{p}.{_dashed(owners[p])}' for p in mine)}")
    return (f": {field} is a setting of {', '.join(owners)}; give a --strategy that has it (in a composite, "
            f"--{first}.{_dashed(field)} names one part's)")


def _typed(tp: Any, flag: str):
    def parse(text: str):
        try:
            return parse_text(tp, text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects {describe(tp, typed=True)}, got {text!r}") from None

    return parse


def _dashed(name: str) -> str:
    return name.replace("_", "-")


def run_flag(key: str) -> str:
    """The short flag of a run key (``lr`` -> ``--lr``, ``data_file`` -> ``--data``)."""
    part, name = _leaf(key)
    if part is None:
        return "--seed"
    f = next(f for f in dataclasses.fields(_PART_TYPES[part]) if f.name == name)
    return f"--{_dashed(meta(f)['flag'] or key)}"


def _leaf(key: str) -> tuple[str | None, str]:
    from ..experiments.config import flat_keys

    return flat_keys()[key]


def _default(v: Any) -> str:
    if isinstance(v, tuple):
        return ("/" if v and isinstance(v[0], tuple) else ",").join(_default(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else "none" if v is None else str(v)


# ---- the options of a run ----------------------------------------------------------------------------------


def add_run_options(p: argparse.ArgumentParser, strategies: Sequence[str]) -> dict[tuple[str | None, str], tuple]:
    """Add every run option and the settings of ``strategies`` to ``p``; returns the flags that set each
    (part, field), the short one first (what :func:`render` writes)."""
    flags: dict[tuple[str | None, str], tuple] = {}
    d = RunConfig()
    titles = {"stream": "task stream", "model": "model", "train": "training", "runtime": "where and how it runs"}
    for part, cls in _PART_TYPES.items():
        g = p.add_argument_group(titles[part])
        for f in dataclasses.fields(cls):
            key = RENAMES.get((part, f.name), f.name)
            tp = typing.get_type_hints(cls)[f.name]
            short = f"--{_dashed(meta(f)['flag'] or key)}"
            names = [short, *(f"--{_dashed(a)}" for a in meta(f)["aliases"])]
            kw: dict[str, Any] = {"dest": key, "default": GIVEN,
                                  "help": f"{meta(f)['help']} (default: {_default(getattr(getattr(d, part), f.name))})"}
            if unwrap(tp)[0] is bool:
                kw["action"] = argparse.BooleanOptionalAction
            else:
                names.append(f"--{part}.{_dashed(f.name)}")
                kw["metavar"] = key.upper()
                if meta(f)["choices"]:
                    kw["choices"] = list(meta(f)["choices"])
                else:
                    kw["type"] = _typed(tp, short)
            g.add_argument(*names, **kw)
            flags[(part, f.name)] = tuple(names)
    g = p.add_argument_group("seed")
    g.add_argument("--seed", type=_typed(int, "--seed"), default=GIVEN,
                   help="seeds the stream, the model, the data order and the strategy's randomness (default: 0)")
    flags[(None, "seed")] = ("--seed",)
    s = p.add_argument_group("strategy", "each setting as --<strategy>.<setting>, and by its own name where that is "
                                         "unambiguous; `lifelong run --strategy NAME --help` lists NAME's")
    s.add_argument("--strategy", type=_strategy, default=GIVEN, metavar="NAME",
                   help=f"one of {', '.join(registry.STRATEGIES)}, or several joined by + (e.g. ewc+l2); by family: "
                        + "; ".join(f"{fam}: {', '.join(ns)}" for fam, ns in registry.FAMILIES.items())
                        + " (default: naive)")
    flags.update(add_setting_options(s, strategies))
    s.add_argument("--setting", dest="removed_setting", action="append", default=GIVEN, help=argparse.SUPPRESS)
    return flags


def add_setting_options(g, strategies: Sequence[str]) -> dict[tuple[str, str], tuple]:
    """The settings of every part of ``strategies``: dotted options always, short ones where unambiguous."""
    parts = list(dict.fromkeys(p for s in strategies for p in registry.parts(s)))
    fields = {p: {f.name: f for f in dataclasses.fields(registry.STRATEGIES[p].Settings)} for p in parts}
    taken = {o for a in g._group_actions for o in a.option_strings} | _run_option_strings()
    flags: dict[tuple[str, str], tuple] = {}
    by_name: dict[str, list[str]] = {}
    for p in parts:
        for name in fields[p]:
            by_name.setdefault(name, []).append(p)
    for name, owners in by_name.items():
        first = fields[owners[0]][name]
        short = f"--{_dashed(meta(first)['flag'] or name)}"
        if registry.one_meaning(name, owners) and short not in taken:
            cls = registry.STRATEGIES[owners[0]].Settings
            tp = typing.get_type_hints(cls)[name]
            names = [short, *(f"--{_dashed(a)}" for a in meta(first)["aliases"] if f"--{_dashed(a)}" not in taken)]
            defaults = ", ".join(f"{p} {_default(getattr(registry.STRATEGIES[p].Settings(), name))}" for p in owners)
            kw: dict[str, Any] = {"dest": f"{SETTING}{name}", "default": GIVEN, "metavar": name.upper(),
                                  "help": f"{meta(first)['help']} (default: {defaults})"}
            if meta(first)["choices"]:
                kw["choices"] = list(dict.fromkeys(c for p in owners for c in meta(fields[p][name])["choices"]))
            else:
                kw["type"] = _typed(tp, short)
            g.add_argument(*names, **kw)
            taken.update(names)
            for p in owners:
                flags[(p, name)] = tuple(names)
    for p in parts:
        cls = registry.STRATEGIES[p].Settings
        for name, f in fields[p].items():
            dotted = f"--{p}.{_dashed(name)}"
            names = [dotted] + ([f"--{p}.{name}"] if "_" in name else [])
            tp = typing.get_type_hints(cls)[name]
            kw = {"dest": f"{SETTING}{p}.{name}", "default": GIVEN, "metavar": name.upper(),
                  "help": argparse.SUPPRESS if (p, name) in flags else
                  f"{p}: {meta(f)['help']} (default: {_default(getattr(cls(), name))})"}
            if meta(f)["choices"]:
                kw["choices"] = list(meta(f)["choices"])
            else:
                kw["type"] = _typed(tp, dotted)
            g.add_argument(*names, **kw)
            flags[(p, name)] = (*flags.get((p, name), ()), *names)
    return flags


def _run_option_strings() -> set[str]:
    out = {"--seed", "--strategy", "--strategies", "--setting", "--set", "--seeds", "--resume", "--overwrite",
           "--workers", "--select", "--backend", "--address", "--param", "--grid", "--debug", "--help"}
    for part, cls in _PART_TYPES.items():
        for f in dataclasses.fields(cls):
            key = RENAMES.get((part, f.name), f.name)
            out |= {f"--{_dashed(meta(f)['flag'] or key)}", f"--no-{_dashed(meta(f)['flag'] or key)}",
                    *(f"--{_dashed(a)}" for a in meta(f)["aliases"])}
    return out


def _strategy(text: str) -> str:
    try:
        return registry.check_name(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def given_values(ns: argparse.Namespace) -> dict[str, Any]:
    """The config keys the user gave, by flat key (settings bare, ``lam``, or dotted, ``ewc.lam``)."""
    from ..experiments.config import flat_keys

    out: dict[str, Any] = {}
    values = vars(ns)
    if "removed_setting" in values:
        raise UsageError("--setting was replaced by one option per setting: --ewc.lam 100 (or --lambda 100 where it "
                         "is unambiguous)")
    for dest, value in values.items():
        if dest in flat_keys() or dest == "strategy":
            out[dest] = value
        elif dest.startswith(SETTING):
            out[dest[len(SETTING):]] = value
    return out


# ---- which strategies are in play ----------------------------------------------------------------------------


def strategies_in(argv: Sequence[str]) -> list[str]:
    """The strategies whose settings the command line may give: ``--strategy``, ``--strategies``, the saved
    run of ``--resume DIR``, the grid of a sweep spec file, or naive."""
    found: list[str] = []

    def values(flag: str) -> list[str]:
        out = []
        for i, a in enumerate(argv):
            if a == flag and i + 1 < len(argv):
                out.append(argv[i + 1])
            elif a.startswith(flag + "="):
                out.append(a.split("=", 1)[1])
        return out

    for v in values("--strategy"):
        found.append(registry.check_name(v))
    for v in values("--strategies"):
        found += [registry.check_name(n.strip()) for n in v.split(",") if n.strip()]
    for v in values("--resume"):
        found += _saved_strategy(v)
    if len(argv) > 1 and argv[0] == "sweep" and not argv[1].startswith("-"):
        found += _spec_strategies(argv[1])
    return list(dict.fromkeys(found)) or ["naive"]


def _saved_strategy(run_dir: str) -> list[str]:
    from pathlib import Path

    from ..experiments.config import flat_record

    try:
        name = flat_record(_io.loads((Path(run_dir) / "config.json").read_text())).get("strategy")
        return [registry.check_name(name)]
    except (OSError, ValueError, UsageError, AttributeError, TypeError):
        return []  # the resume itself says what is wrong with the folder


def _spec_strategies(path: str) -> list[str]:
    from pathlib import Path

    try:
        spec = _io.loads(Path(path).read_text())
        names = [spec.get("base", {}).get("strategy", "naive")]
        for e in spec.get("grid", []):
            s = e.get("strategy")
            names += s if isinstance(s, list) else [s] if s else []
        return [registry.check_name(n) for n in names if isinstance(n, str)]
    except (OSError, ValueError, UsageError, AttributeError, TypeError):
        return []  # the sweep itself says what is wrong with the spec


# ---- errors ----------------------------------------------------------------------------------------------------


def render(e: LifelongError, flags: dict[tuple[str | None, str], tuple], typed: Sequence[str] = ()) -> str:
    """``e``'s message with the Python parameters it names written as the flags that set them:
    ``ewc: lam must be >= 0, got -1`` -> ``--lambda must be >= 0, got -1``. Of a parameter's flags, the
    one the user ``typed`` (``--der.alpha``), else its short one."""
    text = str(e)
    owner = e.owner
    typed = {t.split("=", 1)[0] for t in typed}

    def chosen(options: tuple) -> str:
        return next((o for o in options if o in typed), options[0])

    def flag(name: str) -> str | None:
        if (owner, name) in flags:
            return chosen(flags[(owner, name)])
        for (part, f), v in flags.items():  # a run key
            if (part is None or part in _PART_TYPES) and name in (f, RENAMES.get((part, f))):
                return chosen(v)
        return next((chosen(v) for (_, f), v in flags.items() if f == name), None)  # a setting of some part

    marker = f"{owner}: {getattr(e, 'name', '')} "
    if isinstance(e, SettingError) and marker in text:  # at the start, or after a `within` prefix
        f = flag(e.name)
        if f is not None:
            text = text.replace(marker, f"{f} ", 1)
    for p in e.params:
        f = flag(p)
        if f is None:
            continue

        def with_value(m: re.Match, f: str = f) -> str:
            value = next((g for g in m.groups() if g is not None), "")
            if value == "True":  # a switch: --overwrite
                return f
            if value == "False" and not f.startswith("--no-"):
                return f"--no-{f[2:]}"
            return f"{f} {value}".rstrip()

        value = r"(?:'([^']*)'|\"([^\"]*)\"|([^\s,;:)`]+))"
        text = re.sub(rf"`{re.escape(p)}=([^`]*)`", with_value, text)
        text = re.sub(rf"(?<![\w.'`-]){re.escape(p)}={value}", with_value, text)
        text = text.replace(f"`{p}`", f)
    return text


def is_tty() -> bool:
    return sys.stderr.isatty()


# ---- shared by sweep, tune and reproduce ------------------------------------------------------------------------

BACKEND_KEYS = ("backend", "address", "cpus_per_run", "gpus_per_run")


def add_backend_options(w) -> None:
    """Where a grid's runs go (sweep, tune, reproduce): the local pool or Ray."""
    w.add_argument("--workers", type=int, default=1,
                   help="parallel processes; each gets cpu_count/N PyTorch threads unless --threads is set (default: 1)")
    w.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where the runs go: local (a process pool, --workers) or ray (Ray tasks on a local Ray or "
                        "the cluster at --address; needs lifelong[ray]) (default: local)")
    w.add_argument("--address", default=None, metavar="ADDR",
                   help="with --backend ray: the Ray cluster to join, e.g. auto or ray://head:10001 (default: start "
                        "a local Ray)")
    w.add_argument("--cpus-per-run", type=float, default=None, metavar="C",
                   help="with --backend ray: CPUs Ray reserves per run, also its PyTorch threads (default: 1)")
    w.add_argument("--gpus-per-run", type=float, default=None, metavar="G",
                   help="with --backend ray: GPUs per run, fractions share a GPU, e.g. 0.25 (default: 0)")


def backend_of(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in BACKEND_KEYS}


def ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2, got {text!r}") from None


def names_list(text: str) -> tuple[str, ...]:
    found = tuple(v.strip() for v in text.split(",") if v.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return found
