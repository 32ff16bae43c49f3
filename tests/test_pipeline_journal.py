"""The local journal, and the recorder spooling to it while the store is unreachable."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.audit.verify import verify
from prodgate.pipeline.journal import Journal
from prodgate.pipeline.metrics import Metrics
from prodgate.pipeline.recorder import Recorder
from prodgate.store.engine import Store
from prodgate.store.tables import audit_log


def record(n: int) -> Record:
    return Record(
        kind=KIND_INFERENCE,
        action="predict",
        ts_us=1_700_000_000_000_000 + n,
        payload={"input": {"amount": float(n)}, "output": {"prediction": "routine"}},
        service="claims",
        version=1,
        status=200,
        decision="auto",
        latency_ms=1.5,
    )


def test_records_survive_in_order_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    journal.open()
    written = [record(1), record(2), record(3)]
    journal.append(written[:2])
    journal.append(written[2:])
    assert journal.pending == 3
    with journal.path.open("ab") as f:
        f.write(b'{"kind": "inference", "act')  # a crash in the middle of a write
    assert [r.id for r in journal.records()] == [r.id for r in written]
    assert next(journal.records()) == written[0]
    journal.clear()
    assert journal.pending == 0
    assert list(journal.records()) == []
    journal.close()
    assert not journal.path.exists()  # an empty journal leaves nothing behind


def test_a_dead_writers_journal_is_adopted_a_live_ones_is_not(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    folder.mkdir()
    dead = folder / "journal-elsewhere-1.jsonl"
    first = Journal(folder)
    first.path = dead
    first.open()
    first.append([record(1)])
    live = Journal(folder)
    live.path = folder / "journal-elsewhere-2.jsonl"
    live.open()
    live.append([record(2)])
    first.close()  # its process ended with a record still waiting: the file stays
    assert dead.exists()

    mine = Journal(folder)
    mine.open()
    assert mine.pending == 1  # the dead writer's record, not the live one's
    assert [r.ts_us for r in mine.records()] == [record(1).ts_us]
    mine.clear()
    assert not dead.exists()
    assert live.path.exists()
    mine.close()
    live.close()


def _unreachable(store: Store) -> sa.Engine:
    """An engine of the same kind whose database cannot be reached."""
    if store.dialect == "postgresql":
        return sa.create_engine(
            "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
        )
    return sa.create_engine("sqlite:////nonexistent-folder/prodgate.db")


def test_an_outage_is_spooled_acknowledged_then_replayed_in_order(
    store: Store, tmp_path: Path
) -> None:
    metrics = Metrics()
    before, during, after = [record(1)], [record(2), record(3), record(4)], [record(5)]

    async def scenario() -> None:
        recorder = Recorder(store, metrics, journal=Journal(tmp_path / "journal"), retry_s=0.05)
        recorder.start()
        await recorder.record(before)
        healthy, store.engine = store.engine, _unreachable(store)
        try:
            # Acknowledged although the store is down: they are on disk, fsynced.
            await asyncio.gather(recorder.record(during[:1]), recorder.record(during[1:]))
            assert recorder.spooled == 3
            await asyncio.sleep(0.2)  # retries fail quietly while the store is away
            assert recorder.spooled == 3
        finally:
            store.engine.dispose()
            store.engine = healthy
        for _ in range(100):  # replayed within a retry interval of the store's return
            if recorder.spooled == 0:
                break
            await asyncio.sleep(0.05)
        assert recorder.spooled == 0
        await recorder.record(after)
        await recorder.close()

    asyncio.run(scenario())
    with store.read() as conn:
        stored = list(conn.execute(sa.select(audit_log.c.id).order_by(audit_log.c.seq)).scalars())
    assert stored == [r.id for r in before + during + after]
    assert verify(store).ok
    assert metrics.registry.get_sample_value("prodgate_audit_spooled_records_total") == 3
    assert metrics.registry.get_sample_value("prodgate_audit_journal_records") == 0
    assert list((tmp_path / "journal").iterdir()) == []


def test_a_replay_after_a_crash_records_nothing_twice(store: Store, tmp_path: Path) -> None:
    # The store committed a group, then the process died before emptying its journal.
    records = [record(1), record(2)]
    old = Journal(tmp_path / "journal")
    old.path = tmp_path / "journal" / "journal-gone-1.jsonl"
    old.open()
    old.append(records)
    with store.write() as conn:
        log.append(store, conn, records[:1])
    old.close()  # the process is gone, and so is its lock; the file stays

    async def scenario() -> None:
        recorder = Recorder(store, Metrics(), journal=Journal(tmp_path / "journal"))
        recorder.start()
        assert recorder.spooled == 2
        await recorder.record([record(3)])  # replays first, then commits this
        assert recorder.spooled == 0
        await recorder.close()

    asyncio.run(scenario())
    with store.read() as conn:
        stored = list(conn.execute(sa.select(audit_log.c.id).order_by(audit_log.c.seq)).scalars())
    assert stored == [records[0].id, records[1].id, stored[-1]]
    assert len(stored) == 3
    assert verify(store).ok
