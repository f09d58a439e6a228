"""The ``lifelong`` command.

    lifelong run  --benchmark permuted-mnist --strategy ewc --ewc-lambda 100 --out runs/ewc
    lifelong tune --strategy ewc --grid 1,10,100,1000 --val-fraction 0.1 --out runs/ewc-tuned

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
    g.add_argument("--tasks", type=int, default=None, help="number of tasks (default: 10 permuted, 5 rotated/split)")
    g.add_argument("--angles", type=_floats, default=None, help="rotated: degrees per task, e.g. 0,45,90 (default: evenly spaced in [0, 180))")
    g.add_argument("--split-groups", type=_groups, default=None, help="split: classes per task, e.g. 0,1/2,3/4,5 (default: pairs 0,1/2,3/...)")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="hold out this fraction of each task's training data as a validation split, measured into "
                        "val_accuracy_matrix (default: %(default)s)")
    g.add_argument("--data-dir", default=None, help="folder with the IDX files (else $LIFELONG_DATA_DIR, then the cache, then download)")
    g.add_argument("--no-download", dest="download", action="store_false", help="never download: fail if the files are not found locally")
    s = p.add_argument_group("strategy")
    s.add_argument("--strategy", choices=STRATEGY_NAMES, default=d.strategy,
                   help="naive fine-tuning (lower bound), joint training on all tasks so far (upper bound), EWC with one "
                        "penalty per past task, or online EWC with one decayed Fisher (default: %(default)s)")
    s.add_argument("--ewc-lambda", type=float, default=d.ewc_lambda, help="EWC strength λ in λ/2 Σ F (θ-θ*)² (default: %(default)s)")
    s.add_argument("--gamma", type=float, default=d.gamma, help="online EWC decay γ in (0, 1]: F ← γF + F_t (default: %(default)s)")
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
    tune_p = sub.add_parser("tune", help="choose a hyperparameter on a validation split, then run the best on the test set",
                            description="Run --param over --grid with a validation split held out of the training data, "
                                        "pick the value with the best final average validation accuracy, then rerun "
                                        "it on the full training data and report test accuracy.")
    _add_run_options(tune_p)
    tune_p.add_argument("--param", default="ewc_lambda", choices=["ewc_lambda", "gamma", "lr"], help="(default: %(default)s)")
    tune_p.add_argument("--grid", type=_floats, required=True, help="values to try, e.g. 1,10,100,1000")
    tune_p.set_defaults(val_fraction=0.1)
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse ``argv`` and run the command; returns its result dict. Raises LifelongError on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        raise UsageError("no command given: use `lifelong run ...` or `lifelong tune ...` (see `lifelong --help`)")
    cfg = config_from_args(args)
    if args.command == "run":
        from .train.run import run

        result = run(cfg, overwrite=args.overwrite)
        _print_summary(result)
        return result
    from .tune import tune

    result = tune(cfg, args.param, args.grid, overwrite=args.overwrite)
    return result


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
        main(argv)
    except LifelongError as e:
        if debug:
            raise
        print(f"lifelong: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lifelong: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(console_main())
