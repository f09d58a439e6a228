"""The regularization family: one quadratic penalty, importances computed and merged per method."""

from .base import LambdaSettings, Regularizer, model_of, trainable
from .ewc import EWC, EWCSettings, OnlineEWC, OnlineEWCSettings
from .kfac import KFAC, KFACSettings
from .l2 import L2
from .mas import MAS
from .rwalk import RWalk, RWalkSettings
from .si import SI, PathStrategy, SISettings

__all__ = [
    "EWC", "EWCSettings", "KFAC", "KFACSettings", "L2", "LambdaSettings", "MAS", "OnlineEWC", "OnlineEWCSettings", "PathStrategy",
    "RWalk", "RWalkSettings", "Regularizer", "SI", "SISettings", "model_of", "trainable",
]
