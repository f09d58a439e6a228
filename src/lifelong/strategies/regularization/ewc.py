"""Elastic Weight Consolidation (Kirkpatrick et al. 2017, PNAS, eq. 3) and online EWC
(Schwarz et al. 2018, "Progress & Compress", eq. 8).

After task A, keep θ*_A and the diagonal Fisher F_A; while learning B minimize

    L_B(θ) + λ/2 Σ_i F_A,i (θ_i − θ*_A,i)²                                   (Kirkpatrick eq. 3)

- ``EWC`` (separate): one penalty per past task, Σ_t λ/2 Σ_i F_t,i (θ_i − θ*_t,i)², carried exactly as
  one quadratic (see :func:`lifelong.penalties.merge_sum`), so memory stays constant in T.
- ``OnlineEWC``: one running Fisher, F ← γ F + F_t, anchored at the newest θ* (Schwarz eq. 8).

In a loop that has only DataLoaders (any strategy in any loop: :class:`lifelong.Learner`)::

    ewc = EWC(lam=100.0)
    loss = F.cross_entropy(model(x), y) + ewc.penalty(model)
    ...
    ewc.consolidate(model, loader)   # after each task; loader yields (x, y) batches
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from ...importance import FISHER_KINDS, fisher_diag
from ...penalties import QuadraticState, merge_decay
from ...settings import Settings, setting
from .base import Regularizer, convention_setting, lam_setting
from .consolidation import with_consolidation


@dataclass(frozen=True)
class FisherSettings(Settings):
    """λ, the Fisher's kind and the penalty's convention: what every Fisher-based regularizer takes."""

    strategy = ""  # shared: EWC's and kfac's settings build on it
    lam: float = lam_setting()
    fisher: str = setting("exact", flag="fisher", choices=FISHER_KINDS,
                          help="Fisher diagonal: empirical (true labels), predicted (argmax label), exact (expectation "
                               "over the model's classes) or mc (labels sampled from the model)")
    mc_samples: int = setting(1, flag="mc-samples", check=lambda v: v >= 1, must="be >= 1", maximum=10_000,
                              help="labels sampled per input for the mc Fisher")
    convention: str = convention_setting()

    def check(self) -> None:
        if self.mc_samples != 1 and self.fisher != "mc":
            self.fail("mc_samples", f"applies to fisher='mc', not fisher={self.fisher!r}", "fisher")


EWCSettings = with_consolidation(
    FisherSettings, "EWCSettings", "EWC's: a Fisher-based regularizer that may also consolidate without task "
    "boundaries (:mod:`.consolidation`: a running Fisher, EWC++; plateaus of the loss).", __name__)


@dataclass(frozen=True)
class OnlineEWCSettings(EWCSettings):
    gamma: float = setting(1.0, flag="gamma", check=lambda v: 0.0 <= v <= 1.0, must="be in [0, 1]",
                           help="online EWC decay γ in [0, 1]: F ← γF + F_t (0: the newest Fisher alone, as EWC++ "
                                "keeps its running Fisher)")


class EWC(Regularizer):
    """Separate EWC: λ/2 Σ_t Σ_i F_t,i (θ_i − θ*_t,i)², with ``fisher`` one of
    "empirical", "predicted", "exact" (default) or "mc" (see :mod:`lifelong.importance.fisher`)."""

    name = "ewc"
    Settings = EWCSettings
    importance_symbol = "F"

    def __init__(self, *args, generator: torch.Generator | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # Labels of the MC Fisher when consolidate() is called without a generator (your own loop);
        # in lifelong's driver the context's generator is used, and saved with the run.
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def importance(self, model: nn.Module, data: Iterable, generator: torch.Generator) -> dict[str, Tensor]:
        """The Fisher diagonal at θ* over ``data`` ((x, y) or (x, y, mask) batches)."""
        s = self.settings
        return fisher_diag(model, data, s.fisher, generator=generator, mc_samples=s.mc_samples)


class OnlineEWC(EWC):
    """Online EWC: F ← γ F + F_t, anchor θ* of the newest task (Schwarz et al. 2018, eq. 8)."""

    name = "online-ewc"
    Settings = OnlineEWCSettings

    def merge(self, importance: dict[str, Tensor], anchor: dict[str, Tensor]) -> QuadraticState:
        return merge_decay(self.state, importance, anchor, self.settings.gamma)
