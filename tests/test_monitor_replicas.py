"""Two real ``prodgate serve`` replicas on one store count production windows that,
merged, equal what one replica seeing all the same traffic counts (SQLite and
PostgreSQL)."""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any

import httpx

from gateway_support import deploy, register_and_approve
from prodgate import spec as spec_module
from prodgate.monitor import profiles, tallies
from prodgate.settings import Settings
from prodgate.store.engine import open_store
from server_process import serving

PREDICT = "/v1/services/claims/predict"
PROFILE: dict[str, Any] = {
    "format": 1,
    "rows": 1000,
    "created_us": 1,
    "columns": [
        {"name": "amount", "kind": "numeric", "edges": [0, 500, 1000, 5000, 20000]},
        {"name": "category", "kind": "categorical", "counts": {"auto": 500, "home": 500}},
        {"name": "count", "kind": "numeric", "edges": [0, 1, 2], "values": {"0": 1, "1": 1}},
        {"name": "note", "kind": "categorical", "counts": {}},
    ],
    "outputs": [{"name": "prediction", "kind": "categorical", "counts": {}}],
}
ENV = {
    "PRODGATE_MONITOR_FLUSH": "0.2",
    "PRODGATE_MONITOR_WINDOW": "1h",
}


def traffic(seed: int = 7) -> list[dict[str, Any]]:
    """Request bodies: valid rows, several rows at once, and contract violations."""
    rng = random.Random(seed)
    bodies: list[dict[str, Any]] = []
    for i in range(60):
        row: dict[str, Any] = {
            "amount": round(rng.uniform(0, 25_000), 2),
            "category": rng.choice(["auto", "home", "travel"]),
            "count": rng.choice([0, 1, 2, 5]),
            "note": rng.choice([None, "urgent", "water"]),
        }
        if i % 10 == 3:
            bodies.append({"instances": [row, {**row, "amount": 12.0}]})
        elif i % 10 == 7:
            bodies.append({"inputs": {**row, "amount": -5, "category": "boat"}})
        elif i % 10 == 9:
            bodies.append({"inputs": {"category": "home"}})  # amount is required
        else:
            bodies.append({"inputs": row})
    return bodies


def rounded(value: Any) -> Any:
    """*value* with every float to 9 significant digits."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def send(bases: list[str], bodies: list[dict[str, Any]]) -> list[int]:
    return [
        httpx.post(bases[i % len(bases)] + PREDICT, json=body).status_code
        for i, body in enumerate(bodies)
    ]


def wait_for_rows(settings: Settings, version: int, requests: int) -> tallies.Merged:
    """The version's merged windows once they hold *requests* records."""
    store = open_store(settings)
    try:
        deadline = time.monotonic() + 10
        while True:
            with store.read() as conn:
                got = tallies.merged(conn, "claims", 0, 2**62, version=version)
            if got is not None and got.counts["requests"] == requests:
                return got
            assert time.monotonic() < deadline, got and got.counts["requests"]
            time.sleep(0.1)
    finally:
        store.dispose()


def save_profile(settings: Settings, version: int) -> None:
    store = open_store(settings)
    try:
        profiles.save(store, "claims", version, PROFILE, source="test", actor="tester")
    finally:
        store.dispose()


def test_two_replicas_windows_merge_into_what_one_replica_counts(deployed: Settings) -> None:
    save_profile(deployed, 1)
    # The same model again as version 2, for the single replica's run.
    spec_module.load(deployed.config)
    second = register_and_approve(deployed)
    save_profile(deployed, second)
    bodies = traffic()
    requests = len(bodies) + sum(
        len(b.get("instances", ())) - 1 for b in bodies if "instances" in b
    )

    with contextlib.ExitStack() as stack:
        bases = []
        for i in range(2):
            replica = deployed.with_(home=f"{deployed.home}-{i}", database_url=deployed.store_url)
            _, base = stack.enter_context(serving(replica, env_extra=ENV))
            bases.append(base)
        statuses = send(bases, bodies)
        assert statuses.count(422) == 12, statuses
        two = wait_for_rows(deployed, 1, requests)

    deploy(deployed, second)
    single = deployed.with_(home=f"{deployed.home}-single", database_url=deployed.store_url)
    with serving(single, env_extra=ENV) as (_, base):
        assert send([base], bodies) == statuses
        one = wait_for_rows(deployed, second, requests)

    assert len(two.replicas) == 2
    assert len(one.replicas) == 1
    # Sums of floats added in another order may differ in their last bits.
    assert rounded(two.counts) == rounded(one.counts)
    window = two.counts
    assert window["reference"] == 1
    assert window["refused"] == 12
    assert window["violations"] == {"amount": 12, "category": 6}
    amount = next(c for c in window["columns"] if c["name"] == "amount")
    assert sum(amount["counts"]) + amount["under"] + amount["over"] == window["rows"]
    assert amount["over"] > 0
    category = next(c for c in window["columns"] if c["name"] == "category")
    assert set(category["counts"]) == {"auto", "home", "travel"}
    assert sum(window["calibration_counts"]["adjuster"]) > 0

    # After both stopped, every closed window is in the store: nothing left behind.
    store = open_store(deployed)
    try:
        with store.read() as conn:
            rows = tallies.read(conn, "claims", 0, 2**62)
    finally:
        store.dispose()
    assert {r.version for r in rows} == {1, second}
    assert sum(r.counts["requests"] for r in rows) == 2 * requests
