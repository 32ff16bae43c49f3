"""A rollout's status as people read it: its row, the split and its last judgement."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit import log
from prodgate.audit.record import ACTION_BREAKER, KIND_ACTION
from prodgate.exceptions import NoRolloutError
from prodgate.rollout.split import all_deployments, get_deployment
from prodgate.rollout.state import Rollout, active_rollout
from prodgate.spec import Spec
from prodgate.store.tables import audit_log, rollouts

#: Audit actions that carry a judgement's checks, newest first answers ``status``.
_JUDGED_ACTIONS = (
    "rollout_step",
    "rollout_check_failed",
    "rollout_awaiting_confirmation",
    "promote",
    "rollback",
)


def last_judgement(conn: Connection, r: Rollout) -> dict[str, Any] | None:
    """The checks and metrics of *r*'s latest judged interval, read back from the audit log.

    The audit record is the one place they are kept: the newest judged action of the
    service (the index on kind, service, seq finds it), if it belongs to *r*.
    """
    row = conn.execute(
        sa.select(audit_log)
        .where(
            audit_log.c.kind == KIND_ACTION,
            audit_log.c.service == r.service,
            audit_log.c.action.in_(_JUDGED_ACTIONS),
        )
        .order_by(audit_log.c.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    record = log.as_dict(row)
    if record.get("rollout_id") != r.id or "checks" not in record:
        return None
    return {
        "action": record["action"],
        "ts_us": record["ts_us"],
        "window": record.get("window"),
        "checks": record["checks"],
        "canary": record.get("canary"),
        "baseline": record.get("baseline"),
    }


def status(conn: Connection, service: str) -> dict[str, Any]:
    """The service's active rollout, or else its latest, as JSON for the CLI and API."""
    r = active_rollout(conn, service)
    if r is None:
        row = conn.execute(
            sa.select(rollouts)
            .where(rollouts.c.service == service)
            .order_by(rollouts.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            raise NoRolloutError(f"{service} has had no rollout")
        r = Rollout.from_row(row)
    out = r.as_dict()
    # The split is the truth about traffic (a person may have changed it).
    dep = get_deployment(conn, service)
    on_canary = dep is not None and dep.canary_version == r.canary_version
    out["weight"] = dep.canary_weight if dep is not None and on_canary else 0.0
    out["last_judgement"] = last_judgement(conn, r)
    out["policy"] = r.policy.as_dict()
    return out


#: Breaker changes read back for ``overview`` (the newest of each model wins).
_BREAKER_ROWS = 1_000


def overview(conn: Connection, spec: Spec, only: str | None = None) -> dict[str, Any]:
    """Every service's split and active rollout, and the newest recorded state of each
    LLM model's circuit breaker, as JSON for ``prodgate status``."""
    deps = all_deployments(conn)
    services = []
    for name, service in spec.services.items():
        if only is not None and name != only:
            continue
        dep = deps.get(name)
        r = active_rollout(conn, name)
        services.append(
            {
                "name": name,
                "kind": service.kind,
                "production": dep.production_version if dep else None,
                "canary": dep.canary_version if dep else None,
                "canary_weight": round((dep.canary_weight if dep else 0.0) * 100, 2),
                "shadow": dep.shadow_version if dep else None,
                "disabled": bool(dep and dep.disabled),
                "disabled_reason": (dep.disabled_reason or "") if dep else "",
                "rollout": f"v{r.canary_version}: {r.state}" if r is not None else None,
            }
        )
    rows = conn.execute(
        sa.select(audit_log.c.ts_us, audit_log.c.payload)
        .where(audit_log.c.kind == KIND_ACTION, audit_log.c.action == ACTION_BREAKER)
        .order_by(audit_log.c.seq.desc())
        .limit(_BREAKER_ROWS)
    ).all()
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for ts_us, payload in rows:
        change = orjson.loads(payload)
        key = (str(change.get("provider")), str(change.get("model")))
        newest.setdefault(key, {**change, "ts_us": ts_us})
    return {"services": services, "breakers": [newest[k] for k in sorted(newest)]}
