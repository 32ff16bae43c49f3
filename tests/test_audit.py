"""The audit chain on both stores: appends, and verification of tampered logs."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.audit.verify import verify
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import audit_log


def fill_records(n: int) -> list[Record]:
    return [
        Record(
            kind=KIND_INFERENCE,
            action="predict",
            ts_us=now_us(),
            payload={"input": {"x": i, "name": "é"}, "output": {"prediction": "a"}},
            service="svc",
            version=1,
            status=200,
            decision="auto",
            confidence=0.1 * i + 1e-9,
            latency_ms=1.5,
        )
        for i in range(n)
    ]


def fill(store: Store, n: int = 10) -> list[Record]:
    records = fill_records(n)
    with store.write() as conn:
        log.append(store, conn, records[: n // 2])
    with store.write() as conn:
        log.append(store, conn, records[n // 2 :])
    return records


def test_an_untouched_log_verifies(store: Store) -> None:
    records = fill(store)
    verdict = verify(store)
    assert verdict.ok, verdict.problem
    assert verdict.checked == len(records)
    with store.read() as conn:
        got = log.get(conn, records[3].id)
    assert got is not None
    assert got["seq"] == 4
    assert got["input"] == {"x": 3, "name": "é"}


def test_empty_log_verifies(store: Store) -> None:
    assert verify(store).ok


def test_a_changed_record_is_named(store: Store) -> None:
    records = fill(store)
    with store.write() as conn:
        conn.execute(audit_log.update().where(audit_log.c.seq == 4).values(decision="escalated"))
    verdict = verify(store)
    assert not verdict.ok
    assert verdict.seq == 4
    assert verdict.id == records[3].id
    assert "changed" in verdict.problem


def test_a_changed_payload_is_named(store: Store) -> None:
    fill(store)
    with store.write() as conn:
        conn.execute(
            audit_log.update().where(audit_log.c.seq == 7).values(payload='{"input":{"x":0}}')
        )
    verdict = verify(store)
    assert (verdict.ok, verdict.seq) == (False, 7)


def test_a_removed_record_is_named(store: Store) -> None:
    fill(store)
    with store.write() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.seq == 5))
    verdict = verify(store)
    assert not verdict.ok
    assert verdict.seq == 5
    assert "removed" in verdict.problem


def test_removed_tail_is_noticed(store: Store) -> None:
    fill(store)
    with store.write() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.seq >= 9))
    verdict = verify(store)
    assert not verdict.ok
    assert "at the end were removed" in verdict.problem


def test_swapped_records_are_named(store: Store) -> None:
    records = fill(store)
    # Swap the places of records 3 and 4, hashes and all, as a careful forger would.
    with store.write() as conn:
        rows = {
            r.seq: dict(r._mapping)
            for r in conn.execute(sa.select(audit_log).where(audit_log.c.seq.in_([3, 4])))
        }
        conn.execute(audit_log.delete().where(audit_log.c.seq.in_([3, 4])))
        a, b = rows[3], rows[4]
        a["seq"], b["seq"] = 4, 3
        conn.execute(audit_log.insert(), [b, a])
    verdict = verify(store)
    assert not verdict.ok
    assert verdict.seq == 3
    assert verdict.id == records[3].id


def test_rehashed_forgery_breaks_the_chain(store: Store) -> None:
    """Changing a record and recomputing its leaf hash still fails: the chain moves."""
    from prodgate.audit.record import leaf_hash

    fill(store)
    with store.write() as conn:
        row = dict(conn.execute(sa.select(audit_log).where(audit_log.c.seq == 6)).one()._mapping)
        row["decision"] = "escalated"
        conn.execute(
            audit_log.update()
            .where(audit_log.c.seq == 6)
            .values(decision="escalated", leaf_hash=leaf_hash(row))
        )
    verdict = verify(store)
    assert (verdict.ok, verdict.seq) == (False, 6)
    assert "does not follow" in verdict.problem


def test_verify_sees_one_snapshot_while_writers_append(store: Store) -> None:
    """Records committed between verify's head read and its walk are not seen, nor a failure.

    A listener on the store's engine appends from another connection right after verify
    reads the head, the moment a per-statement snapshot (READ COMMITTED) would go wrong.
    """
    fill(store, 10)
    appended: list[int] = []

    def append_after_head_read(
        conn: sa.Connection, cursor: object, statement: str, *args: object
    ) -> None:
        if appended or "FROM state" not in statement or "SELECT" not in statement:
            return
        appended.append(3)
        with store.write() as other:
            log.append(store, other, fill_records(3))

    sa.event.listen(store.engine, "after_cursor_execute", append_after_head_read)
    try:
        verdict = verify(store)
    finally:
        sa.event.remove(store.engine, "after_cursor_execute", append_after_head_read)
    assert appended, "the listener never ran: verify no longer reads the head first?"
    assert verdict.ok, verdict.problem
    assert verdict.checked == 10
    after = verify(store)
    assert (after.ok, after.checked) == (True, 13), after.problem


def test_verify_passes_while_a_thread_keeps_appending(store: Store) -> None:
    fill(store, 200)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                with store.write() as conn:
                    log.append(store, conn, fill_records(2))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        verdicts = [verify(store) for _ in range(5)]
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    for verdict in verdicts:
        assert verdict.ok, verdict.problem
        assert verdict.checked >= 200


def test_seal_hashes_as_the_verifier_recomputes_them() -> None:
    # seal() hashes each row as it stands; the verifier picks HASHED_COLUMNS from rows
    # read back with their hashes. Both must give the same chain.
    from prodgate.audit.record import GENESIS, Record, chain_hash, leaf_hash, new_id, seal

    records = [
        Record(kind="inference", action="predict", ts_us=i, payload={"input": {"x": i}})
        for i in range(3)
    ]
    rows = [r.row(i + 1) for i, r in enumerate(records)]
    head = seal(rows, GENESIS)
    prev = GENESIS
    for row in rows:
        assert row["leaf_hash"] == leaf_hash(row)
        prev = chain_hash(prev, row["leaf_hash"])
        assert row["chain_hash"] == prev
    assert head == prev
    ident = new_id()
    assert (len(ident), ident[12], ident[16] in "89ab") == (32, "4", True)
