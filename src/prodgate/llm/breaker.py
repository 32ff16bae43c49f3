"""Circuit breakers: stop sending requests to a model that keeps failing, for a while.

A model that is down costs every request that tries it a timeout or an error before
the route falls back; with a breaker the route skips it at once. One breaker per
(provider, model), because one model of a provider can be overloaded while the
others answer. The states::

    CLOSED --(failures, and failure_rate of the calls, within window_s)--> OPEN
    OPEN --(cooldown_s)--> HALF_OPEN
    HALF_OPEN --(the probe succeeds)--> CLOSED
    HALF_OPEN --(the probe fails)--> OPEN (the cooldown starts again)

Failures are counted in a sliding window (their times, not a counter reset on a
schedule), so five failures spread over an hour never open it. In half-open, exactly
one call at a time is let through as a probe: a recovering upstream is not met with
the whole backlog at once. A probe that ends without a verdict (the caller went
away, or the request was wrong) gives its turn back with :meth:`CircuitBreaker.release`,
otherwise the breaker would wait for a verdict that never comes.

The clock is injectable so that tests move time instead of sleeping. Everything is
synchronous and runs on the event loop's thread: no locks needed.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ..spec.llm import Breaker, Provider

#: Successes are counted per this share of the window.
_BUCKETS = 10

#: Told of every change of state: (provider, model, new state).
OnChange = Callable[[str, str, "BreakerState"], None]

log = logging.getLogger(__name__)


class BreakerState(enum.IntEnum):
    """The numbers are the gauge's values: 0 closed, 1 half-open, 2 open."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """The breaker of one (provider, model)."""

    def __init__(
        self,
        provider: str,
        model: str,
        config: Breaker,
        *,
        on_change: OnChange | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.model = model
        self.config = config
        self._on_change = on_change
        self._clock = clock
        self._failures: deque[float] = deque()  # times of recent failures, oldest first
        # Recent successes, counted per tenth of the window ([start, count], oldest first):
        # a busy model answers thousands a minute, and their times need not be kept.
        self._successes: deque[list[float]] = deque()
        self._state = BreakerState.CLOSED
        self.opened_at: float | None = None  # clock time it last opened
        self._probing = False  # half-open: a probe is out

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.provider}/{self.model}, {self.state.name})"

    @property
    def state(self) -> BreakerState:
        """The state now; an open breaker whose cooldown is over reads half-open."""
        if (
            self._state is BreakerState.OPEN
            and self.opened_at is not None
            and self._clock() - self.opened_at >= self.config.cooldown_s
        ):
            self._set(BreakerState.HALF_OPEN)
        return self._state

    @property
    def failures(self) -> int:
        """Failures within the window now."""
        self._forget(self._clock())
        return len(self._failures)

    def allow(self) -> bool:
        """May a call go through now? In half-open, True for one probe at a time; the
        caller must then report :meth:`success`, :meth:`failure` or :meth:`release`."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        """A call let through succeeded: in half-open, that closes the breaker. (In open,
        it was a call let through before the breaker opened: old news, ignored.)"""
        self._probing = False
        state = self.state
        if state is BreakerState.CLOSED:
            now = self._clock()
            width = self.config.window_s / _BUCKETS
            if self._successes and now - self._successes[-1][0] < width:
                self._successes[-1][1] += 1
            else:
                self._successes.append([now, 1])
            self._forget(now)
        elif state is BreakerState.HALF_OPEN:
            self._failures.clear()
            self.opened_at = None
            self._set(BreakerState.CLOSED)

    def failure(self) -> None:
        """A call let through failed: a probe's failure reopens the breaker; in closed,
        the failure is counted and the breaker opens at ``failures`` in the window."""
        now = self._clock()
        self._probing = False
        state = self.state
        if state is BreakerState.CLOSED:
            self._failures.append(now)
            self._forget(now)
            if self._tripped():
                self._open(now)
        elif state is BreakerState.HALF_OPEN:
            self._open(now)
        # Open already (a call let through before it opened failed late): nothing new.

    def release(self) -> None:
        """A call let through ended saying nothing about the upstream's health (it was
        cancelled, or the request itself was wrong): a probe gives its turn back."""
        self._probing = False

    def snapshot(self) -> dict[str, Any]:
        state = self.state
        return {
            "provider": self.provider,
            "model": self.model,
            "state": state.name.lower(),
            "failures": self.failures,
            "opened_at": self.opened_at,
            "retry_in_s": (
                max(0.0, self.opened_at + self.config.cooldown_s - self._clock())
                if state is BreakerState.OPEN and self.opened_at is not None
                else None
            ),
        }

    def _open(self, now: float) -> None:
        self.opened_at = now
        self._failures.clear()
        self._successes.clear()
        # Reopening from half-open is a change of state too, and restarts the cooldown.
        self._set(BreakerState.OPEN)

    def _tripped(self) -> bool:
        """Enough failures in the window, and a large enough share of its calls: a model
        that fails now and then (the retries absorb it) is not taken out of the route."""
        failed = len(self._failures)
        if failed < self.config.failures:
            return False
        succeeded = sum(int(b[1]) for b in self._successes)
        return failed >= self.config.failure_rate * (failed + succeeded)

    def _forget(self, now: float) -> None:
        horizon = now - self.config.window_s
        failures = self._failures
        while failures and failures[0] <= horizon:
            failures.popleft()
        successes = self._successes
        while successes and successes[0][0] <= horizon:
            successes.popleft()

    def _set(self, state: BreakerState) -> None:
        if state is self._state:
            return
        self._state = state
        if self._on_change is not None:
            try:
                self._on_change(self.provider, self.model, state)
            except Exception:  # a gauge or a log line must not fail the request
                log.exception("the breaker's on_change callback failed")


class Breakers:
    """Every breaker of a gateway, made on first use, shared by all its routes (two
    services falling back to the same model see the same breaker)."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        on_change: OnChange | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers = providers
        self._on_change = on_change
        self._clock = clock
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}

    def get(self, provider: str, model: str) -> CircuitBreaker:
        key = (provider, model)
        breaker = self._breakers.get(key)
        if breaker is None:
            spec = self._providers.get(provider)
            config = spec.breaker if spec is not None else Breaker()
            breaker = CircuitBreaker(
                provider, model, config, on_change=self._on_change, clock=self._clock
            )
            self._breakers[key] = breaker
        return breaker

    def snapshot(self) -> list[dict[str, Any]]:
        """Every breaker made so far: provider, model, state (closed, half_open, open),
        failures in the window, when it opened and how long until it lets a probe by."""
        return [b.snapshot() for _, b in sorted(self._breakers.items())]
