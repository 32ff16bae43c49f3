"""The limiter interface, and the one to build from settings.

A request asks once, before any work, with everything that limits it: its demands
on rates and quotas and the concurrency slots it needs (:meth:`Limiter.check`, all
or nothing). Costs known only afterwards (an LLM's tokens) are charged later
(:meth:`Limiter.charge`) and may push a subject past its limit, so that its next
checks are refused. Slots are given back with :meth:`Limiter.release`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from prodgate.limits.memory import MemoryLimiter
from prodgate.limits.shared import RedisLimiter
from prodgate.limits.verdict import Demand, Lease, Slot, Verdict
from prodgate.settings import Settings


class Limiter(Protocol):
    """Rates, quotas and concurrency: :class:`RedisLimiter` or :class:`MemoryLimiter`."""

    async def check(self, demands: Sequence[Demand], slots: Sequence[Slot] = ()) -> Verdict:
        """All or nothing: if allowed, every demand is charged and every slot taken;
        if refused, nothing is. Never raises for an unreachable store (the verdict is
        degraded and the fail mode decides)."""
        ...

    async def charge(self, demands: Sequence[Demand]) -> None:
        """Consume after the fact without refusing; may push a subject over its limit."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give concurrency slots back; never raises."""
        ...

    @property
    def healthy(self) -> bool:
        """False while the limit store is unreachable."""
        ...

    async def close(self) -> None: ...


def build_limiter(settings: Settings, *, prefix: str | None = None) -> Limiter:
    """A :class:`RedisLimiter` when ``redis_url`` is set, else a :class:`MemoryLimiter`.

    Builds no connection: Redis is first reached by the first check.
    """
    if settings.redis_url:
        return RedisLimiter(
            settings.redis_url,
            prefix=prefix if prefix is not None else settings.redis_prefix + "limits:",
            timeout_ms=settings.redis_timeout_ms,
            fail=settings.limit_fail,
        )
    return MemoryLimiter()
