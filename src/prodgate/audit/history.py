"""A service's governance history: every action recorded in the audit log.

Besides the list people read (:func:`history`), the log answers which versions took
production traffic, in order (:func:`production_versions`): the audit log is the one
record of that, so rollback walks back through it rather than through a second copy.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit.log import as_dict
from prodgate.audit.record import KIND_ACTION, KIND_INFERENCE
from prodgate.store.tables import audit_log

#: The governance actions that can change which version takes production traffic,
#: each recorded with that version as the record's ``version``.
PRODUCTION_ACTIONS = ("deploy", "promote", "rollback")


def history(conn: Connection, service: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The newest *limit* governance actions of *service*, oldest first."""
    rows = conn.execute(
        sa.select(audit_log)
        .where(audit_log.c.kind == KIND_ACTION, audit_log.c.service == service)
        .order_by(audit_log.c.seq.desc())
        .limit(limit)
    ).all()
    out = []
    for row in reversed(rows):
        entry = as_dict(row)
        for key in ("kind", "status", "decision", "confidence", "latency_ms", "leaf_hash"):
            entry.pop(key, None)
        out.append(entry)
    return out


#: Guard events a history shows by default (the newest).
GUARD_EVENTS = 50


def guard_events(conn: Connection, service: str, limit: int = GUARD_EVENTS) -> list[dict[str, Any]]:
    """The newest *limit* decisions of *service* a guard rail acted on (blocked,
    redacted, escalated or logged a finding), oldest first, as history entries: action
    ``guard``, the record's id, and per direction the verdict and the findings.

    Read from the inference records themselves (their payload holds the verdicts), newest
    first through the (kind, service, seq) index: no second copy on the request path."""
    rows = conn.execute(
        sa.select(
            audit_log.c.id,
            audit_log.c.seq,
            audit_log.c.ts_us,
            audit_log.c.version,
            audit_log.c.action,
            audit_log.c.actor,
            audit_log.c.status,
            audit_log.c.payload,
        )
        .where(
            audit_log.c.kind == KIND_INFERENCE,
            audit_log.c.service == service,
            audit_log.c.payload.like('%"guard":{%'),
        )
        .order_by(audit_log.c.seq.desc())
        .limit(limit)
    ).all()
    out = []
    for row in reversed(rows):
        payload = orjson.loads(row.payload)
        verdicts = payload.get("guard")
        if not isinstance(verdicts, dict):
            continue
        out.append(
            {
                "seq": row.seq,
                "id": row.id,
                "ts_us": row.ts_us,
                "action": "guard",
                "version": row.version,
                "actor": row.actor,
                "status": row.status,
                "via": row.action,  # predict, or guard (a check through /guard)
                "guard": verdicts,
            }
        )
    return out


def production_versions(conn: Connection, service: str) -> list[int]:
    """*service*'s production versions as a stack: the current one last.

    Replayed from the audit log's ``deploy``, ``promote`` and ``rollback`` records,
    oldest first. Each names the version that takes production traffic after it:

    - ``deploy`` and ``promote`` push it;
    - ``rollback`` pops back down to the nearest entry that is it. A rollback of a
      canary (by the controller) names production as it was, so it pops nothing; a
      rollback to an earlier version pops every version above that one.

    A rollback to a version not in the stack (recorded before rollbacks walked back,
    when a second rollback went forward again) is replayed as the push it was.
    """
    versions = conn.execute(
        sa.select(audit_log.c.action, audit_log.c.version)
        .where(
            audit_log.c.kind == KIND_ACTION,
            audit_log.c.service == service,
            audit_log.c.action.in_(PRODUCTION_ACTIONS),
            audit_log.c.version.is_not(None),
        )
        .order_by(audit_log.c.seq)
    ).all()
    stack: list[int] = []
    for action, version in versions:
        if action == "rollback" and version in stack:
            del stack[len(stack) - stack[::-1].index(version) :]
        elif not stack or stack[-1] != version:
            stack.append(int(version))
    return stack
