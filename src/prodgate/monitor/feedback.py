"""Ground truth that arrives after a decision.

Feedback names an inference by id and gives its true label (classifiers) or value
(regressors), where it came from and when it was observed. It is kept one per
inference, recorded in the audit log, and feeds canary checks and production metrics.

An LLM answer (a service of kind ``llm``) takes one of three: its true ``label``
(classification prompts, the same rule as a classifier's), a ``score`` from 0 to 1,
or the ``correct`` answer's text. A label or a correct answer is graded against the
answer on arrival (:func:`prodgate.monitor.llm.grade`), and what is stored is the
truth with its verdict: ``{"label": "fraud", "match": false}``, ``{"score": 0.8}``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE
from prodgate.exceptions import (
    ConflictError,
    ContractViolationError,
    UnknownInferenceError,
    Violation,
)
from prodgate.monitor import llm
from prodgate.spec import ServiceSpec, Spec
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import audit_log, feedback

MAX_SOURCE = 128
#: The longest correct answer taken (characters).
#: (Within the 64 KiB a feedback body may have, so that a longer one is a 422, not a 413.)
MAX_CORRECT = 60_000
#: The truths feedback on an LLM answer may give, one per feedback.
LLM_TRUTHS = ("label", "score", "correct")


#: The last second datetime can name (9999-12-31T23:59:59Z); times are kept in us.
LATEST_S = 253_402_300_799


def _observed_us(raw: Any) -> int:
    if raw is None:
        return now_us()
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if not 0 <= raw <= LATEST_S:  # NaN fails this too
            raise ContractViolationError(
                [Violation("/observed_at", f"seconds since the epoch must be 0 to {LATEST_S}")]
            )
        return int(raw * 1_000_000)
    if isinstance(raw, str):
        try:
            when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            seconds = when.timestamp()
            if not 0 <= seconds <= LATEST_S:
                raise ContractViolationError(
                    [Violation("/observed_at", "must be a time from 1970 to 9999")]
                )
            return int(seconds * 1_000_000)
    raise ContractViolationError(
        [Violation("/observed_at", "must be an RFC 3339 time or seconds since the epoch")]
    )


def parse(body: Any, service: ServiceSpec) -> tuple[Any, str, int]:
    """Check a feedback body; return (true value, source, observed time in us).

    A classifier's label follows the spec's one rule for true labels
    (:meth:`ServiceSpec.as_label`), the same ``evaluate`` reads a holdout's with: a
    declared label, or 0..k-1 and false/true standing for the labels in order. The
    label stored is the declared one.
    """
    if service.kind == "llm":
        return _parse_llm(body, service)
    if not isinstance(body, dict):
        raise ContractViolationError([Violation("", 'send {"label": ...} or {"value": ...}')])
    violations = [
        Violation(f"/{k}", "unknown field")
        for k in sorted(set(body) - {"label", "value", "source", "observed_at"})
    ]
    key = "label" if "label" in body else "value"
    if key not in body:
        violations.append(Violation("", 'give the truth as "label" (or "value" for a regressor)'))
        raise ContractViolationError(violations)
    truth = body[key]
    value: Any = None
    if service.kind == "classifier":
        value = service.as_label(truth)
        if value is None:
            violations.append(Violation(f"/{key}", _not_a_label(service)))
    elif not isinstance(truth, (int, float)) or isinstance(truth, bool):
        violations.append(Violation(f"/{key}", "must be a number"))
    else:
        value = float(truth)
    source, observed = _provenance(body, violations)
    if violations:
        raise ContractViolationError(violations)
    return value, source, observed


def _provenance(body: dict[str, Any], violations: list[Violation]) -> tuple[str, int]:
    """Where the feedback came from and when it was observed; problems go to
    *violations*."""
    source = body.get("source", "api")
    if not isinstance(source, str) or not 0 < len(source) <= MAX_SOURCE:
        violations.append(Violation("/source", f"must be a string of 1 to {MAX_SOURCE} characters"))
    elif not source.isprintable():
        violations.append(Violation("/source", "must not contain control characters"))
    try:
        observed = _observed_us(body.get("observed_at"))
    except ContractViolationError as exc:
        violations.extend(exc.violations)
        observed = 0
    return source, observed


def _parse_llm(body: Any, service: ServiceSpec) -> tuple[dict[str, Any], str, int]:
    """Feedback on an LLM answer: exactly one of ``label``, ``score`` or ``correct``."""
    ways = '"label" (a classification), "score" (0 to 1) or "correct" (the right answer)'
    if not isinstance(body, dict):
        raise ContractViolationError([Violation("", f"send an object with {ways}")])
    violations = [
        Violation(f"/{k}", "unknown field")
        for k in sorted(set(body) - {*LLM_TRUTHS, "source", "observed_at"})
    ]
    given = [k for k in LLM_TRUTHS if k in body]
    if not given:
        violations.append(Violation("", f"give the truth as {ways}"))
        raise ContractViolationError(violations)
    value: dict[str, Any] = {}
    if len(given) > 1:
        violations.append(Violation("", f"give one of label, score or correct, not {given}"))
    else:
        key = given[0]
        truth = body[key]
        if key == "label":
            label = service.as_label(truth)
            if label is None:
                violations.append(Violation("/label", _not_a_label(service)))
            value = {"label": label}
        elif key == "score":
            if (
                not isinstance(truth, (int, float))
                or isinstance(truth, bool)
                or not 0 <= truth <= 1  # NaN fails this too
            ):
                violations.append(Violation("/score", "must be a number from 0 to 1"))
            else:
                value = {"score": float(truth)}
        elif not isinstance(truth, str) or not truth.strip() or len(truth) > MAX_CORRECT:
            violations.append(
                Violation(
                    "/correct", f"must be the right answer's text, 1 to {MAX_CORRECT} characters"
                )
            )
        else:
            value = {"correct": truth}
    source, observed = _provenance(body, violations)
    if violations:
        raise ContractViolationError(violations)
    return value, source, observed


def _not_a_label(service: ServiceSpec) -> str:
    if service.labels is None:
        return "must be a label: text, an integer or a boolean"
    message = f"must be one of the labels {list(service.labels)}"
    if service.labels_by_position:
        message += f" (or 0..{len(service.labels) - 1} for them in order)"
    return message


def submit(store: Store, spec: Spec, inference_id: str, body: Any) -> dict[str, Any]:
    """Store feedback for *inference_id*; raises 404 for unknown ids, 409 for repeats."""
    with store.write() as conn:
        return write(store, conn, spec, inference_id, body)


def write(
    store: Store, conn: Connection, spec: Spec, inference_id: str, body: Any
) -> dict[str, Any]:
    """:func:`submit` inside the caller's write transaction (a review's decision and
    the feedback it makes commit together)."""
    row = conn.execute(
        sa.select(
            audit_log.c.service, audit_log.c.version, audit_log.c.status, audit_log.c.action
        ).where(audit_log.c.id == inference_id, audit_log.c.kind == KIND_INFERENCE)
    ).first()
    if row is None or row.status != 200 or row.action != "predict":
        raise UnknownInferenceError(f"no accepted decision with id {inference_id!r}")
    service = spec.service(row.service)
    value, source, observed = parse(body, service)
    if service.kind == "llm":
        payload = conn.execute(
            sa.select(audit_log.c.payload).where(audit_log.c.id == inference_id)
        ).scalar_one()
        value = llm.grade(service, orjson.loads(payload).get("output"), value)
    exists = conn.execute(
        sa.select(feedback.c.inference_id).where(feedback.c.inference_id == inference_id)
    ).first()
    if exists is not None:
        raise ConflictError(f"inference {inference_id} already has feedback")
    received = now_us()
    conn.execute(
        feedback.insert().values(
            inference_id=inference_id,
            service=service.name,
            version=row.version,
            value=orjson.dumps(value).decode(),
            source=source,
            observed_at_us=observed,
            received_at_us=received,
        )
    )
    record = log.action(
        "feedback",
        actor=source,
        service=service.name,
        version=row.version,
        inference_id=inference_id,
        truth=value,
    )
    record.kind = "feedback"
    log.append(store, conn, [record])
    return {
        "inference_id": inference_id,
        "service": service.name,
        "version": row.version,
        "truth": value,
        "source": source,
        "observed_at_us": observed,
        "received_at_us": received,
    }
