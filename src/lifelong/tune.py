"""Hyperparameter selection on a validation split, never on the test set.

``tune(cfg, "ewc_lambda", [1, 10, 100])`` runs each value with ``cfg.val_fraction`` of every task's
training data held out, scores it by the final average accuracy on those held-out samples, then reruns
the best value on the full training data and reports its test accuracy. Folder layout::

    OUT/tune.json                 grid, validation scores, chosen value, final test metrics
    OUT/trial-<param>-<value>/    one run folder per grid value (validation runs)
    OUT/final/                    the chosen value trained on all training data, tested on the test set
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from ._io import atomic_write_json
from .config import RunConfig
from .errors import UsageError


def tune(cfg: RunConfig, param: str, grid: Sequence[float], *, overwrite: bool = False, quiet: bool = False) -> dict:
    if not grid:
        raise UsageError("--grid needs at least one value")
    if cfg.val_fraction <= 0:
        raise UsageError("tuning needs a validation split: pass --val-fraction > 0 (e.g. 0.1)")
    from .train.run import run

    base = Path(cfg.out) if cfg.out else Path("runs") / f"tune-{cfg.run_id()}-{param}"
    trials = []
    for value in grid:
        trial_cfg = dataclasses.replace(cfg, **{param: value, "out": str(base / f"trial-{param}-{value:g}")}).resolved()
        res = run(trial_cfg, overwrite=overwrite)
        score = res["val_metrics"]["average_accuracy"]
        trials.append({"value": value, "val_average_accuracy": score, "run_id": res["run_id"], "run_dir": res["run_dir"]})
        if not quiet:
            print(f"{param}={value:g}: validation average accuracy {100 * score:.2f}%")
    best = max(trials, key=lambda t: t["val_average_accuracy"])  # first of equals: grid order breaks ties
    final_cfg = dataclasses.replace(cfg, **{param: best["value"], "val_fraction": 0.0, "out": str(base / "final")}).resolved()
    final = run(final_cfg, overwrite=overwrite)
    summary = {
        "param": param,
        "selected_on": "final average accuracy on a validation split held out of the training data",
        "val_fraction": cfg.val_fraction,
        "trials": trials,
        "chosen": best["value"],
        "final": {"run_id": final["run_id"], "run_dir": final["run_dir"], "metrics": final["metrics"]},
    }
    base.mkdir(parents=True, exist_ok=True)
    atomic_write_json(base / "tune.json", summary)
    if not quiet:
        m = final["metrics"]
        print(f"chosen {param}={best['value']:g}; test average accuracy {100 * m['average_accuracy']:.2f}%, "
              f"BWT {100 * m['backward_transfer']:+.2f} -> {base / 'tune.json'}")
    return summary
