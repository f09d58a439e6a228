"""Parameter isolation: each task its own part of the network (separate networks, XdG, PackNet, HAT,
progressive networks). Forgetting is zero by construction for all but XdG (which shares its weights);
the cost is capacity, reported per task (:mod:`lifelong.strategies.isolation.base`), and the need to know
the task at test time: these strategies run in the task-incremental scenario only.
"""

from .base import Isolation
from .hat import HAT
from .packnet import PackNet
from .progressive import Progressive
from .separate import Separate
from .xdg import XdG

__all__ = ["HAT", "Isolation", "PackNet", "Progressive", "Separate", "XdG"]
