"""When a regularizer consolidates, and from what importance: the boundary-free forms.

By default a regularizer consolidates at the end of each task, from a pass over the task's data
(``consolidate="task"``, ``importance_every=0``). Two settings free it from task boundaries:

- ``importance_every = K``: a *running* importance, updated every K steps from the current batch's
  own samples at the current θ with an exponential average (EWC++, Chaudhry et al. 2018, "Riemannian
  walk for incremental learning", §4.1):  Ω̃ ← α Ω_batch + (1 − α) Ω̃,  α = ``importance_decay``
  (the first update takes Ω_batch as it is). A consolidation then merges Ω̃, anchored at the current
  θ, instead of making a pass over the task's data.
- ``consolidate``: ``"task"`` (at each task's end), ``"steps"`` (every ``consolidate_every`` steps) or
  ``"plateau"``: when the loss settles after a rise (Aljundi, Kelchtermans & Tuytelaars 2019,
  "Task-free continual learning", §3.2): the mean loss of each block of K steps enters a window of the
  last ``plateau_window`` blocks; a *peak* is a window mean above the last plateau's mean plus its
  standard deviation; after a peak (or at the start), a window whose mean is below ``plateau_mean`` and
  whose variance is below ``plateau_var`` is a plateau, and the regularizer consolidates (its merge
  rule: a new quadratic for EWC, γ-decay for online EWC, a sum at the newest anchor for MAS). The
  losses are read from the device once per block (every K steps), never per step. With ``plateau`` or
  ``steps`` the running importance is always used (K = ``importance_every``, or 10 when 0), and the
  announced task boundaries are ignored.

:func:`plateau_step` is the detector as a pure function of its state, tested on synthetic loss curves.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ...settings import setting

CONSOLIDATIONS = ("task", "plateau", "steps")
DEFAULT_EVERY = 10  # steps between running-importance updates when consolidation is boundary-free


def consolidation_fields() -> list[tuple[str, object, dataclasses.Field]]:
    """The consolidation's settings as ``(name, type, field)``, for :func:`with_consolidation`."""
    return [
        ("consolidate", str, setting(
            "task", added=True, choices=CONSOLIDATIONS,
            help="when the penalty takes the importance: at each task's end, every `consolidate_every` steps, or at "
                 "each plateau of the loss (Aljundi et al. 2019): the last two need no task boundaries")),
        ("consolidate_every", int | None, setting(
            None, added=True, check=lambda v: 1 <= v <= 10**12, must="be a number of steps >= 1",
            help="consolidate='steps': steps between consolidations")),
        ("importance_every", int, setting(
            0, added=True, check=lambda v: 0 <= v <= 10**9, must="be a number of steps >= 0",
            help="update a running importance every this many steps from the current batch, exponentially averaged "
                 "(EWC++, Chaudhry et al. 2018); 0: a pass over the task's data at its end (10 steps when consolidate "
                 "is plateau or steps)")),
        ("importance_decay", float, setting(
            0.1, added=True, check=lambda v: 0 < v <= 1, must="be in (0, 1]",
            help="the running importance's weight of the newest batch: Ω ← α Ω_batch + (1 − α) Ω")),
        ("plateau_window", int, setting(
            5, added=True, check=lambda v: 2 <= v <= 10**6, must="be >= 2",
            help="consolidate='plateau': blocks of `importance_every` steps in the loss window")),
        ("plateau_mean", float, setting(
            0.2, added=True, check=lambda v: v > 0, must="be > 0",
            help="consolidate='plateau': a plateau's window mean of the loss is below this")),
        ("plateau_var", float, setting(
            0.1, added=True, check=lambda v: v > 0, must="be > 0",
            help="consolidate='plateau': a plateau's window variance of the loss is below this")),
    ]


def with_consolidation(base: type, name: str, doc: str, module: str) -> type:
    """The settings class ``name``: ``base``'s fields, then the consolidation's (after them, so that the
    positional order of ``base``'s stays), and ``base``'s check followed by :func:`check_consolidation`.
    One definition for every regularizer that can consolidate without task boundaries."""

    def check(self) -> None:
        base.check(self)
        check_consolidation(self)

    return dataclasses.make_dataclass(name, consolidation_fields(), bases=(base,), frozen=True,
                                      namespace={"check": check, "__doc__": doc, "__module__": module,
                                                 "__qualname__": name})


def check_consolidation(s) -> None:
    """The settings' combinations that mean nothing are one-line errors."""
    if s.consolidate == "steps" and s.consolidate_every is None:
        s.fail("consolidate_every", "is needed by consolidate='steps' (steps between consolidations)", "consolidate")
    if s.consolidate != "steps" and s.consolidate_every is not None:
        s.fail("consolidate_every", "applies to consolidate='steps'", "consolidate")
    defaults = {"plateau_window": 5, "plateau_mean": 0.2, "plateau_var": 0.1}
    if s.consolidate != "plateau":
        for name, value in defaults.items():
            if getattr(s, name) != value:
                s.fail(name, "applies to consolidate='plateau'", "consolidate")
    if s.importance_every == 0 and s.consolidate == "task" and s.importance_decay != 0.1:
        s.fail("importance_decay", "applies to a running importance (importance_every > 0)", "importance_every")


def update_every(s) -> int:
    """K: steps between running-importance updates (0: no running importance)."""
    if s.importance_every:
        return s.importance_every
    return DEFAULT_EVERY if s.consolidate != "task" else 0


@dataclass(frozen=True)
class Plateau:
    """The detector's state: the window of block means, the last plateau's mean and variance, and
    whether a peak came since (True at the start, so that the first plateau counts)."""

    window: tuple[float, ...] = ()
    last_mean: float = 0.0
    last_var: float = 0.0
    peak: bool = True


def plateau_step(state: Plateau, loss: float, length: int, mean_below: float, var_below: float) -> tuple[Plateau, bool]:
    """Add one block's mean loss to the window; return the new state and whether a plateau is reached
    (Aljundi et al. 2019, §3.2; the reference code's ``loss_window`` logic)."""
    window = (*state.window, float(loss))[-length:]
    mean = sum(window) / len(window)
    var = sum((v - mean) ** 2 for v in window) / len(window)
    peak = state.peak or mean > state.last_mean + math.sqrt(state.last_var)
    if len(window) == length and peak and mean < mean_below and var < var_below:
        return Plateau(window, mean, var, False), True
    return Plateau(window, state.last_mean, state.last_var, peak), False
