"""Strategies: hooks into the one training loop, each with its own settings dataclass.

Naive and joint bound every method from below and above; the regularization family shares one
quadratic penalty; the replay and distillation family keeps a memory of samples or of the
previous model; the isolation family gives each task its own part of the network; ``Compose`` runs several strategies as one. See :mod:`lifelong.strategies.base`
for the hooks and their order.
"""

from .base import Compose, ComposeSettings, Context, NoSettings, Strategy
from .baselines import Joint, Naive
from .regularization import EWC, L2, MAS, SI, OnlineEWC, Regularizer, RWalk
from .isolation import HAT, Isolation, PackNet, Progressive, Separate, XdG
from .replay import AGEM, DER, GEM, ER, ERACE, DERpp, GDumb, ICaRL, LwF
from .registry import STRATEGIES, build_strategy, check_name, default_settings, parts, register
from .settings import Settings, setting

__all__ = [
    "AGEM", "Compose", "HAT", "Isolation", "PackNet", "Progressive", "Separate", "XdG", "ComposeSettings", "Context", "DER", "DERpp", "ER", "ERACE", "EWC", "GDumb", "GEM", "ICaRL",
    "LwF", "Joint", "L2", "MAS", "Naive", "NoSettings", "OnlineEWC",
    "RWalk", "Regularizer", "SI", "STRATEGIES", "Settings", "Strategy", "build_strategy", "check_name",
    "default_settings", "parts", "register", "setting",
]
