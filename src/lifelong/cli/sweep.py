"""``lifelong sweep``: a grid of strategies × settings × seeds into one sweep folder (resumable, parallel),
from a spec file or from ``--strategies``, ``--set`` and ``--seeds`` over the run options given."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..settings import describe, depth, parse_text
from ..strategies import registry
from .options import add_backend_options, add_run_options, backend_of, given_values, ints

SET_HELP = ("alternatives for a config key or strategy setting, crossed with the others, e.g. --set lam=10,100; "
            "repeatable. A setting only some strategies have (e.g. EWC's lam) is varied for those only; a setting "
            "that means different things to them is named by strategy, --set der.alpha=0.1,0.3 (or der:alpha=...). "
            "For list keys separate alternatives with ';': --set 'hidden=100;400,400'")


def add_parser(sub, strategies) -> dict:
    p = sub.add_parser("sweep", help="run a grid of strategies x settings x seeds (resumable, parallel)",
                       description="Run every combination of a grid of configs and seeds into DIR/runs/<run id>; "
                                   "finished runs are skipped, so an interrupted sweep continues where it stopped. The "
                                   "usual run options are the base of every run.")
    p.add_argument("spec", nargs="?", default=None, metavar="SPEC.json",
                   help='a JSON spec {"base": {...}, "grid": [{"strategy": "ewc", "lam": [10, 100]}, ...], '
                        '"seeds": [0, 1, 2]}; without it, the grid comes from --strategies, --set and --seeds')
    flags = add_run_options(p, strategies)
    for action in p._actions:
        if action.dest == "out":
            action.help = "sweep folder: DIR/sweep.json and DIR/runs/<run id> (default: sweeps/sweep-<hash of the spec>)"
    w = p.add_argument_group("sweep")
    w.add_argument("--strategies", type=_names, default=None,
                   help="comma-separated strategies, one grid entry each (default: --strategy)")
    w.add_argument("--set", dest="sets", action="append", default=None, metavar="KEY=V1,V2", help=SET_HELP)
    w.add_argument("--seeds", type=ints, default=None, help="every grid point runs on each seed, e.g. 0,1,2 (default: --seed)")
    w.add_argument("--overwrite", action="store_true", default=False, help="reuse run folders that hold a different run")
    w.add_argument("--select", action="store_true", default=False,
                   help="choose each method's settings by final average accuracy on a validation split held out of the "
                        "training data (--val-fraction, default 0.1), then run the choice on every seed without the split")
    add_backend_options(w)
    return flags


def _names(text: str) -> tuple[str, ...]:
    try:
        return tuple(registry.check_name(n.strip()) for n in text.split(",") if n.strip())
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_set(text: str) -> tuple[str | None, str, list]:
    """``--set [STRATEGY:]KEY=V1,V2,...`` -> ``(strategy or None, key, [values])``, each value parsed by the
    key's type (dashes read as underscores); alternatives of list keys are separated by ``;``.

    >>> parse_set("lr=0.1,0.01")
    (None, 'lr', [0.1, 0.01])
    >>> parse_set("hidden=32;64,64")
    (None, 'hidden', [(32,), (64, 64)])
    >>> parse_set("ewc:lam=10,100")
    ('ewc', 'lam', [10.0, 100.0])
    """
    from ..experiments.config import SET_BY_SWEEP, key_type

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
            values.append(_guess(v.strip()) if tp is None else parse_text(tp, v))
        except ValueError:
            raise UsageError(f"--set {key}: {v.strip()!r} is not {describe(tp)}") from None
    return scope, key, values


def _guess(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(args: argparse.Namespace, argv: list[str]) -> dict:
    from ..experiments.config import applies_to, check_unambiguous, leaf_of
    from ..experiments.grid import load_spec
    from ..experiments.sweep import sweep

    given = given_values(args)
    out = given.pop("out", None)
    on = {"workers": args.workers, "select": True if args.select else None, "overwrite": args.overwrite, **backend_of(args)}
    if args.spec is not None:
        flags = [f"--{k}" for k, v in (("strategies", args.strategies), ("set", args.sets), ("seeds", args.seeds)) if v]
        flags += [f"--{k}" for k in ("strategy", "seed") if k in given]
        if flags:
            raise UsageError(f"{', '.join(flags)}: with a spec file, put strategies, values and seeds in the file (other "
                             "run options given here override its base)")
        spec = load_spec(args.spec)
        spec["base"].update(given)
        return sweep(spec, out, **on)

    if args.strategies and "strategy" in given:
        raise UsageError("give either --strategy or --strategies")
    if args.seeds and "seed" in given:
        raise UsageError("give either --seed or --seeds")
    strategies = list(args.strategies or (given.get("strategy", "naive"),))
    base = {k: v for k, v in given.items() if k not in ("strategy", "seed")}
    for key in base:
        check_unambiguous(key, strategies)
        if not any(applies_to(key, s) for s in strategies):
            leaf_of(key, strategies[0], "")  # says which strategies have it
    sets = [parse_set(text) for text in args.sets or ()]
    keys = [(scope, key) for scope, key, _ in sets]
    for scope, key in keys:
        if keys.count((scope, key)) > 1:
            raise UsageError(f"--set {key} is given twice: list all its values in one --set {key}=V1,V2")
        if scope is not None and scope not in strategies:
            raise UsageError(f"--set {scope}:{key}: {scope} is not among the strategies ({', '.join(strategies)})")
        if scope is None:
            try:
                check_unambiguous(key, strategies)
            except UsageError as e:
                raise e.within("--set") from None
    grid = [{"strategy": s} for s in strategies]
    for scope, key, values in sets:
        targets = [e for e in grid if (e["strategy"] == scope if scope else applies_to(key, e["strategy"]))]
        if not targets:
            users = [s for s in registry.STRATEGIES if applies_to(key, s)]
            raise UsageError(f"--set {key}: none of the strategies {', '.join(strategies)} use it"
                             + (f" (it is read by {', '.join(users)}); add one of them to --strategies" if users else ""))
        for entry in targets:
            entry[key] = list(values) if len(values) > 1 else values[0]
    seeds = list(args.seeds or (given.get("seed", 0),))
    base.setdefault("progress", False)
    return sweep({"base": base, "grid": grid, "seeds": seeds}, out, **on)
