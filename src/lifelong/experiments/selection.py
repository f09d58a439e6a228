"""Choosing each method's settings on a validation split held out of the training data, never the
test set: the score of a candidate is the mean over seeds of its final validation average accuracy."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence

from .executor import Job

#: Held-out fraction of each task's training data for selection when the base config has none.
DEFAULT_VAL_FRACTION = 0.1
SCORE = "val_metrics.average_accuracy"  # what selection maximizes (mean over seeds)


def choose(method: str, jobs: Sequence[Job], seeds: Sequence[int], val_fraction: float) -> dict:
    """The candidate with the best mean validation score over seeds (first in grid order on ties)."""
    by_params: dict[str, list[Job]] = {}
    for job in jobs:
        by_params.setdefault(json.dumps(job.params, sort_keys=True), []).append(job)
    candidates = []
    for group in by_params.values():
        scores = {}
        for job in group:
            val = job.outcome.get("val_metrics") if job.status in ("done", "skipped") else None
            scores[job.cfg.seed] = None if val is None else val.get("average_accuracy")
        ok = all(v is not None for v in scores.values())
        candidates.append({
            "params": group[0].params,
            "val_average_accuracy": statistics.fmean(scores.values()) if ok else None,
            "per_seed": {str(s): v for s, v in scores.items()},
            "run_ids": [j.id for j in group],
            **({} if ok else {"failed": [j.outcome.get("message") for j in group if j.status == "failed"]}),
        })
    scored = [c for c in candidates if c["val_average_accuracy"] is not None]
    best = max(scored, key=lambda c: c["val_average_accuracy"]) if scored else None
    return {
        "method": method,
        "params": None if best is None else best["params"],
        "scored_on": "validation",
        "score": f"mean over seeds of {SCORE}: final average accuracy on a validation split held out of the "
                 f"training data (val_fraction={val_fraction:g})",
        "val_fraction": val_fraction,
        "seeds": list(seeds),
        "candidates": candidates,
        **({} if best else {"message": "every candidate failed on some seed; nothing to choose"}),
    }


