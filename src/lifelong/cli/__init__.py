"""The ``lifelong`` command: one module per command, options generated from the settings dataclasses.

    lifelong run     --benchmark permuted-mnist --strategy ewc --lambda 100 --out runs/ewc
    lifelong run     --strategy ewc+l2 --ewc.lam 100 --l2.lam 0.1
    lifelong run     --strategy der --der.alpha 0.5 --memory 500
    lifelong tune    --strategy ewc --grid 1,10,100,1000 --val-fraction 0.1 --out runs/ewc-tuned
    lifelong sweep   --strategies naive,ewc --set lam=10,100 --seeds 0,1,2 --workers 2 --out sweeps/ewc
    lifelong sweep   SPEC.json --select --out sweeps/ewc-selected
    lifelong sweep   SPEC.json --backend ray --address auto --cpus-per-run 2 --gpus-per-run 0.25
    lifelong run     --data tasks.npz --strategy er --nproc 2     (your tasks; 2 data-parallel processes)
    lifelong compare sweeps/ewc [more run or sweep folders] --metrics average_accuracy,backward_transfer

``main(argv)`` returns the command's result (a :class:`~lifelong.train.RunResult` for ``run``; a dict for
the others) so tests can assert on it, and raises :class:`lifelong.errors.LifelongError` with the
message written in flags; ``console_main`` turns that into one line on stderr and exit code 2 (usage)
or 1 (run time), with the traceback only under ``--debug``.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from ..errors import LifelongError, UsageError, UserCodeError
from . import compare as compare_cmd
from . import reproduce as reproduce_cmd
from . import run as run_cmd
from . import sweep as sweep_cmd
from . import tune as tune_cmd
from .options import Parser, render, strategies_in

COMMANDS = {"run": run_cmd, "tune": tune_cmd, "sweep": sweep_cmd, "compare": compare_cmd, "reproduce": reproduce_cmd}

__all__ = ["build_parser", "config_of", "console_main", "main"]


#: the documentation page of each command (a test checks that each exists)
DOCS = {"lifelong": "docs/cli.md", "run": "docs/getting-started.md", "tune": "docs/results.md",
        "sweep": "docs/distributed.md", "compare": "docs/distributed.md", "reproduce": "docs/reproductions.md"}


def build_parser(strategies: Sequence[str] = ("naive",)) -> tuple[Parser, dict]:
    """The parser of every command, with the settings of ``strategies`` as options; and the flag of each
    (part, field), which error messages use."""
    parser = Parser(prog="lifelong", description="Continual learning without catastrophic forgetting.",
                    epilog=f"Documentation: {DOCS['lifelong']} (and `lifelong COMMAND --help`).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.strategies = tuple(strategies)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    flags: dict = {}
    for cmd in COMMANDS.values():
        flags.update(cmd.add_parser(sub, strategies) or {})
    for name, command in sub.choices.items():  # the commands' own options (--overwrite, --resume, --workers, ...)
        command.epilog = f"Documentation: {DOCS.get(name, DOCS['lifelong'])}."
        command.strategies = tuple(strategies)
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                flags.setdefault((None, action.dest), tuple(action.option_strings))
    return parser, flags


def config_of(argv: Sequence[str]):
    """The resolved config ``lifelong run ARGV`` would train (nothing runs, nothing is written)."""
    from .options import given_values
    from .run import config_from

    argv = ["run", *map(str, argv)]
    parser, flags = build_parser(strategies_in(argv))
    try:
        return config_from({"progress": False, **given_values(parser.parse_args(argv))})
    except LifelongError as e:
        raise _rendered(e, flags, argv) from e.__cause__  # (your code's error stays the cause)


def main(argv: Sequence[str] | None = None) -> Any:
    """Parse ``argv`` and run the command; returns its result. Raises LifelongError on bad input, its
    message naming the flags the user typed."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv) if a != "--debug"]
    flags: dict = {}
    try:
        parser, flags = build_parser(strategies_in(argv))
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("no command given: use `lifelong run`, `tune`, `sweep`, `compare` or `reproduce` (see "
                             "`lifelong --help`)")
        return COMMANDS[args.command].main(args, argv)
    except LifelongError as e:
        raise _rendered(e, flags, argv).with_traceback(e.__traceback__) from e.__cause__


def _rendered(e: LifelongError, flags: dict, argv: Sequence[str]) -> LifelongError:
    """``e`` (same type, same attributes) with its message in the flags the user typed (:func:`render`)."""
    text = render(e, flags, argv)
    if text == str(e):
        return e
    out = type(e).__new__(type(e), text)
    out.__dict__.update(e.__dict__)
    out.args = (text,)
    return out


def console_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lifelong`` script: one-line errors, exit code 2 (usage) or 1 (run time)."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    debug = "--debug" in argv
    try:
        result = main(argv)
    except LifelongError as e:
        if debug:
            raise
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(e))  # one line, whatever it quotes
        if isinstance(e, UserCodeError):
            text = text.replace("the error's cause holds its traceback", "--debug shows its traceback")
        print(f"lifelong: error: {text}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the machine refused (a full disk, no permission): the file, and what it said
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"lifelong: error: {where}{e.strerror or e} (the files written before it are intact)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lifelong: interrupted", file=sys.stderr)
        return 130
    failed = [r for r in result.get("runs", ()) if r.get("status") == "failed"] if isinstance(result, dict) else []
    if failed:  # a sweep that finished, some of its runs failed
        print(f"lifelong: error: {len(failed)} of {len(result['runs'])} runs failed (see {result['out']}/sweep.json); "
              f"first, {failed[0]['id']}: {failed[0].get('message')}", file=sys.stderr)
        return 1
    return 0
