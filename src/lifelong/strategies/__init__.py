"""Strategies: hooks into the one training loop. Naive and joint bound EWC from below and above."""

from .base import Joint, Naive, Strategy
from .ewc import EWC, OnlineEWC
from .l2 import L2
from .mas import MAS
from .rwalk import RWalk
from .si import SI

STRATEGIES = {s.name: s for s in (Naive, Joint, EWC, OnlineEWC, SI, MAS, RWalk, L2)}

__all__ = ["EWC", "Joint", "L2", "MAS", "Naive", "OnlineEWC", "RWalk", "SI", "STRATEGIES", "Strategy"]
