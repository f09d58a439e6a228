"""The replay and distillation family: a memory of past samples (ER, ER-ACE, GEM, A-GEM, DER, DER++,
iCaRL, GDumb) or of the past model (LwF, iCaRL). These are the methods that work without task labels
at test time (class-incremental learning). See :mod:`.buffer` for the memory and its selection rules."""

from .agem import AGEM, GEM, gem_dual
from .base import MemorySettings, Replay, Teacher
from .buffer import Buffer, balanced_selection, reservoir_slots
from .der import DER, DERpp
from .er import ER, ERACE
from .gdumb import GDumb
from .icarl import ICaRL, herding
from .lwf import LwF, distillation

__all__ = ["AGEM", "GEM", "gem_dual", "Buffer", "DER", "DERpp", "ER", "ERACE", "GDumb", "ICaRL", "LwF", "MemorySettings", "Replay",
           "Teacher", "balanced_selection", "distillation", "herding", "reservoir_slots"]
