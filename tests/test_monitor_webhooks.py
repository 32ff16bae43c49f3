"""Alert webhooks: a JSON POST retried with backoff until a real local receiver answers,
failures counted and logged without the URL's secret path, and a sender that never
makes its caller wait."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from alert_support import Receiver
from prodgate.monitor.alerts import AlertMetrics
from prodgate.monitor.webhooks import Webhooks, where

pytestmark = pytest.mark.anyio


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=3)
    yield r
    r.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _count(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value(
        "prodgate_alert_webhook_deliveries_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_a_delivery_is_retried_with_backoff_until_the_receiver_answers(
    receiver: Receiver,
) -> None:
    registry = CollectorRegistry()
    hooks = Webhooks(AlertMetrics(registry), backoff_s=0.05, attempts=6)
    await hooks.start()
    payload = {"service": "claims", "alert": "violations", "state": "firing", "value": 0.03}
    hooks.send(payload, (f"http://127.0.0.1:{receiver.port}/hook/secret-token",))
    assert await hooks.drain(10)
    await hooks.stop()
    assert len(receiver.seen) == 4  # three 503s, then the 200
    assert all(body == payload for _, body, _ in receiver.seen)
    assert receiver.seen[0][2] == "application/json"
    gaps = [b[0] - a[0] for a, b in zip(receiver.seen, receiver.seen[1:], strict=False)]
    # 0.05, 0.1, 0.2 seconds (+-10%): each wait twice the one before.
    assert gaps[0] >= 0.04
    assert gaps[1] >= 0.09
    assert gaps[2] >= 0.18
    assert (_count(registry, "retry"), _count(registry, "ok")) == (3, 1)


async def test_a_receiver_that_comes_up_later_gets_the_delivery() -> None:
    port = _free_port()
    hooks = Webhooks(backoff_s=0.1, max_backoff_s=0.2, attempts=20)
    await hooks.start()
    hooks.send({"alert": "late"}, (f"http://127.0.0.1:{port}/",))
    await asyncio.sleep(0.5)  # refused meanwhile: nothing listens yet
    late = Receiver(port=port)
    try:
        assert await hooks.drain(10)
        assert [body for _, body, _ in late.seen] == [{"alert": "late"}]
    finally:
        await hooks.stop()
        late.close()


async def test_failures_are_counted_and_logged_without_the_urls_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = Receiver(fail=100)
    registry = CollectorRegistry()
    hooks = Webhooks(AlertMetrics(registry), backoff_s=0.01, attempts=3)
    await hooks.start()
    try:
        with caplog.at_level(logging.INFO, logger="prodgate.monitor.webhooks"):
            hooks.send({"alert": "x"}, (f"http://u:pw@127.0.0.1:{down.port}/T0KEN?k=s3cret",))
            assert await hooks.drain(10)
    finally:
        await hooks.stop()
        down.close()
    assert len(down.seen) == 3
    assert (_count(registry, "retry"), _count(registry, "failed")) == (2, 1)
    text = caplog.text
    assert "answered 503 after 3 tries" in text
    assert f"http://127.0.0.1:{down.port}/..." in text
    for secret in ("T0KEN", "s3cret", "pw"):
        assert secret not in text
    assert where("https://hooks.example.com/services/abc") == "https://hooks.example.com/..."


async def test_send_never_waits_for_a_slow_receiver() -> None:
    slow = Receiver(delay_s=1.0)
    registry = CollectorRegistry()
    hooks = Webhooks(AlertMetrics(registry), queue_size=2)
    await hooks.start()
    try:
        started = time.perf_counter()
        for i in range(5):
            hooks.send({"n": i}, (f"http://127.0.0.1:{slow.port}/",))
        assert time.perf_counter() - started < 0.05
        assert _count(registry, "dropped") == 3  # the queue holds two
    finally:
        await hooks.stop(grace_s=3)
        slow.close()
    assert sorted(body["n"] for _, body, _ in slow.seen) == [0, 1]
