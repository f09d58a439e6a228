"""Strategies: hooks into the one training driver, each with its own settings dataclass.

Naive and joint bound every method from below and above; the regularization family shares one
quadratic penalty; the replay and distillation family keeps a memory of samples or of the previous
model; the isolation family gives each task its own part of the network; ``Compose`` runs several
strategies as one. See :mod:`lifelong.strategies.base` for the hooks, their order and the step record.
"""

from ..settings import Settings, setting
from .base import HOOKS, STEP_HOOKS, Context, NoSettings, Step, Strategy, cross_entropy
from .baselines import Joint, JointEnd, Naive
from .compose import Compose, ComposeSettings
from .isolation import HAT, Isolation, PackNet, Progressive, Separate, XdG
from .regularization import EWC, KFAC, L2, MAS, SI, OnlineEWC, Regularizer, RWalk
from .replay import AGEM, DER, GEM, ER, ERACE, DERpp, GDumb, ICaRL, LwF, Replay
from .registry import FAMILIES, STRATEGIES, build, check_name, default_settings, register

__all__ = [
    "AGEM", "Compose", "ComposeSettings", "Context", "DER", "DERpp", "ER", "ERACE", "EWC", "FAMILIES", "GDumb", "GEM",
    "HAT", "HOOKS", "ICaRL", "Isolation", "Joint", "JointEnd", "KFAC", "L2", "LwF", "MAS", "Naive", "NoSettings", "OnlineEWC", "PackNet",
    "Progressive", "RWalk", "Regularizer", "Replay", "SI", "STEP_HOOKS", "STRATEGIES", "Separate", "Settings", "Step",
    "Strategy", "XdG", "build", "check_name", "cross_entropy", "default_settings", "register", "setting",
]
