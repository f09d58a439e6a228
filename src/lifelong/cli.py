"""The ``lifelong`` command.

    lifelong run     --benchmark permuted-mnist --strategy ewc --lambda 100 --out runs/ewc
    lifelong run     --strategy ewc+l2 --setting ewc.lam=100 --setting l2.lam=0.1
    lifelong tune    --strategy ewc --grid 1,10,100,1000 --val-fraction 0.1 --out runs/ewc-tuned
    lifelong sweep   --strategies naive,ewc --set lam=10,100 --seeds 0,1,2 --workers 2 --out sweeps/ewc
    lifelong sweep   SPEC.json --select --out sweeps/ewc-selected
    lifelong sweep   SPEC.json --backend ray --address auto --cpus-per-run 2 --gpus-per-run 0.25
    lifelong run     --data tasks.npz --strategy er --nproc 2     (your tasks; 2 data-parallel processes)
    lifelong compare sweeps/ewc [more run or sweep folders] --metrics average_accuracy,backward_transfer

The options of each strategy come from its settings dataclass (:mod:`lifelong.strategies.settings`):
its flag, help, type and rule. argv is parsed once: every run option defaults to "not given", so the
options a user typed are known exactly (a resume compares them with the saved run; a sweep puts them
in its base). ``main(argv)`` returns the result (a dict) so tests can assert on it and raises
:class:`lifelong.errors.LifelongError` on bad input; ``console_main`` turns that into one line on
stderr and exit code 2 (usage) or 1 (run time), with the traceback only under ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import LifelongError, UsageError
from .experiments.config import BENCHMARKS, RunConfig
from .models import MODELS
from .scenarios import SCENARIOS
from .strategies import STRATEGIES, registry
from .strategies.settings import aliases_of, check_field, choices_of, coerce, field_type, flag_of, help_of
from .train.device import DEVICES
from .train.loop import OPTIMIZERS

GIVEN = argparse.SUPPRESS  # an option not typed is absent from the namespace


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


def _names(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _strategy(text: str) -> str:
    try:
        return registry.check_name(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _strategy_names(text: str) -> tuple[str, ...]:
    return tuple(_strategy(n) for n in _names(text))


def _scalar(tp: Any, flag: str):
    def parse(text: str):
        try:
            return {float: float, int: int, str: str}[tp](text)
        except (KeyError, ValueError):
            raise argparse.ArgumentTypeError(f"{flag} expects {'an integer' if tp is int else 'a number'}, "
                                             f"got {text!r}") from None
    return parse


# ---- strategy settings as options ----------------------------------------------------------------------


def setting_options() -> dict[str, dict]:
    """One option per setting name across every strategy: ``{name: {flag, aliases, type, choices, help,
    owners: {strategy: default}}}``. Two strategies' fields of one name must agree on flag and type."""
    options: dict[str, dict] = {}
    for sname, cls in STRATEGIES.items():
        for f in dataclasses.fields(cls.Settings):
            tp = field_type(cls.Settings, f.name)
            o = options.setdefault(f.name, {"flag": flag_of(f), "aliases": aliases_of(f), "type": tp,
                                            "choices": choices_of(f), "help": help_of(f), "owners": {}})
            if (o["flag"], o["type"]) != (flag_of(f), tp):
                raise TypeError(f"setting {f.name!r} of {sname} disagrees with another strategy's on flag or type")
            if choices_of(f) and o["choices"]:  # each strategy checks its own; the parser takes any of them
                o["choices"] = tuple(dict.fromkeys((*o["choices"], *choices_of(f))))
            if help_of(f) and help_of(f) not in o["help"]:  # one flag, several meanings: say each
                o["help"] = f"{o['help']}; {sname}: {help_of(f)}" if o["help"] else help_of(f)
            o["owners"][sname] = f.default
    return options


