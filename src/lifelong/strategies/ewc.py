"""Elastic Weight Consolidation (Kirkpatrick et al. 2017, PNAS, eq. 3) and online EWC
(Schwarz et al. 2018, "Progress & Compress", eq. 8).

After task A, keep θ*_A and the diagonal Fisher F_A; while learning B minimize

    L_B(θ) + λ/2 Σ_i F_A,i (θ_i − θ*_A,i)²                                   (Kirkpatrick eq. 3)

- ``EWC`` (separate): one penalty per past task, Σ_t λ/2 Σ_i F_t,i (θ_i − θ*_t,i)², carried exactly as
  one quadratic (see :func:`lifelong.penalties.merge_sum`), so memory stays constant in T.
- ``OnlineEWC``: one running Fisher, F ← γ F + F_t, anchored at the newest θ* (Schwarz eq. 8).

Use it in your own loop::

    ewc = EWC(lam=100.0)
    loss = F.cross_entropy(model(x), y) + ewc.penalty(model)
    ...
    ewc.consolidate(model, loader)   # after each task; loader yields (x, y) batches
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..penalties import merge_decay, merge_sum
from .base import Regularizer


class EWC(Regularizer):
    """Separate EWC: λ/2 Σ_t Σ_i F_t,i (θ_i − θ*_t,i)², with ``fisher`` one of
    "empirical", "predicted", "exact" (default) or "mc" (see :mod:`lifelong.importance.fisher`)."""

    name = "ewc"
    importance_symbol = "F"
    hyperparameters = ("lam", "fisher", "mc_samples")

    @classmethod
    def from_config(cls, cfg, generator):
        return cls(**{k: getattr(cfg, k) for k in cls.hyperparameters}, generator=generator)

    def __init__(self, lam: float = 1.0, *, fisher: str = "exact", mc_samples: int = 1, generator: torch.Generator | None = None):
        from ..importance import FISHER_KINDS

        super().__init__(lam)
        if fisher not in FISHER_KINDS:
            raise UsageError(f"unknown Fisher {fisher!r}: choose one of {', '.join(FISHER_KINDS)}")
        self.fisher = fisher
        self.mc_samples = mc_samples
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def consolidate(self, model: nn.Module, data: Iterable) -> dict[str, Tensor]:
        """Compute the Fisher at the current θ (= θ*) over ``data`` ((x, y) or (x, y, mask) batches),
        merge it into the penalty, and return it."""
        from ..importance import fisher_diag

        fisher = fisher_diag(model, data, self.fisher, generator=self.generator, mc_samples=self.mc_samples)
        anchor = {n: p.detach() for n, p in model.named_parameters() if n in fisher}
        self.state = self._merge(fisher, anchor)
        return fisher

    def _merge(self, fisher, anchor):
        return merge_sum(self.state, fisher, anchor)

    def state_dict(self) -> dict[str, Tensor]:
        """The quadratic state plus the generator of the MC Fisher's labels (``rng``)."""
        return {**super().state_dict(), "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        state = dict(state)
        if "rng" in state:
            self.generator.set_state(state.pop("rng"))
        super().load_state_dict(state)


class OnlineEWC(EWC):
    """Online EWC: F ← γ F + F_t, anchor θ* of the newest task (Schwarz et al. 2018, eq. 8)."""

    name = "online-ewc"
    hyperparameters = ("lam", "gamma", "fisher", "mc_samples")

    def __init__(self, lam: float = 1.0, *, gamma: float = 1.0, **kw):
        super().__init__(lam, **kw)
        if not 0.0 < gamma <= 1.0:
            raise UsageError(f"online EWC gamma must be in (0, 1], got {gamma}")
        self.gamma = float(gamma)

    def _merge(self, fisher, anchor):
        return merge_decay(self.state, fisher, anchor, self.gamma)
