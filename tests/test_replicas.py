"""Several real ``prodgate serve`` processes on one store (and one Redis): a key's
limit holds across them, and a key revoked anywhere is refused everywhere within a
second."""

from __future__ import annotations

import contextlib
import time
import uuid

import httpx

from gateway_support import GOOD, bearer, make_key
from prodgate.identity import keys
from prodgate.settings import Settings
from prodgate.store.engine import open_store
from server_process import serving

PREDICT = "/v1/services/claims/predict"


def _replicas(settings: Settings, n: int, env: dict[str, str]) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    bases = []
    for i in range(n):
        home = f"{settings.home}-replica-{i}"
        replica = settings.with_(home=home, database_url=settings.store_url)
        _, base = stack.enter_context(serving(replica, env_extra=env))
        bases.append(base)
    stack.bases = bases  # type: ignore[attr-defined]
    return stack


def test_a_limit_holds_across_replicas_with_redis(deployed: Settings) -> None:
    env = {
        "PRODGATE_AUTH": "keys",
        "PRODGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
        "PRODGATE_REDIS_PREFIX": f"test:{uuid.uuid4().hex}:",
    }
    token = make_key(deployed, "app", "predict:claims", rpm=10)
    with _replicas(deployed, 2, env) as stack:
        bases: list[str] = stack.bases  # type: ignore[attr-defined]
        codes = [
            httpx.post(bases[i % 2] + PREDICT, json={"inputs": GOOD}, headers=bearer(token))
            for i in range(30)
        ]
    statuses = [r.status_code for r in codes]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 20, statuses
    assert all(r.headers.get("retry-after") for r in codes if r.status_code == 429)


def test_without_redis_each_replica_counts_alone(deployed: Settings) -> None:
    token = make_key(deployed, "app", "predict:claims", rpm=5)
    with _replicas(deployed, 2, {"PRODGATE_AUTH": "keys"}) as stack:
        bases: list[str] = stack.bases  # type: ignore[attr-defined]
        statuses = [
            httpx.post(
                bases[i % 2] + PREDICT, json={"inputs": GOOD}, headers=bearer(token)
            ).status_code
            for i in range(20)
        ]
    # In memory, a limit is per process: what Redis is there to prevent.
    assert statuses.count(200) == 10, statuses


def test_a_key_revoked_on_one_is_refused_by_all_within_a_second(deployed: Settings) -> None:
    token = make_key(deployed, "app", "predict:claims")
    env = {"PRODGATE_AUTH": "keys", "PRODGATE_REFRESH_INTERVAL": "0.5"}
    with _replicas(deployed, 2, env) as stack:
        bases: list[str] = stack.bases  # type: ignore[attr-defined]
        for base in bases:
            r = httpx.post(base + PREDICT, json={"inputs": GOOD}, headers=bearer(token))
            assert r.status_code == 200
        store = open_store(deployed)
        keys.revoke(store, "app", actor="tester")
        store.dispose()
        revoked_at = time.monotonic()
        refused: dict[str, float] = {}
        while len(refused) < len(bases):
            for base in bases:
                if base in refused:
                    continue
                r = httpx.post(base + PREDICT, json={"inputs": GOOD}, headers=bearer(token))
                if r.status_code == 401:
                    refused[base] = time.monotonic() - revoked_at
            assert time.monotonic() - revoked_at < 3.0, refused
            time.sleep(0.02)
    assert max(refused.values()) < 1.0, refused


def test_the_kill_switch_on_one_replica_reaches_the_other_within_a_second(
    deployed: Settings,
) -> None:
    caller = make_key(deployed, "app", "predict:claims")
    operator = make_key(deployed, "ops", "admin:claims")
    env = {"PRODGATE_AUTH": "keys", "PRODGATE_REFRESH_INTERVAL": "0.5"}
    with _replicas(deployed, 2, env) as stack:
        first, second = stack.bases  # type: ignore[attr-defined]
        assert httpx.post(
            second + PREDICT, json={"inputs": GOOD}, headers=bearer(caller)
        ).is_success
        r = httpx.post(
            first + "/v1/services/claims/disable",
            json={"reason": "incident 42"},
            headers=bearer(operator),
        )
        assert r.status_code == 200, r.text
        disabled_at = time.monotonic()
        while True:
            r = httpx.post(second + PREDICT, json={"inputs": GOOD}, headers=bearer(caller))
            if r.status_code == 503:
                break
            assert time.monotonic() - disabled_at < 1.0
            time.sleep(0.02)
        assert "incident 42" in r.json()["detail"]
