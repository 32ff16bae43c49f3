"""Rate limits, quotas and concurrency: exact across replicas through Redis, or in
memory for one process. See ``window.py`` for the algorithm and its bound."""

from prodgate.limits.limiter import Limiter, build_limiter
from prodgate.limits.memory import MemoryLimiter
from prodgate.limits.shared import RedisLimiter
from prodgate.limits.verdict import Demand, Lease, Rate, Slot, Usage, Verdict

__all__ = [
    "Demand",
    "Lease",
    "Limiter",
    "MemoryLimiter",
    "Rate",
    "RedisLimiter",
    "Slot",
    "Usage",
    "Verdict",
    "build_limiter",
]
