"""The alert loop inside the server: a contract-violation alert fires within one window
of bad traffic and resolves once the window holds only good traffic; both transitions
reach a real local webhook receiver, the audit log and ``/metrics``. SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from alert_support import Receiver
from gateway_support import GOOD, SPEC, register_and_deploy, running, write_spec
from prodgate.audit import log
from prodgate.settings import Settings
from prodgate.store.engine import open_store

pytestmark = pytest.mark.anyio

BAD = {"amount": -5, "category": "auto"}  # amount below its minimum: a 422


def _spec(url: str) -> str:
    monitor = f"""\
    monitor:
      window: 2s
      alerts:
        - name: violations
          when: contract violations > 20%
          clear: 0.05
        - when: error_rate > 0.5
      webhooks: [{url}]
"""
    return SPEC.replace("  idle:\n", monitor + "  idle:\n")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _send(client: httpx.AsyncClient, rows: list[dict[str, object]]) -> None:
    for row in rows:
        r = await client.post("/v1/services/claims/predict", json={"instances": [row]})
        assert r.status_code == (200 if row is not BAD else 422), r.text


async def test_an_alert_fires_within_a_window_and_resolves_after(
    settings: Settings, receiver: Receiver
) -> None:
    write_spec(settings, _spec(f"http://127.0.0.1:{receiver.port}/hook"))
    register_and_deploy(settings)
    settings = settings.with_(monitor_interval=0.2)
    async with running(settings) as client:
        await _send(client, [GOOD, BAD, BAD, GOOD])
        await _until(lambda: len(receiver.bodies) >= 1)
        fired = receiver.bodies[0]
        assert (fired["service"], fired["alert"], fired["state"]) == (
            "claims",
            "violations",
            "firing",
        )
        assert fired["value"] == 0.5
        text = (await client.get("/metrics")).text
        assert 'prodgate_alert_firing{alert="violations",service="claims"} 1.0' in text
        assert 'prodgate_alert_value{alert="violations",service="claims"} 0.5' in text
        # Good traffic only, until the bad requests have left the 2s window.
        started = time.monotonic()
        while len(receiver.bodies) < 2 and time.monotonic() - started < 10:
            await _send(client, [GOOD])
            await asyncio.sleep(0.1)
        resolved = receiver.bodies[1]
        assert (resolved["alert"], resolved["state"]) == ("violations", "resolved")
        assert resolved["value"] <= 0.05
        assert time.monotonic() - started >= 1.0  # not before the window moved on
        text = (await client.get("/metrics")).text
        assert 'prodgate_alert_firing{alert="violations",service="claims"} 0.0' in text
    assert len(receiver.bodies) == 2  # error_rate never fired; each transition sent once
    store = open_store(settings)
    try:
        with store.read() as conn:
            records = [r for r in log.tail(conn, 1000, "claims") if r["action"] == "alert"]
    finally:
        store.dispose()
    assert [(r["alert"], r["state"]) for r in records] == [
        ("violations", "firing"),
        ("violations", "resolved"),
    ]
    assert [r["id"] for r in records] == [b["audit_id"] for b in receiver.bodies]
