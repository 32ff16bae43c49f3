"""Verdicts: header fields in the draft's structured-field syntax, reasons, binding."""

from __future__ import annotations

import pytest

from prodgate.limits import Demand, Lease, Rate, Slot, Verdict, build_limiter
from prodgate.limits.memory import MemoryLimiter
from prodgate.limits.shared import RedisLimiter
from prodgate.limits.verdict import NEVER, OK, OVER, degraded, no_limits, settle
from prodgate.settings import Settings

RPM = Rate("rpm", 600, 60.0)
ROWS = Rate("rows_per_minute", 10_000, 60.0, unit="rows")


def test_no_limits_no_headers() -> None:
    assert no_limits().headers() == {}
    assert no_limits().allowed


def test_allowed_headers_list_every_policy_and_its_standing() -> None:
    d1 = Demand("key:k_3f9a1c2b", RPM, 1)
    d2 = Demand("service:claims-triage", ROWS, 40)
    slot = Slot("key:k_3f9a1c2b", 4)
    v = settle([d1, d2], [slot], [(599, 59.2, 0.0, OK), (120, 30.01, 0.0, OK)], [(1, OK)], None)
    assert v.allowed
    assert v.headers() == {
        "RateLimit-Policy": '"rpm";q=600;w=60,'
        '"rows_per_minute";q=10000;qu="rows";w=60,'
        '"concurrency";q=4;qu="concurrent-requests"',
        "RateLimit": '"rpm";r=599;t=60,"rows_per_minute";r=120;t=31,"concurrency";r=3',
    }
    # The binding limit when allowed: the rate with the least room left (1.2% of rows).
    assert v.binding is d2
    assert v.remaining == 120
    assert v.reset_s == 30.01


def test_refused_headers_carry_retry_after_rounded_up() -> None:
    d = Demand("key:k_3f9a1c2b", RPM, 1)
    v = settle([d], [], [(0, 59.5, 0.2, OVER)], [], None)
    assert not v.allowed
    assert v.retry_after_s == 0.2
    assert v.headers()["Retry-After"] == "1"
    assert v.headers()["RateLimit"] == '"rpm";r=0;t=60'
    assert v.reason == "key k_3f9a1c2b is over its limit of 600 requests per 60 s"
    v = settle([d], [], [(0, 59.5, 12.3, OVER)], [], None)
    assert v.headers()["Retry-After"] == "13"


def test_a_charge_past_the_limit_shows_zero_remaining() -> None:
    d = Demand("key:a", RPM, 0)
    v = settle([d], [], [(-250, 40.0, 3.0, OVER)], [], None)
    assert v.remaining == 0
    assert v.headers()["RateLimit"] == '"rpm";r=0;t=40'


def test_the_latest_refusing_limit_binds() -> None:
    a = Demand("key:a", Rate("rps", 10, 1.0), 1)
    b = Demand("key:a", RPM, 1)
    v = settle([a, b], [], [(0, 1.0, 0.4, OVER), (0, 50.0, 20.0, OVER)], [], None)
    assert v.binding is b
    assert v.retry_after_s == 20.0


def test_a_request_that_can_never_pass_says_so_and_waits_a_period() -> None:
    d = Demand("key:a", ROWS, 20_000)
    v = settle([d], [], [(10_000, 0.0, 60.0, NEVER)], [], None)
    assert not v.allowed
    assert v.retry_after_s == 60.0
    assert v.reason == (
        "this request needs 20000 rows but key a's limit is 10000 rows per 60 s, "
        "so it can never pass"
    )


def test_a_full_slot_refuses_with_its_reason() -> None:
    d = Demand("key:a", RPM, 1)
    s = Slot("key:a", 2)
    v = settle([d], [s], [(599, 60.0, 0.0, OK)], [(2, OVER)], None)
    assert not v.allowed
    assert v.binding is s
    assert v.retry_after_s == 1.0
    assert "2 concurrent requests" in v.reason
    assert v.headers()["RateLimit"] == '"rpm";r=599;t=60,"concurrency";r=0'


def test_degraded_verdicts() -> None:
    d = Demand("key:a", RPM, 1)
    closed = degraded([d], [], fail="closed")
    assert (closed.allowed, closed.degraded, closed.retry_after_s) == (False, True, 1.0)
    assert "unreachable" in closed.reason
    # The policy is known, the standing is not.
    assert closed.headers() == {"RateLimit-Policy": '"rpm";q=600;w=60', "Retry-After": "1"}
    opened = degraded([d], [], fail="open")
    assert (opened.allowed, opened.degraded) == (True, True)
    assert "Retry-After" not in opened.headers()


def test_policy_names_are_unique_and_valid_structured_field_strings() -> None:
    key = Demand("key:k1", RPM, 1)
    service = Demand("service:claims", RPM, 1)
    odd = Demand('key:"x"', Rate('per "day" \\ ünï', 5, 86400.0), 1)
    v = Verdict(True, 0.0, None, 0, 0.0, limits=(key, service, odd))
    assert v.headers()["RateLimit-Policy"] == (
        '"rpm";q=600;w=60,"service_rpm";q=600;w=60,"per \\"day\\" \\\\ _n_";q=5;w=86400'
    )


def test_rates_and_demands_are_checked() -> None:
    with pytest.raises(ValueError, match="period"):
        Rate("rps", 1, 0)
    with pytest.raises(ValueError, match="limit"):
        Rate("rps", -1, 1)
    with pytest.raises(ValueError, match="cost"):
        Demand("s", RPM, -1)
    assert Lease("id", ("s",)).subjects == ("s",)


def test_build_limiter_follows_the_settings() -> None:
    memory = build_limiter(Settings.load({}, env={}))
    assert isinstance(memory, MemoryLimiter)
    assert memory.healthy
    shared = build_limiter(
        Settings.load(
            {"redis_url": "redis://127.0.0.1:6379/0", "redis_timeout_ms": 250.0},
            env={"PRODGATE_LIMIT_FAIL": "open"},
        ),
        prefix="p:",
    )
    assert isinstance(shared, RedisLimiter)
    assert (shared.fail, shared.prefix, shared._timeout) == ("open", "p:", 0.25)
