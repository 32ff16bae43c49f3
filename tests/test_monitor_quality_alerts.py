"""Each data-quality failure raises its alert within one window and resolves after, on a
real gateway: production windows counted in the gateway against the version's reference
profile, the monitor report's figures, the alert loop, and a real local webhook receiver.

Failures: a null-rate jump (``age`` arriving empty), a new category (``marine``),
out-of-range values (amounts far above the reference's), and a schema change (``amount``
sent as text: refused by the contract, a violation on that field). SQLite and PostgreSQL.

Needs the production windows (``prodgate.monitor.tally``) and the monitor report
(``prodgate.monitor.report``); skipped where those are not installed.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from alert_support import Receiver
from gateway_support import register_and_deploy, running, write_spec
from prodgate.audit import log
from prodgate.settings import Settings
from prodgate.store.engine import now_us, open_store

pytest.importorskip("prodgate.monitor.tally", reason="needs the production windows")
pytest.importorskip("prodgate.monitor.report", reason="needs the monitor report")
profiles = pytest.importorskip("prodgate.monitor.profiles", reason="needs stored profiles")

pytestmark = pytest.mark.anyio

WINDOW_S = 2.0

SPEC = """\
services:
  claims:
    owner: {{name: Claims Ops, contact: ops@example.com}}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        required: [amount, category]
        properties:
          amount: {{type: number, minimum: 0}}
          category: {{type: string}}
          age: {{type: [integer, "null"]}}
    monitor:
      window: 2s
      # clear: hysteresis. A span of one window overlaps two, and the one that closed is
      # flushed whole a moment later: near the threshold a rule without a margin flaps.
      alerts:
        - name: ages-missing
          when: null_rate(age) > 0.2
          clear: 0.05
        - name: new-category
          when: new_categories(category) > 0.2
          clear: 0.05
        - name: amounts-out-of-range
          when: out_of_range(amount) > 0.2
          clear: 0.05
        - name: amount-type-changed
          when: violation_rate(amount) > 0.2
          clear: 0.05
      webhooks: [{url}]
"""

CATEGORIES = ["auto", "home", "travel"]


def good(i: int) -> dict[str, Any]:
    return {"amount": 1000.0 + 37 * (i % 200), "category": CATEGORIES[i % 3], "age": 20 + i % 60}


#: Each failure: the alert it should raise and a bad row in its manner.
FAILURES: dict[str, tuple[str, Callable[[int], dict[str, Any]]]] = {
    "null-rate jump": ("ages-missing", lambda i: {**good(i), "age": None}),
    "new category": ("new-category", lambda i: {**good(i), "category": "marine"}),
    "out of range": ("amounts-out-of-range", lambda i: {**good(i), "amount": 50_000.0 + i}),
    "schema change": ("amount-type-changed", lambda i: {**good(i), "amount": str(1000 + i)}),
}


def _numeric(name: str, values: list[float], edges: list[float]) -> dict[str, Any]:
    counts = [0] * (len(edges) - 1)
    for v in values:  # [e_i, e_i+1), the last bin closed
        counts[min(bisect_right(edges, v) - 1, len(counts) - 1)] += 1
    mean = sum(values) / len(values)
    return {
        "name": name,
        "kind": "numeric",
        "dtype": "float",
        "rows": len(values),
        "nulls": 0,
        "min": min(values),
        "max": max(values),
        "mean": mean,
        "std": (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5,
        "quantiles": {},
        "edges": edges,
        "counts": counts,
        "values": None,
    }


def reference() -> dict[str, Any]:
    """The reference profile of 600 good rows, in the shape the plan gives profiles."""
    rows = [good(i) for i in range(600)]
    amounts = [float(r["amount"]) for r in rows]
    ages = [float(r["age"]) for r in rows]
    categories: dict[str, int] = {}
    for r in rows:
        categories[r["category"]] = categories.get(r["category"], 0) + 1
    return {
        "format": 1,
        "rows": len(rows),
        "columns": [
            _numeric("amount", amounts, [1000.0, 3000.0, 5000.0, 7000.0, 8363.0]),
            {
                "name": "category",
                "kind": "categorical",
                "dtype": "string",
                "rows": len(rows),
                "nulls": 0,
                "counts": categories,
                "other": 0,
            },
            _numeric("age", ages, [20.0, 40.0, 60.0, 79.0]),
        ],
        "outputs": [],
        "created_us": now_us(),
    }


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def _send(client: httpx.AsyncClient, row: dict[str, Any]) -> None:
    r = await client.post("/v1/services/claims/predict", json={"instances": [row]})
    assert r.status_code in (200, 422), r.text


async def _traffic_until(
    client: httpx.AsyncClient,
    row: Callable[[int], dict[str, Any]],
    done: Callable[[], bool],
    timeout: float,
) -> float:
    """Send rows made by *row* (ten a tick) until *done*; the seconds that took."""
    started = time.monotonic()
    i = 0
    while not done():
        assert time.monotonic() - started < timeout, "timed out"
        for _ in range(10):
            await _send(client, row(i))
            i += 1
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_data_quality_failure_fires_within_a_window_and_resolves_after(
    settings: Settings, receiver: Receiver, failure: str
) -> None:
    alert, bad = FAILURES[failure]
    write_spec(settings, SPEC.format(url=f"http://127.0.0.1:{receiver.port}/hook"))
    number = register_and_deploy(settings)
    store = open_store(settings)
    try:
        profiles.save(store, "claims", number, reference(), source="good rows", actor="tester")
    finally:
        store.dispose()
    settings = settings.with_(
        monitor_interval=0.2, refresh_interval=0.1, monitor_flush=0.2, monitor_window=WINDOW_S
    )
    async with running(settings) as client:
        # Good traffic: nothing fires.
        started = time.monotonic()
        while time.monotonic() - started < 1.5 * WINDOW_S:
            await _send(client, good(int((time.monotonic() - started) * 100)))
            await asyncio.sleep(0.01)
        assert receiver.bodies == [], "fired on good traffic"
        # Half the rows bad: the alert fires within one window (plus a flush and a tick).
        took = await _traffic_until(
            client,
            lambda i: bad(i) if i % 2 else good(i),
            lambda: any(b["state"] == "firing" for b in receiver.bodies),
            timeout=10 * WINDOW_S,
        )
        # One window, plus a flush and an evaluation (and slack for a loaded machine).
        assert took <= WINDOW_S + 2.0, (took, receiver.bodies)
        fired = [b for b in receiver.bodies if b["state"] == "firing"]
        assert [b["alert"] for b in fired] == [alert], receiver.bodies
        assert fired[0]["value"] > 0.2
        # Good traffic again: it resolves once the bad rows have left the window.
        took = await _traffic_until(
            client,
            good,
            lambda: any(b["state"] == "resolved" for b in receiver.bodies),
            timeout=10 * WINDOW_S,
        )
        assert took <= 3 * WINDOW_S + 2.0, (took, receiver.bodies)
    states = [(b["alert"], b["state"]) for b in receiver.bodies]
    assert states == [(alert, "firing"), (alert, "resolved")]
    store = open_store(settings)
    try:
        with store.read() as conn:
            records = [r for r in log.tail(conn, 5000, "claims") if r["action"] == "alert"]
    finally:
        store.dispose()
    assert [(r["alert"], r["state"]) for r in records] == states
