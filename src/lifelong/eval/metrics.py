"""Continual-learning metrics as pure functions of the accuracy matrix.

The accuracy matrix ``R`` has shape ``(T+1, T)`` (fractions in [0, 1]):

* row 0: accuracy on each task ``j`` before any training (random init; GEM's ``b_j``);
* row ``i`` (1..T): accuracy on task ``j`` after training tasks ``0..i-1``, i.e. after training the
  ``i``-th task (tasks are 0-indexed, rows are 1-indexed by "how many tasks were trained").

So ``R[j+1, j]`` is the accuracy on task ``j`` just after training it, ``R[j, j]`` just before
training it, and ``R[T, j]`` at the end of the stream.

References
----------
* GEM: Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017,
  Sec. 2, eqs. (2)-(4): ACC, BWT, FWT. GEM's ``R_{i,j}`` (1-indexed) is our ``R[i, j-1]`` and its
  ``b̄_j`` is our ``R[0, j-1]``.
* RWalk: Chaudhry, Dokania, Ajanthan & Torr, "Riemannian Walk for Incremental Learning:
  Understanding Forgetting and Intransigence", ECCV 2018, Sec. 4: average accuracy ``A_k``,
  forgetting ``f_j^k`` / ``F_k`` and intransigence ``I_k``. Their ``a_{k,j}`` (1-indexed) is our
  ``R[k, j-1]``.

Metrics that need at least two tasks (BWT, FWT, forgetting) return ``float('nan')`` for ``T = 1``:
they are undefined there (a mean over zero terms), and NaN makes that visible instead of passing
off 0.0 as "no forgetting". :func:`summarize`, what runs report, gives None for every undefined metric
and :func:`undefined_metrics` says why (also FWT in the class-incremental scenario).

Example
-------
>>> import numpy as np
>>> R = np.array([[0.1, 0.1],
...               [0.9, 0.2],
...               [0.7, 0.8]])
>>> round(average_accuracy(R), 6), round(backward_transfer(R), 6), round(forward_transfer(R), 6)
(0.75, -0.2, 0.1)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from lifelong.errors import UsageError

__all__ = [
    "check_accuracy_matrix",
    "average_accuracy",
    "average_accuracy_curve",
    "backward_transfer",
    "forward_transfer",
    "forgetting",
    "forgetting_per_task",
    "intransigence",
    "intransigence_per_task",
    "summarize",
    "undefined_metrics",
]

_EXPECTED = (
    "expected a 2-D accuracy matrix of shape (T+1, T) with T >= 1 "
    "(row 0 = before training, row i = after training task i) holding fractions in [0, 1]"
)


def check_accuracy_matrix(R: ArrayLike) -> np.ndarray:
    """Return ``R`` as a float64 array of shape ``(T+1, T)``, or raise :class:`UsageError`.

    Accepts anything ``np.asarray`` understands (nested lists from a results file included).
    Rejects a wrong shape, non-finite entries and values outside [0, 1] (percentages, say).
    """
    try:
        A = np.asarray(R, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{_EXPECTED}; got something that is not a numeric array ({e})") from None
    if A.ndim != 2 or A.shape[1] < 1 or A.shape[0] != A.shape[1] + 1:
        raise UsageError(f"{_EXPECTED}; got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise UsageError(f"{_EXPECTED}; got non-finite entries (NaN or inf)")
    if A.min() < 0.0 or A.max() > 1.0:
        raise UsageError(
            f"{_EXPECTED}; got values in [{A.min():g}, {A.max():g}] (divide percentages by 100)"
        )
    return A


def _num_tasks(A: np.ndarray) -> int:
    return A.shape[1]


def average_accuracy(R: ArrayLike) -> float:
    """Final average accuracy ``ACC = 1/T Σ_j R[T, j]`` (GEM eq. 2; RWalk ``A_T``).

    >>> average_accuracy([[0.0], [0.5]])
    0.5
    """
    A = check_accuracy_matrix(R)
    return float(A[-1].mean())


def average_accuracy_curve(R: ArrayLike) -> np.ndarray:
    """Average accuracy over the tasks seen so far, after each task: shape ``(T,)``.

    ``curve[i] = 1/(i+1) Σ_{j=0}^{i} R[i+1, j]`` (RWalk ``A_k`` with ``k = i+1``); the last entry
    equals :func:`average_accuracy`.

    >>> average_accuracy_curve([[0.1, 0.1], [0.9, 0.2], [0.7, 0.8]]).round(6).tolist()
    [0.9, 0.75]
    """
    A = check_accuracy_matrix(R)
    T = _num_tasks(A)
    seen = np.tril(np.ones((T, T), dtype=bool))  # (T, T): seen[i, j] = j <= i
    return (A[1:] * seen).sum(axis=1) / seen.sum(axis=1)  # (T,)


def backward_transfer(R: ArrayLike) -> float:
    """Backward transfer ``BWT = 1/(T-1) Σ_{j=0}^{T-2} (R[T, j] − R[j+1, j])`` (GEM eq. 3).

    Negative values mean forgetting: the final accuracy on an old task is below the accuracy it had
    just after it was trained. NaN for ``T = 1`` (undefined).

    >>> round(backward_transfer([[0.1, 0.1], [0.9, 0.2], [0.7, 0.8]]), 6)
    -0.2
    """
    A = check_accuracy_matrix(R)
    T = _num_tasks(A)
    if T < 2:
        return float("nan")
    j = np.arange(T - 1)
    return float((A[T, j] - A[j + 1, j]).mean())


def forward_transfer(R: ArrayLike) -> float:
    """Forward transfer ``FWT = 1/(T-1) Σ_{j=1}^{T-1} (R[j, j] − R[0, j])`` (GEM eq. 4).

    ``R[j, j]`` is the accuracy on task ``j`` just before training it, ``R[0, j]`` the accuracy at
    random init (GEM's ``b̄_j``). NaN for ``T = 1`` (undefined).

    >>> round(forward_transfer([[0.1, 0.1], [0.9, 0.2], [0.7, 0.8]]), 6)
    0.1
    """
    A = check_accuracy_matrix(R)
    T = _num_tasks(A)
    if T < 2:
        return float("nan")
    j = np.arange(1, T)
    return float((A[j, j] - A[0, j]).mean())


def forgetting_per_task(R: ArrayLike) -> np.ndarray:
    """Forgetting of each old task after the last one, shape ``(T-1,)`` (RWalk Sec. 4).

    ``f_j = max_{l ∈ 1..T-1} R[l, j] − R[T, j]`` for ``j = 0..T-2``: Chaudhry et al.'s
    ``f_j^k = max_{l ∈ {1..k-1}} a_{l,j} − a_{k,j}`` at ``k = T``. This is the paper's definition:
    the max runs over *all* after-training rows ``1..T-1`` (never the init row 0), including rows
    measured before task ``j`` was trained; those rarely matter since accuracy is near chance
    there. Entries can be negative (the task improved). Empty for ``T = 1``.

    >>> forgetting_per_task([[0.1, 0.1], [0.9, 0.2], [0.7, 0.8]]).round(6).tolist()
    [0.2]
    """
    A = check_accuracy_matrix(R)
    T = _num_tasks(A)
    peak = A[1:T, : T - 1].max(axis=0, initial=-np.inf)  # (T-1,): max over rows 1..T-1
    return peak - A[T, : T - 1]


def forgetting(R: ArrayLike) -> float:
    """Average forgetting after the last task ``F_T = 1/(T-1) Σ_{j=0}^{T-2} f_j`` (RWalk Sec. 4).

    ``f_j`` is :func:`forgetting_per_task`. Positive values mean forgetting (the sign is opposite
    to BWT). NaN for ``T = 1`` (undefined).

    >>> round(forgetting([[0.1, 0.1], [0.9, 0.2], [0.7, 0.8]]), 6)
    0.2
    """
    f = forgetting_per_task(R)
    return float(f.mean()) if f.size else float("nan")


def _check_reference(reference: ArrayLike, T: int) -> np.ndarray:
    try:
        ref = np.asarray(reference, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise UsageError(f"reference accuracies must be numeric, shape ({T},); got {e}") from None
    if ref.shape != (T,):
        raise UsageError(
            f"reference accuracies must have shape ({T},), one per task; got shape {ref.shape}"
        )
    if not np.all(np.isfinite(ref)) or ref.min() < 0.0 or ref.max() > 1.0:
        raise UsageError("reference accuracies must be finite fractions in [0, 1]")
    return ref


def intransigence_per_task(R: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """Intransigence of each task, shape ``(T,)``: ``I_k = a*_k − R[k+1, k]`` (RWalk Sec. 4).

    ``reference[k]`` (``a*_k``) is the accuracy on task ``k`` of a reference model trained jointly
    on all data of tasks ``0..k``; ``R[k+1, k]`` is the accuracy on task ``k`` just after the
    continual learner trained it. Positive values mean the learner could not learn task ``k`` as
    well as joint training did.

    >>> intransigence_per_task([[0.1, 0.1], [0.9, 0.2], [0.7, 0.8]], [0.95, 0.9]).round(6).tolist()
    [0.05, 0.1]
    """
    A = check_accuracy_matrix(R)
    T = _num_tasks(A)
    ref = _check_reference(reference, T)
    k = np.arange(T)
    return ref - A[k + 1, k]


def intransigence(R: ArrayLike, reference: ArrayLike) -> float:
    """Mean intransigence ``1/T Σ_k I_k`` over all tasks (RWalk Sec. 4).

    The RWalk tables report ``I_k`` at the last task, i.e. ``intransigence_per_task(R, ref)[-1]``;
    the mean over tasks is the summary used here.

    >>> round(intransigence([[0.1, 0.1], [0.9, 0.2], [0.7, 0.8]], [0.95, 0.9]), 6)
    0.075
    """
    return float(intransigence_per_task(R, reference).mean())


CLASS_IL_FWT = ("undefined in the class-incremental scenario: before task j is trained its classes' output units "
                "have never been trained (with class_units='seen' they are not even live), so R[j-1][j] reflects the "
                "random initialization alone")
ONE_TASK = "undefined for one task: it is a mean over pairs of tasks, and there are none"
UNTRAINED = ("undefined when a task before the last was not trained when it arrived (joint-end trains once, at "
             "the end): R[i][i] then measures no learning, and neither do the transfers and drops measured from it")


def undefined_metrics(R: ArrayLike, scenario: str | None = None,
                      steps_per_task: Sequence[int] | None = None) -> dict[str, str]:
    """The metrics :func:`summarize` leaves undefined (None) for ``R`` in ``scenario``, each with why.
    ``steps_per_task``: the training steps each task had, when known (a task with none before the last
    makes BWT, FWT and forgetting undefined)."""
    A = check_accuracy_matrix(R)
    why: dict[str, str] = {}
    if _num_tasks(A) < 2:
        why.update(backward_transfer=ONE_TASK, forward_transfer=ONE_TASK, forgetting=ONE_TASK)
    if scenario == "class":
        why["forward_transfer"] = CLASS_IL_FWT
    if steps_per_task is not None and any(s == 0 for s in list(steps_per_task)[: _num_tasks(A) - 1]):
        why.update(backward_transfer=UNTRAINED, forward_transfer=UNTRAINED, forgetting=UNTRAINED)
    return why


def summarize(R: ArrayLike, reference: ArrayLike | None = None, *, scenario: str | None = None,
              steps_per_task: Sequence[int] | None = None) -> dict[str, float | None]:
    """The headline metrics as a flat dict of Python floats: what ``lifelong run`` reports and
    :meth:`lifelong.Learner.summary` returns.

    Keys: ``average_accuracy``, ``backward_transfer``, ``forward_transfer``, ``forgetting``, plus
    ``intransigence`` when ``reference`` is given. A metric that is undefined for ``R`` in ``scenario``
    is None, and :func:`undefined_metrics` says why (one task: BWT, FWT and forgetting; the class
    scenario: FWT; a task before the last trained in no step, per ``steps_per_task``: BWT, FWT and
    forgetting).

    >>> summarize([[0.0], [0.5]])["average_accuracy"], summarize([[0.0], [0.5]])["backward_transfer"]
    (0.5, None)
    """
    A = check_accuracy_matrix(R)
    out: dict[str, float | None] = {
        "average_accuracy": average_accuracy(A),
        "backward_transfer": backward_transfer(A),
        "forward_transfer": forward_transfer(A),
        "forgetting": forgetting(A),
    }
    if reference is not None:
        out["intransigence"] = intransigence(A, reference)
    for name in undefined_metrics(A, scenario, steps_per_task):
        out[name] = None
    return out