def _fmt_default(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _add_setting_options(g: argparse._ArgumentGroup) -> None:
    for name, o in setting_options().items():
        owners = ", ".join(f"{s} {_fmt_default(d)}" for s, d in o["owners"].items())
        kw: dict[str, Any] = {"dest": name, "default": GIVEN, "help": f"{o['help']} (default: {owners})"}
        if o["choices"]:
            kw["choices"] = list(o["choices"])
        else:
            kw["type"] = _scalar(o["type"], o["flag"])
        g.add_argument(o["flag"], *o["aliases"], **kw)


# ---- the run options -----------------------------------------------------------------------------------------


def _add_run_options(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    g = p.add_argument_group("task stream")
    g.add_argument("--benchmark", choices=list(BENCHMARKS), default=GIVEN, help=f"task stream (default: {d.benchmark})")
    g.add_argument("--scenario", choices=SCENARIOS, default=GIVEN,
                   help="task-incremental (task identity given, one head per task), domain-incremental (one shared "
                        "head) or class-incremental (one head over all classes, no task identity). "
                        "Default: domain for permuted/rotated, task for split")
    g.add_argument("--class-units", choices=["all", "seen"], default=GIVEN,
                   help="class scenario: softmax over all output units from the start, or only over the classes of "
                        f"the tasks seen so far (Hsu et al. 2018, van de Ven et al.) (default: {d.class_units})")
    g.add_argument("--tasks", type=int, default=GIVEN, help="number of tasks (default: 10 permuted, 5 rotated/split)")
    g.add_argument("--angles", type=_floats, default=GIVEN, help="rotated: degrees per task, e.g. 0,45,90 (default: evenly spaced in [0, 180))")
    g.add_argument("--split-groups", type=_groups, default=GIVEN, help="split: classes per task, e.g. 0,1/2,3/4,5 (default: pairs 0,1/2,3/...)")
    g.add_argument("--val-fraction", type=float, default=GIVEN,
                   help="hold out this fraction of each task's training data as a validation split, measured into "
                        f"val_accuracy_matrix (default: {d.val_fraction})")
    g.add_argument("--shuffle-classes", action="store_const", const=True, default=GIVEN,
                   help="split: assign the classes to the tasks in an order drawn from the seed (van de Ven et al.) "
                        "instead of 0,1/2,3/... (default: off)")
    g.add_argument("--augment", choices=["none", "crop-flip"], default=GIVEN,
                   help="augment training batches on the device: crop-flip = random crops of the image padded by 4 "
                        "pixels and horizontal flips (the CIFAR protocol of DER, iCaRL) (default: none)")
    g.add_argument("--train-samples", type=int, default=GIVEN,
                   help="train on a seeded random subset of this many samples of each task's training split (the "
                        "low-data protocol of GEM and A-GEM: 1000) (default: all)")
    g.add_argument("--pad", type=int, default=GIVEN, help=f"zero-pad images by this many pixels per side (default: {d.pad})")
    g.add_argument("--mean", type=float, default=GIVEN, help=f"normalize inputs as (x - mean) / std, x in [0, 1] (default: {d.mean})")
    g.add_argument("--std", type=float, default=GIVEN, help=f"(default: {d.std})")
    g.add_argument("--data", dest="data_file", default=GIVEN, metavar="TASKS.npz",
                   help="your own tasks: an .npz or .safetensors file with train_x_<t>, train_y_<t>, test_x_<t>, "
                        "test_y_<t> per task (README: 'Your own data'); the benchmark is then custom")
    g.add_argument("--stream", default=GIVEN, metavar="MODULE:FUNCTION",
                   help="your own tasks: a Python function returning a lifelong TaskStream (it may take seed, scenario, "
                        "val_fraction)")
    g.add_argument("--units", choices=["auto", "shared", "per-task"], default=GIVEN,
                   help="--data: output units shared by label, or a block per task (auto: per-task when tasks reuse "
                        "labels in the task or class scenario) (default: auto)")
    g.add_argument("--data-dir", default=GIVEN, help="folder with the IDX files (else $LIFELONG_DATA_DIR, then the cache, then download)")
    g.add_argument("--no-download", dest="download", action="store_false", default=GIVEN,
                   help="never download: fail if the files are not found locally")
    s = p.add_argument_group("strategy (each option is a setting of the strategies named in its default)")
    s.add_argument("--strategy", type=_strategy, default=GIVEN, metavar="NAME",
                   help=f"one of {', '.join(STRATEGIES)}, or several joined by + (e.g. ewc+l2): naive fine-tuning "
                        "(lower bound); joint training on all tasks so far (upper bound); EWC with one penalty per past "
                        "task; online EWC with one decayed Fisher; SI (path integral); MAS (output sensitivity, "
                        "label-free); RWalk (running Fisher + path score); L2 (uniform importance) "
                        f"(default: {d.strategy})")
    _add_setting_options(s)
    s.add_argument("--setting", dest="setting_items", action="append", default=GIVEN, metavar="[PART.]KEY=VALUE",
                   help="a strategy setting by its name, e.g. --setting lam=10; in a composite one part's: "
                        "--setting ewc.lam=100 --setting l2.lam=0.1 (repeatable)")
    m = p.add_argument_group("model and training")
    m.add_argument("--model", choices=MODELS, default=GIVEN, help=f"MLP or small CNN (default: {d.model})")
    m.add_argument("--hidden", type=_ints, default=GIVEN, help="MLP hidden widths (default: 400,400)")
    m.add_argument("--optimizer", choices=OPTIMIZERS, default=GIVEN, help=f"a fresh one per task unless --optimizer-state keep (default: {d.optimizer})")
    m.add_argument("--lr", type=float, default=GIVEN, help=f"learning rate (default: {d.lr})")
    m.add_argument("--optimizer-state", choices=["reset", "keep"], default=GIVEN,
                   help="reset: a fresh optimizer for each task; keep: one optimizer for the whole stream, its state "
                        "(Adam's moments) carried from task to task, as Hsu et al.'s and van de Ven et al.'s code "
                        "(default: reset)")
    m.add_argument("--momentum", type=float, default=GIVEN, help=f"SGD momentum (default: {d.momentum})")
    m.add_argument("--batch-size", type=int, default=GIVEN, help=f"(default: {d.batch_size})")
    m.add_argument("--epochs", type=int, default=GIVEN, help=f"epochs per task (default: {d.epochs})")
    m.add_argument("--iterations", type=int, default=GIVEN, help="optimizer steps per task; overrides --epochs")
    m.add_argument("--seed", type=int, default=GIVEN, help=f"seeds the stream, the model, the data order and the strategy's randomness (default: {d.seed})")
    m.add_argument("--device", default=GIVEN, metavar="DEVICE",
                   help=f"{', '.join(DEVICES)}: where the model, the data (uint8), the strategy's state and the "
                        "optimizer live; auto is the first CUDA GPU if there is one (default: auto)")
    m.add_argument("--threads", type=int, default=GIVEN, help="CPU threads for PyTorch (default: PyTorch's choice)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default=GIVEN, help="run folder (default: runs/<run id>)")
    o.add_argument("--overwrite", action="store_true", default=False, help="reuse an --out folder that holds a different run")
    o.add_argument("--progress", dest="progress", action="store_true", default=GIVEN, help="show a progress bar (default: when stderr is a terminal)")
    o.add_argument("--no-progress", dest="progress", action="store_false", default=GIVEN, help="hide the progress bar")
    m.add_argument("--nproc", type=int, default=GIVEN,
                   help="train this one run in N data-parallel processes (gloo on CPU, nccl on CUDA; the same as "
                        "torchrun --nproc-per-node N -m lifelong run ...); each rank takes 1/N of every batch and the "
                        "gradients, importances and memories are kept identical (default: 1)")
    o.add_argument("--log", choices=["jsonl", "tensorboard", "none"], default=GIVEN,
                   help="jsonl: events.jsonl in the run folder (per-step loss and penalty, per-task timings and "
                        "accuracy); tensorboard: that and TensorBoard scalars in RUN/tensorboard (needs "
                        "lifelong[tensorboard]); none (default: jsonl)")
    o.add_argument("--checkpoint-every", type=int, default=GIVEN,
                   help="optimizer steps between checkpoints; one is also saved after every task; 0: only after tasks "
                        f"(default: {d.checkpoint_every})")


def _add_resume_options(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("resume")
    r.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last checkpoint (same results, to the last bit, as a "
                        "run that was never interrupted); options given with it must match the saved config")
    r.add_argument("--override-config", action="store_true",
                   help="with --resume: accept options that differ from the saved config")


def _add_backend_options(w) -> None:
    """Where a grid's runs go (sweep, tune, reproduce): the local pool or Ray."""
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


BACKEND_KEYS = ("backend", "address", "cpus_per_run", "gpus_per_run")


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
                   help="alternatives for a config field or strategy setting, crossed with the others, e.g. "
                        "--set lam=10,100; repeatable. A setting only some strategies have (e.g. EWC's lambda) is "
                        "varied for those only; STRATEGY: restricts it explicitly. For list fields separate "
                        "alternatives with ';': --set 'hidden=100;400,400'")
    w.add_argument("--seeds", type=_ints, default=None, help="every grid point runs on each seed, e.g. 0,1,2 (default: --seed)")
    w.add_argument("--workers", type=int, default=1,
                   help="parallel processes; each gets cpu_count/N PyTorch threads unless --threads is set (default: 1)")
    _add_backend_options(w)
    w.add_argument("--select", action="store_true", default=False,
                   help="choose each method's settings by final average accuracy on a validation split held "
                        "out of the training data (--val-fraction, default 0.1), then run the choice on every seed "
                        "without the split")


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
    tune_p.add_argument("--param", default=None, metavar="KEY",
                        help="the config field or strategy setting to tune, e.g. lr (default: the strategy's first "
                             "setting, e.g. EWC's lambda)")
    tune_p.add_argument("--grid", type=_floats, required=True, help="values to try, e.g. 1,10,100,1000")
    tune_p.add_argument("--workers", type=int, default=1, help="parallel processes for the grid (default: 1)")
    _add_backend_options(tune_p)
    sweep_p = sub.add_parser("sweep", help="run a grid of strategies x settings x seeds (resumable, parallel)",
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
    cmp_p.add_argument("--memory", action="store_true",
                       help="add each method's extra memory after the last task (MB: importances, anchors, replay "
                            "samples, a teacher model) and plot accuracy against it (compare-memory.png)")
    cmp_p.add_argument("--metrics", type=_names, default=None,
                       help="comma-separated metrics of results.json: names in 'metrics' (average_accuracy, "
                            "backward_transfer, forward_transfer, forgetting, ...) or dotted paths such as "
                            "val_metrics.average_accuracy or timings.total_seconds "
                            "(default: average_accuracy,backward_transfer,forward_transfer,forgetting)")
    rep_p = sub.add_parser("reproduce", help="run a named reproduction of a published table and print ours beside it",
                           description="Run a recipe's grid (resumable: finished runs are skipped) and print our "
                                       "table beside the published one, cell by cell, with the difference.")
    from .experiments.recipes import RECIPES

    rep_p.add_argument("recipe", choices=list(RECIPES), help="the published table to reproduce")
    rep_p.add_argument("--seeds", default="5", help="how many seeds (e.g. 5 = seeds 0..4), or a list like 0,3,7 (default: 5)")
    rep_p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default: 1)")
    _add_backend_options(rep_p)
    rep_p.add_argument("--methods", type=_names, default=None, help="only these methods (default: all of the table)")
    rep_p.add_argument("--scenarios", type=_names, default=None, help="only these scenarios (default: all of the table)")
    rep_p.add_argument("--data-dir", default=None, help="folder with the IDX files")
    rep_p.add_argument("--no-download", dest="download", action="store_false", default=None,
                       help="never download: fail if the files are not found locally")
    rep_p.add_argument("--threads", type=int, default=None, help="CPU threads per run")
    rep_p.add_argument("--optimizer-state", choices=["reset", "keep"], default=None,
                       help="override the recipe's choice: a fresh optimizer per task, or one for the whole stream "
                            "(what the authors' code of hsu2018 does; see the README)")
    rep_p.add_argument("--out", default=None, help="reproduction folder (default: reproductions/<recipe>)")
    return parser


# ---- from options to configs -----------------------------------------------------------------------------------


_RUN_KEYS = {f.name for f in dataclasses.fields(RunConfig)} - {"settings"}


def _setting_items(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--setting expects KEY=VALUE (e.g. lam=10 or ewc.lam=100), got {item!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        out[key.replace("-", "_")] = value
    return out


def split_options(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The given options as (config fields, strategy settings by key). Each setting's value is checked
    against its rule (with the first strategy that has it) even before the strategy is known."""
    run = {k: v for k, v in given.items() if k in _RUN_KEYS}
    options = setting_options()
    settings = {k: v for k, v in given.items() if k in options}
    for key, value in settings.items():
        owner = next(iter(options[key]["owners"]))
        check_field(STRATEGIES[owner].Settings, key, value)  # raises the setting's own one-line error
    texts = _setting_items(given.get("setting_items", ()))
    strategy = registry.check_name(run.get("strategy", RunConfig.strategy))
    for key, text in texts.items():
        registry.check_setting_key(strategy, key, "--setting ")
        tp = registry.setting_type(strategy, key)
        try:
            settings[key] = coerce(tp, text if tp is str else ({int: int, float: float}[tp](text)), f"--setting {key}")
        except (KeyError, ValueError):
            raise UsageError(f"--setting {key}={text}: expected {'an integer' if tp is int else 'a number'}") from None
    return run, settings


def _check_applies(strategy: str, settings: dict[str, Any]) -> None:
    options = setting_options()
    for key in settings:
        if key not in registry.setting_keys(strategy):
            o = options.get(key)
            flag = o["flag"] if o else f"--setting {key}"
            owners = f" (a setting of {', '.join(o['owners'])})" if o else ""
            raise UsageError(f"{flag} is not a setting of {strategy}{owners}; drop it or choose another --strategy")


def config_from_options(given: dict[str, Any]) -> RunConfig:
    """The resolved RunConfig of the options a user gave (absent ones take their defaults)."""
    run, settings = split_options(given)
    run.setdefault("progress", sys.stderr.isatty())
    strategy = registry.check_name(run.get("strategy", RunConfig.strategy))
    _check_applies(strategy, settings)
    cfg = RunConfig.from_flat({**run, **settings}).resolved()
    if "class_units" in run and cfg.scenario != "class":
        raise UsageError(f"--class-units applies to the class scenario, not {cfg.scenario} (give --scenario class)")
    return cfg


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return config_from_options(vars(args))


# ---- commands --------------------------------------------------------------------------------------------------


def _seeds(text: str) -> list[int]:
    try:
        vals = _ints(text)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"--seeds: {e}") from None
    if not vals:
        raise UsageError(f"--seeds needs a number of seeds or a list like 0,1,2, got {text!r}")
    if len(vals) == 1 and "," not in text:
        if vals[0] < 1:
            raise UsageError(f"--seeds must be >= 1, got {vals[0]}")
        return list(range(vals[0]))
    return list(vals)


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse ``argv`` and run the command; returns its result dict. Raises LifelongError on bad input."""
    args = build_parser().parse_args(argv)
    given = vars(args)
    if args.command is None:
        raise UsageError("no command given: use `lifelong run`, `tune`, `sweep`, `compare` or `reproduce` (see `lifelong --help`)")
    if args.command == "compare":
        from .report.compare import compare

        return compare(args.paths, out=args.out, metrics=args.metrics, memory=args.memory)
    if args.command == "sweep":
        return _sweep(given)
    if args.command == "reproduce":
        from .experiments.recipes import reproduce

        return reproduce(args.recipe, _seeds(args.seeds), out=args.out, workers=args.workers, methods=args.methods,
                         scenarios=args.scenarios, data_dir=args.data_dir, threads=args.threads, download=args.download,
                         optimizer_state=args.optimizer_state, **{k: getattr(args, k) for k in BACKEND_KEYS})
    if args.command == "run" and given.get("nproc") not in (GIVEN, None, 1) and "WORLD_SIZE" not in os.environ:
        return _launch(list(sys.argv[1:] if argv is None else argv), given)
    if args.command == "run" and args.resume:
        return _resume(given)
    if args.command == "tune":
        return _tune(given)
    from .experiments.runs import run

    result = run(config_from_options(given), overwrite=args.overwrite)
    _print_summary(result)
    return result


def _launch(argv: list[str], given: dict) -> dict:
    """``lifelong run --nproc N``: N processes of this same command, as torchrun would start them (RANK,
    WORLD_SIZE, MASTER_ADDR/PORT); rank 0 checks, writes the run folder and reports. If one process fails,
    the others are stopped and rank 0's exit code (or the failing one's) is ours."""
    import socket
    import subprocess

    n = given["nproc"]
    if not isinstance(n, int) or not 1 <= n <= 256:
        raise UsageError(f"--nproc must be in 1..256, got {n}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if given.get("threads") in (GIVEN, None):
        argv = [*argv, "--threads", str(max(1, (os.cpu_count() or 1) // n))]  # the cores shared, not oversubscribed
    device = given.get("device")
    backend = "nccl" if isinstance(device, str) and device.startswith("cuda") else None
    procs = []
    for rank in range(n):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n),
               "LOCAL_WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        if backend:
            env["LIFELONG_DIST_BACKEND"] = backend
        out = None if rank == 0 else subprocess.DEVNULL  # rank 0 speaks for the run
        procs.append(subprocess.Popen([sys.executable, "-m", "lifelong.cli", *argv], env=env, stdout=out))
    try:
        codes = _wait_all(procs)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    if any(codes):
        code = codes[0] or next(c for c in codes if c)
        raise SystemExit(code if code > 0 else 1)
    from .experiments.runs import read_results

    if given.get("resume"):
        run_dir = Path(given["resume"])
    else:
        cfg = config_from_options(given)
        run_dir = Path(cfg.out) if cfg.out else Path("runs") / cfg.resolved().run_id()
    return {**read_results(run_dir), "run_dir": str(run_dir)}


def _wait_all(procs) -> list[int]:
    """Wait for every process; the first to fail stops the rest (a rank that died leaves the others
    blocked in a collective otherwise)."""
    import time

    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return codes
        if any(c not in (None, 0) for c in codes):
            for p, c in zip(procs, codes):
                if c is None:
                    p.terminate()
            for p in procs:
                p.wait()
            return [p.returncode for p in procs]
        time.sleep(0.05)


def _tune(given: dict) -> dict:
    from .experiments.fields import main_hyperparameter
    from .experiments.tune import tune

    given = {"val_fraction": 0.1, **given}
    cfg = config_from_options(given)
    param = (given.get("param") or "").replace("-", "_") or main_hyperparameter(cfg.strategy)
    if param is None:
        raise UsageError(f"strategy {cfg.strategy!r} has no setting of its own: pass --param (e.g. lr)")
    return tune(cfg, param, given["grid"], overwrite=given["overwrite"], workers=given["workers"],
                **{k: given[k] for k in BACKEND_KEYS})


def _resume(given: dict) -> dict:
    """``lifelong run --resume RUN_DIR [options]``."""
    from .experiments.runs import resume

    run, settings = split_options(given)
    if "progress" not in run:
        run["progress"] = sys.stderr.isatty()
    result = resume(given["resume"], {**run, **settings}, allow_changes=given["override_config"])
    _print_summary(result)
    return result


def _sweep(given: dict) -> dict:
    """``lifelong sweep``: the spec from a file (run options given on the command line override its
    base) or from --strategies/--set/--seeds over the run options given."""
    from .experiments.fields import applies_to, parse_set
    from .experiments.grid import load_spec
    from .experiments.sweep import sweep

    run, settings = split_options(given)
    run.pop("out", None)
    workers, overwrite = given["workers"], given["overwrite"]
    select = True if given["select"] else None
    on = {k: given[k] for k in BACKEND_KEYS}
    if given.get("spec") is not None:
        flags = [f"--{k}" for k in ("strategies", "set", "seeds") if given.get("sets" if k == "set" else k)]
        flags += [f"--{k}" for k in ("strategy", "seed") if k in run]
        if flags:
            raise UsageError(f"{', '.join(flags)}: with a spec file, put strategies, values and "
                             "seeds in the file (other run options given here override its base)")
        spec = load_spec(given["spec"])
        spec["base"].update({**run, **settings})
        return sweep(spec, given.get("out"), workers=workers, select=select, overwrite=overwrite, **on)

    if given.get("strategies") and "strategy" in run:
        raise UsageError("give either --strategy or --strategies")
    if given.get("seeds") and "seed" in run:
        raise UsageError("give either --seed or --seeds")
    base = {k: v for k, v in run.items() if k not in ("strategy", "seed")}
    strategies = given.get("strategies") or (run.get("strategy", RunConfig.strategy),)
    for key in settings:
        if not any(applies_to(key, s) for s in strategies):
            _check_applies(strategies[0], {key: settings[key]})
    base.update(settings)
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
            users = [s for s in STRATEGIES if applies_to(key, s)]
            raise UsageError(f"--set {key}: none of the strategies {', '.join(strategies)} use it"
                             + (f" (it is read by {', '.join(users)}); add one of them to --strategies" if users else ""))
        for entry in targets:
            entry[key] = list(values) if len(values) > 1 else values[0]
    seeds = list(given.get("seeds") or (run.get("seed", RunConfig.seed),))
    base.setdefault("progress", False)
    spec = {"base": base, "grid": grid, "seeds": seeds}
    return sweep(spec, given.get("out"), workers=workers, select=select, overwrite=overwrite, **on)


def _print_summary(result: dict) -> None:
    if result.get("rank"):  # a data-parallel run's other ranks: rank 0 reports
        return
    m = result.get("metrics") or {}

    def fmt(key: str, sign: str = "+") -> str:
        v = m.get(key)
        return "n/a" if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v else f"{100 * v:{sign}.2f}"

    print(
        f"{result.get('run_id')}: average accuracy {fmt('average_accuracy', '')}%  "
        f"BWT {fmt('backward_transfer')}  FWT {fmt('forward_transfer')}  "
        f"forgetting {fmt('forgetting')}  -> {result.get('run_dir', '(not written)')}"
    )


def console_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lifelong`` script: one-line errors, exit code 2 (usage) or 1 (run time)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        result = main([a for a in argv if a != "--debug"] if debug else argv)
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
