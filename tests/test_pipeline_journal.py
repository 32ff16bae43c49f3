"""The local journal, and the recorder spooling to it while the store is unreachable."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.audit.verify import verify
from prodgate.exceptions import StoreError
from prodgate.pipeline.journal import DEAD_LETTER, Journal
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


def waiting(journal: Journal) -> list[Record]:
    records, _ = journal.take(1000)
    return records


def test_records_survive_in_order_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    journal.open()
    written = [record(1), record(2), record(3)]
    journal.append(written[:2])
    journal.append(written[2:])
    assert journal.pending == 3
    assert waiting(journal) == written
    # Replay takes slices and remembers where it got to.
    first, cursor = journal.take(2)
    assert first == written[:2]
    journal.done(2, cursor)
    assert journal.pending == 1
    assert waiting(journal) == written[2:]
    journal.close()
    # A crash in the middle of a write leaves a torn last line; the next process
    # adopts the file and reads everything before it.
    with journal.path.open("ab") as f:
        f.write(b'{"kind": "inference", "act')
    after = Journal(tmp_path / "journal")
    after.open()
    assert after.pending == 3
    assert waiting(after) == written
    after.clear()
    after.close()
    assert list((tmp_path / "journal").iterdir()) == []


def test_a_failed_write_is_cut_off_so_the_next_one_starts_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "journal")
    journal.open()
    one, two, three = record(1), record(2), record(3)
    journal.append([one])
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        journal.append([two])
    monkeypatch.setattr(os, "fsync", real_fsync)
    journal.append([three])
    assert journal.pending == 2
    assert waiting(journal) == [one, three]
    journal.close()


def test_a_dead_writers_journal_is_adopted_a_live_ones_is_not(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    orphan = record(1)
    dead = Journal(folder)
    dead.open()
    dead.append([orphan])
    live = Journal(folder)
    live.open()
    live.append([record(2)])
    dead.close()  # its process ended with a record still waiting: the file stays
    assert dead.path.exists()

    mine = Journal(folder)
    mine.open()
    assert mine.pending == 1  # the dead writer's record, not the live one's
    assert waiting(mine) == [orphan]
    mine.clear()
    assert not dead.path.exists()
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


def test_a_record_the_store_refuses_is_set_aside_and_the_rest_replayed(
    store: Store, tmp_path: Path
) -> None:
    good, poison, later = record(1), record(2), record(3)
    poison.ts_us = 2**63  # one past the largest 64-bit integer a store column takes
    old = Journal(tmp_path / "journal")
    old.open()
    old.append([good, poison, later])
    old.close()

    async def scenario() -> None:
        recorder = Recorder(store, Metrics(), journal=Journal(tmp_path / "journal"))
        recorder.start()
        for _ in range(100):
            if recorder.spooled == 0:
                break
            await asyncio.sleep(0.05)
        assert recorder.spooled == 0
        await recorder.close()

    asyncio.run(scenario())
    with store.read() as conn:
        stored = list(conn.execute(sa.select(audit_log.c.id).order_by(audit_log.c.seq)).scalars())
    assert stored == [good.id, later.id]
    assert verify(store).ok
    kept = (tmp_path / "journal" / DEAD_LETTER).read_bytes().splitlines()
    assert len(kept) == 1
    assert poison.id.encode() in kept[0]


def test_a_long_backlog_is_replayed_in_slices_and_new_records_follow_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backlog = [record(i) for i in range(2500)]
    old = Journal(tmp_path / "journal")
    old.open()
    old.append(backlog)
    old.close()
    late = record(9999)
    commits: list[int] = []

    async def scenario() -> None:
        metrics = Metrics()
        recorder = Recorder(store, metrics, max_batch=1000, journal=Journal(tmp_path / "journal"))
        recorder.start()
        assert recorder.spooled == 2500
        await recorder.record([late])  # answered at once: it waits behind the backlog
        for _ in range(200):
            if recorder.spooled == 0:
                break
            await asyncio.sleep(0.02)
        await recorder.close()

    original = log.append_missing

    def counting(store_: Store, conn: Any, records: list[Record]) -> int:
        commits.append(len(records))
        return original(store_, conn, records)

    monkeypatch.setattr(log, "append_missing", counting)
    asyncio.run(scenario())
    # One transaction's worth at a time; the late record joined the end of the backlog.
    assert commits == [1000, 1000, 501]
    with store.read() as conn:
        stored = list(conn.execute(sa.select(audit_log.c.id).order_by(audit_log.c.seq)).scalars())
    assert stored == [r.id for r in backlog] + [late.id]
    assert verify(store).ok


def test_a_record_the_store_refuses_is_not_journalled_but_refused(
    store: Store, tmp_path: Path
) -> None:
    bad = record(1)
    bad.ts_us = 2**63  # the store is there; it refuses this statement

    async def scenario() -> None:
        recorder = Recorder(store, Metrics(), journal=Journal(tmp_path / "journal"))
        recorder.start()
        with pytest.raises(StoreError):
            await recorder.record([bad])
        assert recorder.spooled == 0  # not an outage: nothing waits to be replayed
        await recorder.record([record(2)])
        await recorder.close()

    asyncio.run(scenario())
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar() == 1


def test_a_journal_left_by_a_replica_that_stays_down_is_replayed(
    store: Store, tmp_path: Path
) -> None:
    folder = tmp_path / "journal"
    left = [record(1), record(2)]

    async def scenario() -> None:
        recorder = Recorder(store, Metrics(), journal=Journal(folder), adopt_every_s=0.05)
        recorder.start()
        await recorder.record([record(0)])
        # Another replica on the same folder spooled two records, then died.
        other = Journal(folder)
        other.open()
        other.append(left)
        other.close()
        for _ in range(100):
            with store.read() as conn:
                n = conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar()
            if n == 3:
                break
            await asyncio.sleep(0.05)
        await recorder.close()

    asyncio.run(scenario())
    with store.read() as conn:
        stored = set(conn.execute(sa.select(audit_log.c.id)).scalars())
    assert {r.id for r in left} <= stored
    assert len(stored) == 3
    assert verify(store).ok
    assert not list(folder.glob("journal-*.jsonl"))
