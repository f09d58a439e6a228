"""``lifelong tune``: choose one hyperparameter on a validation split, then run the best on the test set."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..settings import parse_text
from .options import add_backend_options, add_run_options, backend_of, given_values
from .run import config_from


def add_parser(sub, strategies) -> dict:
    p = sub.add_parser("tune", help="choose a hyperparameter on a validation split, then run the best on the test set",
                       description="Run --param over --grid with a validation split held out of the training data, "
                                   "pick the value with the best final average validation accuracy, then rerun it on "
                                   "the full training data and report test accuracy.")
    flags = add_run_options(p, strategies)
    t = p.add_argument_group("tuning")
    t.add_argument("--param", default=None, metavar="KEY",
                   help="the config key or strategy setting to tune, e.g. lr or lam (default: the strategy's first "
                        "setting, e.g. EWC's lam)")
    t.add_argument("--grid", required=True, help="values to try, e.g. 1,10,100,1000")
    t.add_argument("--overwrite", action="store_true", default=False, help="reuse folders that hold other runs")
    add_backend_options(t)
    return flags


def main(args: argparse.Namespace, argv: list[str]) -> dict:
    from ..experiments.config import key_type, main_hyperparameter
    from ..experiments.tune import tune

    cfg = config_from({"val_fraction": 0.1, **given_values(args)})
    param = (args.param or "").replace("-", "_") or main_hyperparameter(cfg.strategy_name)
    if param is None:
        raise UsageError(f"strategy {cfg.strategy_name!r} has no setting of its own: pass --param (e.g. lr)")
    tp = key_type(param, cfg.strategy_name) or float
    try:
        grid = [parse_text(tp, v) for v in args.grid.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--grid {args.grid!r}: give comma-separated values of {param}") from None
    return tune(cfg, param, grid, overwrite=args.overwrite, workers=args.workers, **backend_of(args))
