"""Appending to the audit log and reading it back.

Appends are serialised across processes (``BEGIN IMMEDIATE`` on SQLite, an advisory
lock on PostgreSQL) because each record's chain hash depends on the one before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit.record import GENESIS, KIND_ACTION, Record, seal
from prodgate.identity.actor import Actor
from prodgate.store.engine import LOCK_AUDIT, Store, insert_many, now_us
from prodgate.store.tables import audit_log, state

HEAD_KEY = "audit_head"


def append(store: Store, conn: Connection, records: Sequence[Record]) -> None:
    """Append *records* in order inside the caller's write transaction."""
    if not records:
        return
    store.lock(conn, LOCK_AUDIT)
    last = conn.execute(
        sa.select(audit_log.c.seq, audit_log.c.chain_hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    seq, prev = (int(last[0]), str(last[1])) if last else (0, GENESIS)
    rows = [r.row(seq + i + 1) for i, r in enumerate(records)]
    seal(rows, prev)
    insert_many(conn, audit_log, rows)
    head = seq + len(rows)
    updated = conn.execute(state.update().where(state.c.key == HEAD_KEY).values(value=head))
    if updated.rowcount == 0:
        conn.execute(state.insert().values(key=HEAD_KEY, value=head))


def append_missing(store: Store, conn: Connection, records: Sequence[Record]) -> int:
    """Append those of *records* whose id the log does not hold yet; how many that was.

    For replaying records that may have been committed already (a crash between a
    commit and the bookkeeping that it happened).
    """
    ids = [r.id for r in records]
    present = set(conn.execute(sa.select(audit_log.c.id).where(audit_log.c.id.in_(ids))).scalars())
    fresh = [r for r in records if r.id not in present]
    append(store, conn, fresh)
    return len(fresh)


def action(
    kind_action: str,
    *,
    actor: str,
    service: str | None,
    version: int | None = None,
    **details: Any,
) -> Record:
    """A governance action record (register, deploy, ...).

    When *actor* is an :class:`~prodgate.identity.actor.Actor`, where it acted from is
    kept in the payload as ``origin`` (channel, OS user, host), beside the name.
    """
    if isinstance(actor, Actor) and "origin" not in details:
        details["origin"] = actor.origin.as_dict()
    return Record(
        kind=KIND_ACTION,
        action=kind_action,
        ts_us=now_us(),
        payload=details,
        service=service,
        version=version,
        actor=str(actor),
    )


def as_dict(row: Any) -> dict[str, Any]:
    """A stored row as the JSON the API and CLI show."""
    m = row._mapping
    out = {str(k): m[k] for k in m if k != "payload"}
    out.update(orjson.loads(m["payload"]))
    return out


def get(conn: Connection, record_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(audit_log).where(audit_log.c.id == record_id)).first()
    return as_dict(row) if row is not None else None


def tail(conn: Connection, limit: int = 20, service: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
    if service:
        q = q.where(audit_log.c.service == service)
    return [as_dict(r) for r in reversed(conn.execute(q).all())]
