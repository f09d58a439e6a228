"""Evaluation at any time: the accuracy curve of a task-free stream and what is read off it.

Every ``eval_every`` training samples the model is measured on a fixed evaluation subset of the test
split (at most ``eval_per_group`` samples of each group: :mod:`lifelong.scenarios.taskfree`), giving
a point ``(n, a_n, a_n,g)``: the samples seen so far, the accuracy on the groups seen so far (those
with a training sample among the first n), and the accuracy on each group (None for a group the test
split has no sample of: it enters no metric). From the curve:

- ``final_accuracy``: a at the last point (the end of the stream), over the groups seen by then.
- ``auc_accuracy``: the area under the accuracy curve, A_AUC = Σ_i a(n_i) Δn_i (Koh et al. 2022,
  "Online continual learning on class incremental blurry task configuration with anytime inference",
  §4.1), divided by the samples it covers, Σ_i Δn_i, so that it reads as an accuracy: with a constant
  evaluation period it is the mean of the curve. Δn_i = n_i − n_{i−1}, n_0 = 0.
- ``curve_forgetting``: for each group seen before the last point, its best accuracy at an earlier
  point minus its accuracy at the last one, averaged over those groups (forgetting as in Chaudhry et
  al. 2018, read off the curve instead of the accuracy matrix).

These are pure functions of plain lists, tested on hand-computed curves.
"""

from __future__ import annotations

import math
from typing import Sequence

ANYTIME_METRICS = ("final_accuracy", "auc_accuracy", "curve_forgetting")


def seen_accuracy(per_group: Sequence[float | None], counts: Sequence[int], seen: Sequence[bool]) -> float | None:
    """The accuracy over the evaluation samples of the groups ``seen``: Σ_g seen a_g c_g / Σ_g seen c_g
    (None when no group is seen yet; a group without evaluation samples, a_g None, adds nothing)."""
    num = sum(a * c for a, c, s in zip(per_group, counts, seen) if s and c)
    den = sum(c for c, s in zip(counts, seen) if s)
    return None if den == 0 else num / den


def auc(samples: Sequence[int], accuracy: Sequence[float | None]) -> float | None:
    """Σ_i a_i Δn_i / Σ_i Δn_i over the points whose accuracy is defined (Δn_i = n_i − n_{i−1}, n_0 = 0;
    a point before any group is seen counts as accuracy 0, as a model that knows nothing); None for an
    empty curve."""
    if not samples:
        return None
    prev, num, den = 0, 0.0, 0
    for n, a in zip(samples, accuracy):
        if n < prev:
            raise ValueError(f"the curve's sample counts must not decrease ({prev} then {n})")
        num += (0.0 if a is None else a) * (n - prev)
        den += n - prev
        prev = n
    return None if den == 0 else num / den


def curve_forgetting(per_group: Sequence[Sequence[float | None]], seen: Sequence[Sequence[bool]]) -> float | None:
    """Mean over groups seen before the last point of (best accuracy at an earlier point, while seen) −
    (accuracy at the last point); None with fewer than two points or no such group. A group without
    evaluation samples (its accuracy None: none in the test split) is no such group."""
    if len(per_group) < 2:
        return None
    last, drops = per_group[-1], []
    for g in range(len(last)):
        before = [row[g] for row, s in zip(per_group[:-1], seen[:-1]) if s[g] and row[g] is not None]
        if before and last[g] is not None:
            drops.append(max(before) - last[g])
    return sum(drops) / len(drops) if drops else None


def anytime_metrics(points: Sequence[dict]) -> dict[str, float | None]:
    """The metrics of a curve (a list of points as :class:`lifelong.train.Learner` records them:
    ``samples``, ``accuracy``, ``groups``, ``seen``)."""
    if not points:
        return {k: None for k in ANYTIME_METRICS}
    return {
        "final_accuracy": points[-1]["accuracy"],
        "auc_accuracy": auc([p["samples"] for p in points], [p["accuracy"] for p in points]),
        "curve_forgetting": curve_forgetting([p["groups"] for p in points], [p["seen"] for p in points]),
    }


def check_point(p: object) -> str | None:
    """What is wrong with a recorded point (a checkpoint's), or None."""
    if not isinstance(p, dict) or not {"samples", "accuracy", "groups", "seen"} <= set(p):
        return "a point needs samples, accuracy, groups and seen"
    if type(p["samples"]) is not int or p["samples"] < 0:
        return f"samples {p['samples']!r} is not a count"
    a = p["accuracy"]
    if a is not None and not (isinstance(a, (int, float)) and math.isfinite(a) and 0 <= a <= 1):
        return f"accuracy {a!r} is not in [0, 1]"
    if not isinstance(p["groups"], list) or not isinstance(p["seen"], list) or len(p["groups"]) != len(p["seen"]):
        return "groups and seen must be lists of one value per group"
    return None
