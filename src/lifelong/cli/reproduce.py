"""``lifelong reproduce``: a named reproduction of a published table, ours printed beside theirs."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from .options import add_backend_options, backend_of, ints, names_list


def add_parser(sub, strategies) -> None:
    from ..experiments.recipes import RECIPES

    p = sub.add_parser("reproduce", help="run a named reproduction of a published table and print ours beside it",
                       description="Run a recipe's grid (resumable: finished runs are skipped) and print our table "
                                   "beside the published one, cell by cell, with the difference.")
    p.add_argument("recipe", choices=list(RECIPES), help="the published table to reproduce")
    p.add_argument("--seeds", default="5", help="how many seeds (e.g. 5 = seeds 0..4), or a list like 0,3,7 (default: 5)")
    add_backend_options(p)
    p.add_argument("--methods", type=names_list, default=None, help="only these methods (default: all of the table)")
    p.add_argument("--scenarios", type=names_list, default=None, help="only these scenarios (default: all of the table)")
    p.add_argument("--data-dir", default=None, help="folder with the IDX files")
    p.add_argument("--no-download", dest="download", action="store_false", default=None,
                   help="never download: fail if the files are not found locally")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per run")
    p.add_argument("--optimizer-state", choices=["reset", "keep"], default=None,
                   help="override the recipe's choice: a fresh optimizer per task, or one for the whole stream")
    p.add_argument("--out", default=None, help="reproduction folder (default: reproductions/<recipe>)")


def seeds_of(text: str) -> list[int]:
    """``5`` -> seeds 0..4; ``0,3,7`` -> those."""
    try:
        vals = ints(text)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"--seeds: {e}") from None
    if not vals:
        raise UsageError(f"--seeds needs a number of seeds or a list like 0,1,2, got {text!r}")
    if len(vals) == 1 and "," not in text:
        if vals[0] < 1:
            raise UsageError(f"--seeds must be >= 1, got {vals[0]}")
        return list(range(vals[0]))
    return list(vals)


def main(args: argparse.Namespace, argv: list[str]) -> dict:
    from ..experiments.recipes import reproduce

    return reproduce(args.recipe, seeds_of(args.seeds), out=args.out, workers=args.workers, methods=args.methods,
                     scenarios=args.scenarios, data_dir=args.data_dir, threads=args.threads, download=args.download,
                     optimizer_state=args.optimizer_state, **backend_of(args))
