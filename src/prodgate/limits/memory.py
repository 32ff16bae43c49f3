"""Limits kept in this process's memory: exact for one process, nothing shared.

The same sliding window as the Redis limiter (see ``window.py``), on
:func:`time.monotonic`, and concurrency as counters. A check never awaits anything,
so it is atomic on the event loop without a lock. Idle windows are swept now and
then, so subjects that stop calling cost nothing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence

from prodgate.limits.verdict import (
    NEVER,
    OK,
    OVER,
    Demand,
    Lease,
    RateOutcome,
    Slot,
    SlotOutcome,
    Verdict,
    no_limits,
    settle,
    unique_slots,
)
from prodgate.limits.window import Window

#: Seconds between sweeps of idle windows.
SWEEP_S = 30.0


class MemoryLimiter:
    """Rates, quotas and concurrency for one process."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, str, float], Window] = {}
        self._held: dict[str, int] = {}
        self._leases: dict[str, tuple[str, ...]] = {}
        self._ids = itertools.count(1)
        self._swept = clock()

    @property
    def healthy(self) -> bool:
        return True

    async def check(self, demands: Sequence[Demand], slots: Sequence[Slot] = ()) -> Verdict:
        """Admit the request and charge every demand and take every slot, or none."""
        return self.check_now(demands, slots)

    def check_now(self, demands: Sequence[Demand], slots: Sequence[Slot] = ()) -> Verdict:
        """:meth:`check` without the coroutine, for callers that are not async."""
        if not demands and not slots:
            return no_limits()
        if not slots:
            fast = self._all_fit(demands)
            if fast is not None:
                return fast
        slots = unique_slots(slots)
        now = self._now_us()
        windows = [self._window(d) for d in demands]
        at = [w.advance(now) for w in windows]
        codes: list[int] = []
        waits: list[float] = []
        pending: dict[int, int] = {}  # a window listed twice counts both costs
        for d, w in zip(demands, windows, strict=True):
            need = max(1, d.cost)
            extra = pending.get(id(w), 0)
            pending[id(w)] = extra + d.cost
            if need > d.rate.limit:
                codes.append(NEVER)
                waits.append(d.rate.period_s)
            elif w.used + extra + need > d.rate.limit:
                codes.append(OVER)
                waits.append(w.wait_us(w.used + extra + need - d.rate.limit, now) / 1e6)
            else:
                codes.append(OK)
                waits.append(0.0)
        held = [self._held.get(s.subject, 0) for s in slots]
        full = [h + 1 > s.limit for s, h in zip(slots, held, strict=True)]
        allowed = all(c == OK for c in codes) and not any(full)
        lease = None
        if allowed:
            for d, w, i in zip(demands, windows, at, strict=True):
                w.add(i, d.cost)
            if slots:
                subjects = tuple(s.subject for s in slots)
                for subject in subjects:
                    self._held[subject] = self._held.get(subject, 0) + 1
                lease = Lease(f"m{next(self._ids)}", subjects)
                self._leases[lease.id] = subjects
                held = [h + 1 for h in held]
        rates: list[RateOutcome] = [
            (d.rate.limit - w.used, w.reset_us(now) / 1e6, wait, code)
            for d, w, wait, code in zip(demands, windows, waits, codes, strict=True)
        ]
        outcomes: list[SlotOutcome] = [
            (h, OVER if f else OK) for h, f in zip(held, full, strict=True)
        ]
        self._maybe_sweep(now)
        return settle(demands, slots, rates, outcomes, lease)

    def _all_fit(self, demands: Sequence[Demand]) -> Verdict | None:
        """The common case, quickly: rates only, each on its own window, every one with
        room. None (nothing charged) for anything else, which the full check decides."""
        now = self._now_us()
        fitted = []
        for d in demands:
            w = self._window(d)
            i = w.advance(now)
            if w.used + max(1, d.cost) > d.rate.limit:
                return None
            fitted.append((w, i))
        if len(fitted) > 1 and len({id(w) for w, _ in fitted}) < len(fitted):
            return None  # a window charged twice: the full check counts both
        rates: list[RateOutcome] = []
        for d, (w, i) in zip(demands, fitted, strict=True):
            w.add(i, d.cost)
            rates.append((d.rate.limit - w.used, w.reset_us(now) / 1e6, 0.0, OK))
        self._maybe_sweep(now)
        return settle(demands, (), rates, (), None)

    async def charge(self, demands: Sequence[Demand]) -> None:
        """Add *demands* to their windows whatever the limits say."""
        now = self._now_us()
        for d in demands:
            w = self._window(d)
            w.add(w.advance(now), d.cost)

    async def release(self, lease: Lease) -> None:
        """Give the lease's slots back (once: releasing twice does nothing)."""
        subjects = self._leases.pop(lease.id, ())
        for subject in subjects:
            left = self._held.get(subject, 0) - 1
            if left > 0:
                self._held[subject] = left
            else:
                self._held.pop(subject, None)

    async def close(self) -> None:
        self._windows.clear()

    def _now_us(self) -> int:
        return round(self._clock() * 1_000_000)

    def _window(self, d: Demand) -> Window:
        key = (d.subject, d.rate.name, d.rate.period_s)
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = Window(d.rate.period_s)
        return w

    def _maybe_sweep(self, now_us: int) -> None:
        if now_us / 1e6 - self._swept < SWEEP_S:
            return
        self._swept = now_us / 1e6
        for key in [k for k, w in self._windows.items() if w.idle(now_us)]:
            del self._windows[key]
