"""Strategies: hooks into the one training loop. Naive and joint bound EWC from below and above."""

from .base import Joint, Naive, Strategy
from .ewc import EWC, OnlineEWC

STRATEGIES = {s.name: s for s in (Naive, Joint, EWC, OnlineEWC)}

__all__ = ["EWC", "Joint", "Naive", "OnlineEWC", "STRATEGIES", "Strategy"]
