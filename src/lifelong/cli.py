"""The ``lifelong`` command.

    lifelong run     --benchmark permuted-mnist --strategy ewc --lambda 100 --out runs/ewc
    lifelong tune    --strategy ewc --grid 1,10,100,1000 --val-fraction 0.1 --out runs/ewc-tuned
    lifelong sweep   --strategies naive,ewc --set lam=10,100 --seeds 0,1,2 --workers 2 --out sweeps/ewc
    lifelong sweep   SPEC.json --select --out sweeps/ewc-selected
    lifelong compare sweeps/ewc [more run or sweep folders] --metrics average_accuracy,backward_transfer

``main(argv)`` returns the result (a dict) so tests can assert on it and raises
:class:`lifelong.errors.LifelongError` on bad input; ``console_main`` turns that into one line on
stderr and exit code 2 (usage) or 1 (run time), with the traceback only under ``--debug``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .config import BENCHMARKS, FISHER_KINDS, MODELS, OPTIMIZERS, SCENARIOS, STRATEGY_NAMES, RunConfig
from .errors import LifelongError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line) instead of printing usage and exiting."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 400,400, got {text!r}") from None


def _groups(text: str) -> tuple[tuple[int, ...], ...]:
    try:
        return tuple(_ints(g) for g in text.split("/"))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected class groups like 0,1/2,3/4,5, got {text!r}") from None


def _add_run_options(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    g = p.add_argument_group("task stream")
    g.add_argument("--benchmark", choices=list(BENCHMARKS), default=d.benchmark, help="task stream (default: %(default)s)")
    g.add_argument("--scenario", choices=SCENARIOS, default=None,
                   help="task-incremental (task identity given, one head per task), domain-incremental (one shared "
                        "head) or class-incremental (one head over all classes, no task identity). "
                        "Default: domain for permuted/rotated, task for split")
    g.add_argument("--class-units", choices=["all", "seen"], default=RunConfig().class_units,
                   help="class scenario: softmax over all output units from the start, or only over the classes of "
                        "the tasks seen so far (Hsu et al. 2018, van de Ven et al.) (default: %(default)s)")
    g.add_argument("--tasks", type=int, default=None, help="number of tasks (default: 10 permuted, 5 rotated/split)")
    g.add_argument("--angles", type=_floats, default=None, help="rotated: degrees per task, e.g. 0,45,90 (default: evenly spaced in [0, 180))")
    g.add_argument("--split-groups", type=_groups, default=None, help="split: classes per task, e.g. 0,1/2,3/4,5 (default: pairs 0,1/2,3/...)")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="hold out this fraction of each task's training data as a validation split, measured into "
                        "val_accuracy_matrix (default: %(default)s)")
    g.add_argument("--pad", type=int, default=d.pad, help="zero-pad images by this many pixels per side (default: %(default)s)")
    g.add_argument("--mean", type=float, default=d.mean, help="normalize inputs as (x - mean) / std, x in [0, 1] (default: %(default)s)")
    g.add_argument("--std", type=float, default=d.std, help="(default: %(default)s)")
    g.add_argument("--data-dir", default=None, help="folder with the IDX files (else $LIFELONG_DATA_DIR, then the cache, then download)")
    g.add_argument("--no-download", dest="download", action="store_false", help="never download: fail if the files are not found locally")
    s = p.add_argument_group("strategy")
    s.add_argument("--strategy", choices=STRATEGY_NAMES, default=d.strategy,
                   help="naive fine-tuning (lower bound); joint training on all tasks so far (upper bound); EWC with one "
                        "penalty per past task; online EWC with one decayed Fisher; SI (path integral); MAS (output "
                        "sensitivity, label-free); RWalk (running Fisher + path score); L2 (uniform importance) "
                        "(default: %(default)s)")
    s.add_argument("--lambda", "--ewc-lambda", dest="lam", type=float, default=d.lam,
                   help="regularization strength λ in λ/2 Σ Ω (θ-θ*)², Ω the method's importance (EWC: the Fisher) "
                        "(default: %(default)s)")
    s.add_argument("--gamma", type=float, default=d.gamma, help="online EWC decay γ in (0, 1]: F ← γF + F_t (default: %(default)s)")
    s.add_argument("--xi", type=float, default=d.xi, help="SI damping ξ in Ω += ω / (Δθ² + ξ) (default: %(default)s)")
    s.add_argument("--alpha", type=float, default=d.alpha, help="RWalk: weight of the newest Fisher in its moving average (default: %(default)s)")
    s.add_argument("--fisher", choices=FISHER_KINDS, default=d.fisher,
                   help="Fisher diagonal: empirical (true labels), predicted (argmax label), exact (expectation over the "
                        "model's classes) or mc (labels sampled from the model) (default: %(default)s)")
    s.add_argument("--mc-samples", type=int, default=d.mc_samples, help="labels sampled per input for --fisher mc (default: %(default)s)")
    m = p.add_argument_group("model and training")
    m.add_argument("--model", choices=MODELS, default=d.model, help="MLP or small CNN (default: %(default)s)")
    m.add_argument("--hidden", type=_ints, default=d.hidden, help="MLP hidden widths (default: 400,400)")
    m.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="a fresh one per task (default: %(default)s)")
    m.add_argument("--lr", type=float, default=d.lr, help="learning rate (default: %(default)s)")
    m.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum (default: %(default)s)")
    m.add_argument("--batch-size", type=int, default=d.batch_size, help="(default: %(default)s)")
    m.add_argument("--epochs", type=int, default=d.epochs, help="epochs per task (default: %(default)s)")
    m.add_argument("--iterations", type=int, default=None, help="optimizer steps per task; overrides --epochs")
    m.add_argument("--seed", type=int, default=d.seed, help="seeds the stream, the model, the data order and the Fisher (default: %(default)s)")
    m.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, help="run folder (default: runs/<run id>)")
    o.add_argument("--overwrite", action="store_true", help="reuse an --out folder that holds a different run")
    o.add_argument("--progress", dest="progress", action="store_true", default=None, help="show a progress bar (default: when stderr is a terminal)")
    o.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


_CONFIG_KEYS = [f for f in RunConfig.__dataclass_fields__]


def _names(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _strategy_names(text: str) -> tuple[str, ...]:
    names = _names(text)
    unknown = [n for n in names if n not in STRATEGY_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown strategies {', '.join(unknown)}: choose from {', '.join(STRATEGY_NAMES)}")
    return names


def _add_sweep_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", default=None, metavar="SPEC.json",
                   help='a JSON spec {"base": {...}, "grid": [{"strategy": "ewc", "lam": [10, 100]}, ...], '
                        '"seeds": [0, 1, 2]}; without it, the grid comes from --strategies, --set and --seeds')
    _add_run_options(p)
    for action in p._actions:
        if action.dest == "out":
            action.help = "sweep folder: DIR/sweep.json and DIR/runs/<run id> (default: sweeps/sweep-<hash of the spec>)"
        if action.dest == "overwrite":
            action.help = "reuse run folders that hold a different run"
        if action.option_strings == ["--progress"]:
            action.help = "show a progress bar per run (default: off in a sweep; never with --workers > 1)"
    w = p.add_argument_group("sweep")
    w.add_argument("--strategies", type=_strategy_names, default=None,
                   help="comma-separated strategies, one grid entry each (default: --strategy)")
    w.add_argument("--set", dest="sets", action="append", default=None, metavar="[STRATEGY:]KEY=V1,V2",
                   help="alternatives for a config field, crossed with the others, e.g. --set lam=10,100; "
                        "repeatable. A field only some strategies read (e.g. EWC's lambda) is varied for those only; "
                        "STRATEGY: restricts it explicitly. For list fields separate alternatives with ';': "
                        "--set 'hidden=100;400,400'")
    w.add_argument("--seeds", type=_ints, default=None, help="every grid point runs on each seed, e.g. 0,1,2 (default: --seed)")
    w.add_argument("--workers", type=int, default=1,
                   help="parallel processes; each gets cpu_count/N PyTorch threads unless --threads is set (default: 1)")
    w.add_argument("--select", action="store_true", default=None,
                   help="choose each method's hyperparameters by final average accuracy on a validation split held "
                        "out of the training data (--val-fraction, default 0.1), then run the choice on every seed "
                        "without the split")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = {k: getattr(args, k) for k in _CONFIG_KEYS if hasattr(args, k)}
    if values.get("progress") is None:
        values["progress"] = sys.stderr.isatty()
    return RunConfig(**values).resolved()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lifelong", description="Continual learning without catastrophic forgetting.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run_p = sub.add_parser("run", help="train one strategy on a task stream and write a run folder",
                           description="Train one strategy on a task stream; write config.json, results.json, "
                                       "accuracy_matrix.csv and plots into the run folder.")
    _add_run_options(run_p)
    _add_resume_options(run_p)
    tune_p = sub.add_parser("tune", help="choose a hyperparameter on a validation split, then run the best on the test set",
                            description="Run --param over --grid with a validation split held out of the training data, "
                                        "pick the value with the best final average validation accuracy, then rerun "
                                        "it on the full training data and report test accuracy.")
    _add_run_options(tune_p)
    tune_p.add_argument("--param", default=None, metavar="FIELD",
                        help="the config field to tune, e.g. lr (default: the strategy's main hyperparameter, "
                             "e.g. EWC's lambda)")
    tune_p.add_argument("--grid", type=_floats, required=True, help="values to try, e.g. 1,10,100,1000")
    tune_p.add_argument("--workers", type=int, default=1, help="parallel processes for the grid (default: 1)")
    tune_p.set_defaults(val_fraction=0.1)
    sweep_p = sub.add_parser("sweep", help="run a grid of strategies x hyperparameters x seeds (resumable, parallel)",
                             description="Run every combination of a grid of configs and seeds into DIR/runs/<run id>; "
                                         "finished runs are skipped, so an interrupted sweep continues where it "
                                         "stopped. The usual run options are the base of every run.")
    _add_sweep_options(sweep_p)
    cmp_p = sub.add_parser("compare", help="one table of methods x metrics (mean ± std over seeds) from run folders",
                           description="Aggregate run folders (any folder holding results.json and config.json under "
                                       "the given paths) into a table: one row per method (config without the seed), "
                                       "mean ± sample std over seeds. Writes compare.md, compare.csv and compare.png.")
    cmp_p.add_argument("paths", nargs="+", metavar="PATH", help="run folders, sweep folders or folders holding them")
    cmp_p.add_argument("--out", default=None, help="folder for compare.md/.csv/.png (default: the first PATH)")
    cmp_p.add_argument("--metrics", type=_names, default=None,
                       help="comma-separated metrics of results.json: names in 'metrics' (average_accuracy, "
                            "backward_transfer, forward_transfer, forgetting, ...) or dotted paths such as "
                            "val_metrics.average_accuracy or timings.total_seconds "
                            "(default: average_accuracy,backward_transfer,forward_transfer,forgetting)")
    rep_p = sub.add_parser("reproduce", help="run a named reproduction of a published table and print ours beside it",
                           description="Run a recipe's grid (resumable: finished runs are skipped) and print our "
                                       "table beside the published one, cell by cell, with the difference.")
    from .recipes import RECIPES

    rep_p.add_argument("recipe", choices=list(RECIPES), help="the published table to reproduce")
    rep_p.add_argument("--seeds", default="5", help="how many seeds (e.g. 5 = seeds 0..4), or a list like 0,3,7 (default: 5)")
    rep_p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default: 1)")
    rep_p.add_argument("--methods", type=_names, default=None, help="only these methods (default: all of the table)")
    rep_p.add_argument("--scenarios", type=_names, default=None, help="only these scenarios (default: all of the table)")
    rep_p.add_argument("--data-dir", default=None, help="folder with the IDX files")
    rep_p.add_argument("--threads", type=int, default=None, help="CPU threads per run")
    rep_p.add_argument("--out", default=None, help="reproduction folder (default: reproductions/<recipe>)")
    return parser


def _seeds(text: str) -> list[int]:
    vals = _ints(text)
    if len(vals) == 1 and "," not in text:
        if vals[0] < 1:
            raise UsageError(f"--seeds must be >= 1, got {vals[0]}")
        return list(range(vals[0]))
    return list(vals)


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse ``argv`` and run the command; returns its result dict. Raises LifelongError on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        raise UsageError("no command given: use `lifelong run`, `tune`, `sweep` or `compare` (see `lifelong --help`)")
    if args.command == "compare":
        from .report.compare import compare

        return compare(args.paths, out=args.out, metrics=args.metrics)
    if args.command == "sweep":
        return _sweep(list(sys.argv[1:] if argv is None else argv))
    if args.command == "reproduce":
        from .recipes import reproduce

        return reproduce(args.recipe, _seeds(args.seeds), out=args.out, workers=args.workers, methods=args.methods,
                         scenarios=args.scenarios, data_dir=args.data_dir, threads=args.threads)
    if args.command == "run" and args.resume:
        return _resume(list(sys.argv[1:] if argv is None else argv), args)
    cfg = config_from_args(args)
    if args.command == "run":
        from .train.run import run

        result = run(cfg, overwrite=args.overwrite)
        _print_summary(result)
        return result
    from .sweep import main_hyperparameter
    from .tune import tune

    param = (args.param or "").replace("-", "_") or main_hyperparameter(cfg.strategy)
    if param is None:
        raise UsageError(f"strategy {cfg.strategy!r} has no hyperparameter of its own: pass --param (e.g. lr)")
    return tune(cfg, param, args.grid, overwrite=args.overwrite, workers=args.workers)


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()


def _given_options(parser: argparse.ArgumentParser, argv: list[str]) -> dict:
    """The options ``argv`` sets explicitly: parsed into a namespace pre-filled with a marker, so a
    value equal to the default still counts as given."""
    appends = {a.dest for a in parser._actions if isinstance(a, argparse._AppendAction)}
    ns = argparse.Namespace(**{a.dest: None if a.dest in appends else _UNSET for a in parser._actions if a.dest != "help"})
    parser.parse_args(argv, namespace=ns)
    return {k: v for k, v in vars(ns).items() if v is not _UNSET and not (k in appends and v is None)}


def _add_resume_options(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("resume")
    r.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last checkpoint (same results, to the last bit, as a "
                        "run that was never interrupted); options given with it must match the saved config")
    r.add_argument("--override-config", action="store_true",
                   help="with --resume: accept options that differ from the saved config")
    r.add_argument("--checkpoint-every", type=int, default=RunConfig().checkpoint_every,
                   help="optimizer steps between checkpoints; one is also saved after every task; 0: only after tasks "
                        "(default: %(default)s)")
    r.add_argument("--debug", action="store_true", default=False, help="show tracebacks")


def _resume(argv: list[str], args: argparse.Namespace) -> dict:
    """``lifelong run --resume RUN_DIR [options]``."""
    from .train.run import resume

    parser = _Parser(prog="lifelong run")
    _add_run_options(parser)
    _add_resume_options(parser)
    given = _given_options(parser, argv[argv.index("run") + 1:])
    fields = set(RunConfig.__dataclass_fields__)
    options = {k: v for k, v in given.items() if k in fields}
    if options.get("progress") is None:
        options["progress"] = sys.stderr.isatty()
    result = resume(args.resume, options, allow_changes=args.override_config)
    _print_summary(result)
    return result


def _sweep(argv: list[str]) -> dict:
    """``lifelong sweep``: the spec from a file (run options given on the command line override its
    base) or from --strategies/--set/--seeds over the run options given."""
    from .sweep import applies_to, load_spec, parse_set, strategy_hyperparameters, sweep

    parser = _Parser(prog="lifelong sweep")
    _add_sweep_options(parser)
    given = _given_options(parser, argv[argv.index("sweep") + 1:])
    fields = set(RunConfig.__dataclass_fields__)
    run_options = {k: v for k, v in given.items() if k in fields and k != "out"}
    workers = given.get("workers", 1)
    select = True if given.get("select") else None
    if given.get("spec") is not None:
        flags = [f"--{k}" for k in ("strategies", "strategy", "sets", "seeds", "seed") if k in given]
        if flags:
            raise UsageError(f"{', '.join(flags).replace('sets', 'set')}: with a spec file, put strategies, values and "
                             "seeds in the file (other run options given here override its base)")
        spec = load_spec(given["spec"])
        spec["base"].update(run_options)
        return sweep(spec, given.get("out"), workers=workers, select=select, overwrite=bool(given.get("overwrite")))

    if "strategies" in given and "strategy" in given:
        raise UsageError("give either --strategy or --strategies")
    if "seeds" in given and "seed" in given:
        raise UsageError("give either --seed or --seeds")
    base = {k: v for k, v in run_options.items() if k not in ("strategy", "seed")}
    strategies = given.get("strategies") or (run_options.get("strategy", RunConfig().strategy),)
    sets = [parse_set(text) for text in given.get("sets") or ()]
    keys = [(scope, key) for scope, key, _ in sets]
    for scope, key in keys:
        if keys.count((scope, key)) > 1:
            raise UsageError(f"--set {key} is given twice: list all its values in one --set {key}=V1,V2")
        if scope is not None and scope not in strategies:
            raise UsageError(f"--set {scope}:{key}: {scope} is not among the strategies ({', '.join(strategies)})")
    grid = [{"strategy": s} for s in strategies]
    for scope, key, values in sets:
        targets = [e for e in grid if (e["strategy"] == scope if scope else applies_to(key, e["strategy"]))]
        if not targets:
            users = [s for s in STRATEGY_NAMES if key in (strategy_hyperparameters(s) or ())]
            raise UsageError(f"--set {key}: none of the strategies {', '.join(strategies)} use it "
                             f"(it is read by {', '.join(users)}); add one of them to --strategies")
        for entry in targets:
            entry[key] = list(values) if len(values) > 1 else values[0]
    seeds = list(given.get("seeds") or (given.get("seed", RunConfig().seed),))
    if "progress" not in base:
        base["progress"] = False
    spec = {"base": base, "grid": grid, "seeds": seeds}
    return sweep(spec, given.get("out"), workers=workers, select=select, overwrite=bool(given.get("overwrite")))


def _print_summary(result: dict) -> None:
    m = result["metrics"]
    fmt = lambda v: "n/a" if v is None or v != v else f"{100 * v:+.2f}"  # noqa: E731
    print(
        f"{result['run_id']}: average accuracy {100 * m['average_accuracy']:.2f}%  "
        f"BWT {fmt(m['backward_transfer'])}  FWT {fmt(m['forward_transfer'])}  "
        f"forgetting {fmt(m['forgetting'])}  -> {result.get('run_dir', '(not written)')}"
    )


def console_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lifelong`` script: one-line errors, exit code 2 (usage) or 1 (run time)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        result = main(argv)
    except LifelongError as e:
        if debug:
            raise
        print(f"lifelong: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lifelong: interrupted", file=sys.stderr)
        return 130
    failed = [r for r in result.get("runs", ()) if r.get("status") == "failed"] if isinstance(result, dict) else []
    if failed:  # a sweep that finished, some of its runs failed
        print(f"lifelong: error: {len(failed)} of {len(result['runs'])} runs failed (see {result['out']}/sweep.json); "
              f"first, {failed[0]['id']}: {failed[0].get('message')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(console_main())
