"""A service's governance history: every action recorded in the audit log."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit.log import as_dict
from prodgate.audit.record import KIND_ACTION
from prodgate.store.tables import audit_log


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
