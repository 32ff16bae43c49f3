"""Circuit breakers: a sliding window of failures, a cooldown, one probe at a time."""

from __future__ import annotations

import pytest

from prodgate.llm.breaker import Breakers, BreakerState, CircuitBreaker
from prodgate.spec.llm import Breaker, Provider


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(failures: int = 3, window_s: float = 10.0, cooldown_s: float = 5.0):
    clock = Clock()
    changes: list[tuple[str, str, BreakerState]] = []
    b = CircuitBreaker(
        "openai",
        "gpt-4.1",
        Breaker(failures, window_s, cooldown_s),
        on_change=lambda p, m, s: changes.append((p, m, s)),
        clock=clock,
    )
    return b, clock, changes


def test_opens_after_failures_within_the_window() -> None:
    b, _clock, changes = breaker()
    for _ in range(2):
        assert b.allow()
        b.failure()
    assert b.state is BreakerState.CLOSED
    assert b.failures == 2
    b.failure()
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    assert changes == [("openai", "gpt-4.1", BreakerState.OPEN)]


def test_failures_spread_wider_than_the_window_never_open_it() -> None:
    b, clock, _ = breaker(failures=3, window_s=10.0)
    for _ in range(10):
        b.failure()
        clock.now += 6.0  # two failures at most in any 10 s
    assert b.state is BreakerState.CLOSED
    assert b.failures == 1


def test_successes_do_not_hide_failures_in_the_window() -> None:
    b, _, _ = breaker(failures=3)
    for _ in range(3):
        b.failure()
        b.success()
    assert b.state is BreakerState.OPEN


def test_half_open_after_the_cooldown_lets_exactly_one_probe_through() -> None:
    b, clock, changes = breaker(cooldown_s=5.0)
    for _ in range(3):
        b.failure()
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.1
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()  # the probe
    assert not b.allow()  # a second caller meanwhile
    assert not b.allow()
    b.success()
    assert b.state is BreakerState.CLOSED
    assert b.allow()
    assert b.allow()
    assert [s for _, _, s in changes] == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]
    assert b.failures == 0


def test_a_failed_probe_reopens_and_restarts_the_cooldown() -> None:
    b, clock, changes = breaker(cooldown_s=5.0)
    for _ in range(3):
        b.failure()
    clock.now += 5.0
    assert b.allow()
    b.failure()
    assert b.state is BreakerState.OPEN
    assert b.opened_at == clock.now
    clock.now += 4.0
    assert not b.allow()
    clock.now += 1.0
    assert b.allow()
    assert [s for _, _, s in changes] == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
    ]


def test_a_probe_without_a_verdict_gives_its_turn_back() -> None:
    b, clock, _ = breaker()
    for _ in range(3):
        b.failure()
    clock.now += 5.0
    assert b.allow()
    b.release()  # cancelled, or the request was wrong
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()


def test_a_late_success_of_a_call_let_through_before_it_opened_does_not_close_it() -> None:
    b, _, _ = breaker()
    assert b.allow()  # a slow call starts
    for _ in range(3):
        b.failure()  # others fail meanwhile
    b.success()
    assert b.state is BreakerState.OPEN


def test_breakers_one_per_provider_and_model_with_the_providers_settings() -> None:
    clock = Clock()
    seen: list[tuple[str, str, BreakerState]] = []
    providers = {
        "openai": Provider("openai", "http://x/v1", breaker=Breaker(1, 30.0, 15.0)),
        "backup": Provider("backup", "http://y/v1", breaker=Breaker(2, 30.0, 15.0)),
    }
    breakers = Breakers(providers, on_change=lambda *a: seen.append(a), clock=clock)
    a = breakers.get("openai", "gpt-4.1")
    assert breakers.get("openai", "gpt-4.1") is a
    assert breakers.get("openai", "gpt-4.1-mini") is not a
    b = breakers.get("backup", "gpt-4.1")
    a.failure()
    b.failure()
    assert a.state is BreakerState.OPEN
    assert b.state is BreakerState.CLOSED
    assert seen == [("openai", "gpt-4.1", BreakerState.OPEN)]
    clock.now += 3.0
    snap = {(s["provider"], s["model"]): s for s in breakers.snapshot()}
    assert snap[("openai", "gpt-4.1")] == {
        "provider": "openai",
        "model": "gpt-4.1",
        "state": "open",
        "failures": 0,
        "opened_at": 1000.0,
        "retry_in_s": 12.0,
    }
    assert snap[("backup", "gpt-4.1")]["failures"] == 1
    assert snap[("openai", "gpt-4.1-mini")]["state"] == "closed"
    # A provider the breakers were not told of gets the default settings.
    assert breakers.get("elsewhere", "m").config == Breaker()


def test_a_failing_callback_does_not_fail_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    def broken(provider: str, model: str, state: BreakerState) -> None:
        raise RuntimeError("gauge unavailable")

    b = CircuitBreaker("openai", "gpt-4.1", Breaker(1, 10.0, 5.0), on_change=broken)
    b.failure()
    assert b.state is BreakerState.OPEN
    assert "on_change callback failed" in caplog.text


def test_a_model_that_fails_now_and_then_stays_in_the_route() -> None:
    b, clock, _ = breaker(failures=3)
    # 3 of 10 calls fail, spread over the window: below the failure rate (half).
    for i in range(30):
        clock.now += 0.1
        assert b.allow()
        b.failure() if i % 10 in (2, 5, 8) else b.success()
    assert b.failures == 9
    assert b.state is BreakerState.CLOSED


def test_a_model_that_mostly_fails_opens_its_breaker() -> None:
    b, clock, _ = breaker(failures=3)
    for i in range(8):
        clock.now += 0.1
        b.failure() if i % 4 else b.success()  # 6 of 8 fail
    assert b.state is BreakerState.OPEN


def test_successes_leave_the_window_too() -> None:
    b, clock, _ = breaker(failures=3, window_s=10.0)
    for _ in range(20):
        b.success()
    clock.now += 11  # those successes are out of the window
    for _ in range(3):
        b.failure()
    assert b.state is BreakerState.OPEN
