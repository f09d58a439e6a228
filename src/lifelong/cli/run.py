"""``lifelong run``: one strategy on one stream, into a run folder; ``--resume`` continues one; ``--nproc N``
trains it in N data-parallel processes started by PyTorch's own launcher (``torch.distributed``'s
elastic launch, what ``torchrun`` uses)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from ..errors import LifelongError, UsageError
from ..experiments.config import RunConfig
from ..train import RunResult
from .options import add_run_options, given_values


def add_parser(sub, strategies) -> dict:
    p = sub.add_parser("run", help="train one strategy on a task stream and write a run folder",
                       description="Train one strategy on a task stream; write config.json, results.json, "
                                   "accuracy_matrix.csv and plots into the run folder.")
    flags = add_run_options(p, strategies)
    o = p.add_argument_group("run folder")
    o.add_argument("--overwrite", action="store_true", default=False, help="reuse an --out folder that holds a different run")
    o.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last checkpoint (same results, to the last bit, as a run "
                        "that was never interrupted); options given with it must match the saved config")
    o.add_argument("--override-config", action="store_true",
                   help="with --resume: accept options that differ from the saved config")
    return flags


def config_from(given: dict[str, Any]) -> RunConfig:
    """The resolved config of the options a user gave (the others take their defaults)."""
    given = dict(given)
    given.setdefault("progress", sys.stderr.isatty())
    return RunConfig.from_flat(given).resolve()


def main(args: argparse.Namespace, argv: list[str]) -> RunResult:
    from ..experiments import runs

    given = given_values(args)
    if given.get("nproc", 1) != 1 and "WORLD_SIZE" not in os.environ:
        return launch(argv, given, args.resume)
    if args.resume and args.overwrite:
        raise UsageError("--resume continues a run and --overwrite starts one afresh: give one of them")
    if args.resume:
        if "progress" not in given:
            given["progress"] = sys.stderr.isatty()
        result = runs.resume(args.resume, given, override_config=args.override_config)
    else:
        result = runs.run(config_from(given), overwrite=args.overwrite)
    print_summary(result)
    return result


def launch(argv: list[str], given: dict, resume: str | None) -> RunResult:
    """``lifelong run --nproc N``: this same command in N processes, started by torch.distributed's elastic
    launch (what torchrun does); rank 0 checks, writes the run folder and reports. A process that fails
    stops the others; its one-line error is ours."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    n = given["nproc"]
    if not isinstance(n, int) or not 1 <= n <= 256:
        raise UsageError(f"--nproc must be in 1..256, got {n}")
    if "threads" not in given:
        argv = [*argv, "--threads", str(max(1, (os.cpu_count() or 1) // n))]  # the cores shared, not oversubscribed
    device = given.get("device")
    if isinstance(device, str) and device.startswith("cuda"):
        os.environ["LIFELONG_DIST_BACKEND"] = "nccl"
    logs = tempfile.mkdtemp(prefix="lifelong-nproc-")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, rdzv_backend="c10d", rdzv_endpoint="localhost:0",
                          run_id=str(uuid.uuid4()), max_restarts=0, monitor_interval=0.1, start_method="spawn",
                          logs_specs=DefaultLogsSpecs(log_dir=logs, redirects={r: Std.OUT for r in range(1, n)}))
    import logging

    # the launcher's logs of a failed rank (tracebacks, "terminating process"): our message is one line
    quiet = [logging.getLogger(n) for n in ("torch.distributed.elastic", "torch.multiprocessing")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    try:
        outcomes = elastic_launch(config, rank_main)(argv)
    except Exception as e:  # noqa: BLE001 - a process died outright (killed, a crash): the launcher says which
        raise LifelongError(_failure(e, resume or given.get("out"))) from None
    finally:
        import shutil

        for q, level in zip(quiet, levels):
            q.setLevel(level)
        shutil.rmtree(logs, ignore_errors=True)
    # the first rank's own error before any rank's lost peers (a rank that failed alone left the others waiting)
    errors = sorted((o for r, o in sorted(outcomes.items()) if isinstance(o, dict) and "error" in o),
                    key=lambda o: bool(o.get("lost")))
    if errors:
        kind = {c.__name__: c for c in _error_kinds()}.get(errors[0]["error"], LifelongError)
        error = kind.__new__(kind)  # the rank's error as it was (its own message, its exit code)
        LifelongError.__init__(error, errors[0]["message"])
        raise error
    result = outcomes[0]
    if resume and result.run_dir is None:
        result.run_dir = str(Path(resume))
    return result


def _failure(e: Exception, folder: str | None) -> str:
    """Which rank failed and why, from the launcher's error; every rank has been stopped by then."""
    failures = getattr(e, "failures", None) or {}
    if not failures:
        return f"a data-parallel process failed: {str(e).strip().splitlines()[-1][:300]}"
    rank, f = min(failures.items())
    why = (f"killed by {f.signal_name()}" if f.exitcode is not None and f.exitcode < 0
           else f"exit code {f.exitcode}")
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    tail = f"; continue from the last checkpoint with `resume={folder}`" if folder else ""
    return f"data-parallel rank {rank} failed{more}: {why}; the other ranks were stopped{tail}"


def rank_main(argv: list[str]) -> Any:
    """One process of ``--nproc``: the command itself; an error comes back as a value, never a traceback.
    Rank 0 ending before it announced the run (an error, a finished run's results) stops the others; a
    rank that loses its peers (one was killed) says so in one line."""
    from ..train import distributed
    from . import main as cli_main

    rank = int(os.environ.get("RANK", "0"))
    try:
        result = cli_main(argv)
    except distributed.RankStopped:
        return {"stopped": True}
    except LifelongError as e:
        distributed.release_followers(str(e))
        return {"error": type(e).__name__, "message": str(e), "rank": rank}
    except (RuntimeError, ConnectionError) as e:  # gloo/nccl: a peer died mid-collective
        return {"error": "LifelongError", "rank": rank, "lost": True,
                "message": f"data-parallel rank {rank} lost its peers ({str(e).strip().splitlines()[0][:200]})"}
    distributed.release_followers(None)
    return result


def _error_kinds():
    from .. import errors

    return [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, LifelongError)]


def print_summary(result: RunResult) -> None:
    if result.rank:  # a data-parallel run's other ranks: rank 0 reports
        return
    print(summary_line(result))


def summary_line(result: RunResult) -> str:
    """The line a run ends with (the docs' example lines are made by this function from recorded runs)."""
    m = result.metrics or {}

    def fmt(key: str, sign: str = "+") -> str:
        v = m.get(key)
        return "n/a" if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v else f"{100 * v:{sign}.2f}"

    if result.anytime is not None:  # a task-free stream: what its accuracy curve says
        return (f"{result.run_id}: final accuracy {fmt('final_accuracy', '')}%  AUC {fmt('auc_accuracy', '')}%  "
                f"curve forgetting {fmt('curve_forgetting')}  -> {result.run_dir or '(not written)'}")
    return (f"{result.run_id}: average accuracy {fmt('average_accuracy', '')}%  "
            f"BWT {fmt('backward_transfer')}  FWT {fmt('forward_transfer')}  "
            f"forgetting {fmt('forgetting')}  -> {result.run_dir or '(not written)'}")
