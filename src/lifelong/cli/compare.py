"""``lifelong compare``: one table of methods × metrics (mean ± std over seeds) from run folders."""

from __future__ import annotations

import argparse

from .options import names_list


def add_parser(sub, strategies) -> None:
    p = sub.add_parser("compare", help="one table of methods x metrics (mean ± std over seeds) from run folders",
                       description="Aggregate run folders (any folder holding results.json and config.json under the "
                                   "given paths) into a table: one row per method (config without the seed), mean ± "
                                   "sample std over seeds. Writes compare.md, compare.csv and compare.png.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="run folders, sweep folders or folders holding them, or record files (see --record)")
    p.add_argument("--out", default=None, help="folder for compare.md/.csv/.png (default: the first PATH)")
    p.add_argument("--memory", action="store_true",
                   help="add each method's extra memory after the last task (MB: importances, anchors, replay samples, "
                        "a teacher model) and plot accuracy against it (compare-memory.png)")
    p.add_argument("--html", action="store_true",
                   help="also write compare.html: the table, the plots and every run's config on one page that "
                        "opens in a browser from the file")
    p.add_argument("--record", default=None, metavar="FILE",
                   help="also write the runs compared into FILE (.json): their configs and numbers in one file that "
                        "`lifelong compare FILE` reads back as the same table (to commit or share)")
    p.add_argument("--metrics", type=names_list, default=None,
                   help="comma-separated metrics of results.json: names in 'metrics' (average_accuracy, "
                        "backward_transfer, forward_transfer, forgetting, ...) or dotted paths such as "
                        "val_metrics.average_accuracy or timings.total_seconds "
                        "(default: average_accuracy,backward_transfer,forward_transfer,forgetting)")


def main(args: argparse.Namespace, argv: list[str]) -> dict:
    from ..experiments.collect import compare

    return compare(args.paths, out=args.out, metrics=args.metrics, memory=args.memory, html=args.html, record=args.record)
