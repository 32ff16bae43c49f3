"""Production metrics of a service per version: operations, and quality from feedback.

Operations (requests, errors, p95 latency, escalation and contract-violation rates)
come from the audit log; quality (the standard metrics, business cost, cohorts and
the service's gates) is scored on the decisions that received feedback, with the same
scoring as offline evaluation, so production and evaluation speak the same language.
"""

from __future__ import annotations

from typing import Any

import orjson
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit.record import KIND_INFERENCE
from prodgate.evaluation.scoring import score
from prodgate.monitor.window import window_stats
from prodgate.spec import ServiceSpec
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import audit_log, feedback

#: Most labelled decisions scored per version (the newest first).
LABELLED_LIMIT = 50_000


def _versions(conn: Connection, service: str, start: int, end: int) -> list[int]:
    rows = conn.execute(
        sa.select(audit_log.c.version)
        .where(
            audit_log.c.service == service,
            audit_log.c.ts_us >= start,
            audit_log.c.ts_us < end,
            audit_log.c.kind == KIND_INFERENCE,
            audit_log.c.action == "predict",
            audit_log.c.version.is_not(None),
        )
        .distinct()
    ).scalars()
    return sorted(int(v) for v in rows)


def _labelled(
    conn: Connection, service: ServiceSpec, version: int, start: int, end: int
) -> dict[str, Any] | None:
    rows = conn.execute(
        sa.select(audit_log.c.payload, audit_log.c.decision, feedback.c.value)
        .join(feedback, feedback.c.inference_id == audit_log.c.id)
        .where(
            audit_log.c.service == service.name,
            audit_log.c.ts_us >= start,
            audit_log.c.ts_us < end,
            audit_log.c.kind == KIND_INFERENCE,
            audit_log.c.action == "predict",
            audit_log.c.status == 200,
            audit_log.c.version == version,
        )
        .order_by(audit_log.c.ts_us.desc())
        .limit(LABELLED_LIMIT)
    ).all()
    if not rows:
        return None
    inputs, truth, predictions, probabilities, escalated = [], [], [], [], []
    for payload, decision, value in rows:
        body = orjson.loads(payload)
        inputs.append(body["input"])
        predictions.append(body["output"]["prediction"])
        probabilities.append(body["output"].get("probabilities"))
        escalated.append(decision == "escalated")
        truth.append(orjson.loads(value))
    frame = pd.DataFrame(inputs, columns=service.feature_names)
    return score(service, frame, truth, predictions, probabilities, escalated)


def production_metrics(
    store: Store, service: ServiceSpec, window_s: float, end_us: int | None = None
) -> dict[str, Any]:
    """Each version's operations and feedback-scored quality over the last *window_s*."""
    end = end_us if end_us is not None else now_us()
    start = end - int(window_s * 1_000_000)
    out: list[dict[str, Any]] = []
    with store.read() as conn:
        for version in _versions(conn, service.name, start, end):
            ops = window_stats(conn, service.name, version, start, end, service.policy.business)
            out.append(
                {
                    "version": version,
                    "operations": ops.as_dict(),
                    # An LLM answer's quality is graded apart (monitor.llm), not scored
                    # as a classifier's prediction.
                    "quality": None
                    if service.kind == "llm"
                    else _labelled(conn, service, version, start, end),
                }
            )
    return {
        "service": service.name,
        "window_s": window_s,
        "start_us": start,
        "end_us": end,
        "versions": out,
    }
