"""Real server processes: real HTTP, SIGKILL under load, nothing acknowledged lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from conftest import PG_ADMIN_URL
from gateway_support import GOOD
from prodgate.audit.verify import verify
from prodgate.settings import Settings
from prodgate.store.engine import open_store
from prodgate.store.tables import audit_log
from server_process import serving

PREDICT = "/v1/services/claims/predict"


def test_real_server_answers_and_shuts_down_cleanly(deployed: Settings) -> None:
    with serving(deployed) as (proc, base):
        r = httpx.post(base + PREDICT, json={"inputs": GOOD})
        assert r.status_code == 200
        rid = r.json()["id"]
        bad = httpx.post(base + PREDICT, content=b"{", headers={"content-type": "application/json"})
        assert bad.status_code == 400
        assert bad.headers["content-type"] == "application/problem+json"
        assert "prodgate_requests_total" in httpx.get(base + "/metrics").text
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert proc.wait(15) in (0, -signal.SIGTERM)
        log = next(Path(deployed.home).parent.glob("server-*.log")).read_text()
        assert "Application shutdown complete" in log
    store = open_store(deployed)
    with store.read() as conn:
        ids = set(conn.execute(sa.select(audit_log.c.id)).scalars())
    assert rid in ids
    assert verify(store).ok
    store.dispose()


async def _hammer(base: str, stop_after: float, workers: int = 32) -> list[str]:
    """Post until the server dies; return the ids of every 200 response received."""
    acked: list[str] = []
    deadline = time.monotonic() + 30

    async def worker(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            try:
                r = await client.post(PREDICT, json={"inputs": {**GOOD, "amount": n * 1000 + i}})
            except httpx.HTTPError:
                return  # the server is gone
            if r.status_code == 200:
                acked.append(r.json()["id"])

    limits = httpx.Limits(max_connections=workers)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
        await asyncio.gather(*(worker(client, n) for n in range(workers)))
    return acked


def test_sigkill_under_load_loses_no_acknowledged_record(deployed: Settings) -> None:
    with serving(deployed) as (proc, base):

        async def run() -> list[str]:
            task = asyncio.create_task(_hammer(base, 0))
            await asyncio.sleep(2.0)
            os.kill(proc.pid, signal.SIGKILL)
            return await task

        acked = asyncio.run(run())
        proc.wait(10)
    assert len(acked) > 50, "the load did not get going"
    store = open_store(deployed)
    with store.read() as conn:
        stored = set(conn.execute(sa.select(audit_log.c.id)).scalars())
    missing = [i for i in acked if i not in stored]
    assert not missing, f"{len(missing)} acknowledged records lost"
    verdict = verify(store)
    store.dispose()
    assert verdict.ok, verdict.problem
    assert verdict.checked >= len(acked)


def test_records_spooled_during_an_outage_survive_sigkill(deployed: Settings) -> None:
    """PostgreSQL refuses connections; answers still come (from the local journal); the
    server is killed; the next server on the same home replays what was acknowledged."""
    if not deployed.database_url.startswith("postgresql"):
        pytest.skip("a real outage needs a server to refuse; SQLite: test_pipeline_journal")
    name = sa.engine.make_url(deployed.database_url).database
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def connections(allowed: bool) -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {allowed}'))
            if not allowed:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )

    acked: list[str] = []
    try:
        with serving(deployed) as (proc, base):
            assert httpx.post(base + PREDICT, json={"inputs": GOOD}).status_code == 200
            connections(False)
            for i in range(20):
                r = httpx.post(base + PREDICT, json={"inputs": {**GOOD, "amount": i}}, timeout=10)
                assert r.status_code == 200, r.text
                acked.append(r.json()["id"])
            metrics = httpx.get(base + "/metrics").text
            assert "prodgate_audit_journal_records 20.0" in metrics
            # Still ready: it answers, and journals each record before it does.
            ready = httpx.get(base + "/readyz")
            assert ready.status_code == 200
            assert "20 audit records wait in the local journal" in " ".join(
                ready.json()["warnings"]
            )
            # What the store said, and where it is, stays in the server's log.
            missing = httpx.get(base + "/v1/inferences/" + acked[0])
            assert missing.status_code == 503
            assert name not in missing.text
            assert "127.0.0.1" not in missing.text
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    finally:
        connections(True)
        admin.dispose()
    store = open_store(deployed)
    try:
        with serving(deployed):  # adopts the dead server's journal and replays it
            deadline = time.monotonic() + 20
            while True:
                with store.read() as conn:
                    stored = set(conn.execute(sa.select(audit_log.c.id)).scalars())
                if set(acked) <= stored or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        missing = [i for i in acked if i not in stored]
        assert not missing, f"{len(missing)} acknowledged records lost"
        verdict = verify(store)
        assert verdict.ok, verdict.problem
    finally:
        store.dispose()
    assert list((Path(deployed.home) / "journal").glob("*.jsonl")) == []
