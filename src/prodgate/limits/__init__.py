"""Rate limits, quotas and concurrency: exact across replicas through Redis, or in
memory for one process. See ``window.py`` for the algorithm and its bound."""

from prodgate.limits.memory import MemoryLimiter
from prodgate.limits.verdict import Demand, Lease, Rate, Slot, Usage, Verdict

__all__ = ["Demand", "Lease", "MemoryLimiter", "Rate", "Slot", "Usage", "Verdict"]
