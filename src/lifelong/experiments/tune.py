"""Hyperparameter selection on a validation split, never on the test set: one parameter, one grid.

``tune(cfg, "lam", [1, 10, 100])`` runs each value of a config field or strategy setting with ``cfg.val_fraction`` of every task's
training data held out, scores it by the final average accuracy on those held-out samples, then reruns
the best value on the full training data (``val_fraction=0``) and reports its test accuracy. It is the
one-method, one-seed case of :func:`lifelong.experiments.sweep.sweep` with selection, and shares its machinery:
finished runs are skipped when tuning again, and the final run's results.json records the selection.
Folder layout::

    OUT/tune.json                 grid, validation scores, chosen value, final test metrics
    OUT/sweep.json                the runs, their status and phase (validation or final), as for a sweep
    OUT/trial-<param>-<value>/    one run folder per grid value (validation runs)
    OUT/final/                    the chosen value trained on all training data, tested on the test set
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError
from .config import RunConfig, coerce_key, leaf_of
from .executor import Index, Job
from .folder import locked
from .grid import fmt, validated
from .selection import choose
from .sweep import backend_of, error_of


def tune(
    cfg: RunConfig,
    param: str,
    grid: Sequence[Any],
    *,
    overwrite: bool = False,
    quiet: bool = False,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
) -> dict:
    """Choose ``param`` (a RunConfig field or a setting of ``cfg.strategy``) from ``grid`` on the validation split; return the summary
    that is also written to ``OUT/tune.json``. Raises the run's error if the final run fails, or if
    every value of the grid failed. ``backend="ray"`` runs the trials as Ray tasks (see
    :func:`~lifelong.experiments.sweep.sweep`)."""
    if not grid:
        raise UsageError("`grid` needs at least one value")
    runner = backend_of(backend, workers, address, cpus_per_run, gpus_per_run)  # options first, then the data
    cfg = cfg.resolve()
    leaf_of(param, cfg.strategy_name, "`param`: ")  # a run key or a setting of the strategy
    if cfg.stream.val_fraction <= 0:
        raise UsageError("tuning needs a validation split: give `val_fraction` a value > 0 (e.g. 0.1)")
    values = list(dict.fromkeys(coerce_key(param, v, f"`grid` for `param={param}`", cfg.strategy_name) for v in grid))
    base = Path(cfg.runtime.out) if cfg.runtime.out else Path("runs") / f"tune-{cfg.run_id}-{param}"
    spec = {"base": {k: v for k, v in cfg.flat().items() if k != "out"}, "grid": [{param: values}],
            "seeds": [cfg.seed], "select": True, "tune": {"param": param}}
    book = Index(spec, base, workers, quiet, runner)
    trials = []
    for value in values:  # all validated before anything runs
        where = f"{param}={fmt(value)}"
        trial = validated(lambda: _with(cfg, param, value, out=str(base / f"trial-{param}-{fmt(value)}")), where)
        trials.append(Job(trial, "validation", cfg.strategy_name, {param: value}))
    finals = {value: validated(lambda: t.cfg.replace(val_fraction=0.0, out=str(base / "final")),
                               f"{param}={fmt(value)}") for value, t in zip(values, trials)}
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the tuning folder {base}: {e.strerror}; choose another `out`") from None
    with runner, locked(base, "tuning"):  # Ray's check before anything runs; one tuning per folder
        book.run(trials, overwrite)

        choice = choose(cfg.strategy_name, trials, [cfg.seed], cfg.stream.val_fraction)
        book.selection.append(choice)
        summary = {
            "param": param,
            "selected_on": "final average accuracy on a validation split held out of the training data",
            "val_fraction": cfg.stream.val_fraction,
            "trials": [_trial(t, param) for t in trials],
        }
        if choice["params"] is None:
            first = next(t for t in trials if t.status == "failed")
            raise type(error_of(first.outcome))(f"every value of `grid` failed; {param}={fmt(first.params[param])}: "
                                                 f"{first.outcome['message']}")
        chosen = choice["params"][param]
        final = Job(finals[chosen], "final", cfg.strategy_name, {param: chosen}, selection=choice)
        book.run([final], overwrite=True)  # final/ holds the previous choice's run if the choice changed
        book.save()
        if final.status == "failed":
            raise error_of(final.outcome)
        summary["chosen"] = chosen
        summary["final"] = {"run_id": final.id, "run_dir": final.cfg.runtime.out, "metrics": final.outcome["metrics"]}
        from ..report.files import write_json

        write_json(base / "tune.json", summary)
        if not quiet:
            m = final.outcome["metrics"]
            bwt = m.get("backward_transfer")
            print(f"chosen {param}={fmt(chosen)}; test average accuracy {100 * m['average_accuracy']:.2f}%, "
                  f"BWT {'n/a' if bwt is None else f'{100 * bwt:+.2f}'} -> {base / 'tune.json'}")
        return summary


def _with(cfg: RunConfig, param: str, value: Any, **changes: Any) -> RunConfig:
    """``cfg`` with ``param`` (a run key or a setting) set to ``value``."""
    return cfg.replace(**{param: value}, **changes)


def _trial(t: Job, param: str) -> dict:
    d = {"value": t.params[param], "status": t.status,
         "val_average_accuracy": (t.outcome.get("val_metrics") or {}).get("average_accuracy"),
         "run_id": t.id, "run_dir": t.cfg.runtime.out}
    if t.status == "failed":
        d["message"] = t.outcome["message"]
    return d
