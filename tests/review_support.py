"""Review items made straight in the store, for tests of the queue and its routes.

An item is what the recorder makes for an escalated or sampled decision: an inference
record in the audit log and a ``review_items`` row with the same id. Here both are
written directly, so the queue can be tested apart from the request path.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway_support import GOOD, SPEC
from prodgate.audit import log
from prodgate.identity.keyring import Principal
from prodgate.pipeline.records import inference_record
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import review_items

#: The test spec with a review policy on ``claims`` (version 1 registered by tester).
REVIEW_SPEC = SPEC.replace(
    "    escalation:\n      confidence_below: 0.7\n",
    "    escalation:\n      confidence_below: 0.7\n"
    "    review:\n      reviewers: 1\n      lease: 15m\n      deadline: 1h\n",
    1,
)
assert REVIEW_SPEC != SPEC


def add_item(
    store: Store,
    *,
    prediction: str = "routine",
    reviewers: int = 1,
    reasons: tuple[str, ...] = ("sampled",),
    cohort: str | None = None,
    created_us: int | None = None,
    caller: Principal | None = None,
    version: int = 1,
    service: str = "claims",
) -> str:
    """One decided inference of *service* and its review item; returns the id."""
    ts = created_us if created_us is not None else now_us()
    other = "adjuster" if prediction == "routine" else "routine"
    record = inference_record(
        action="predict",
        service=service,
        version=version,
        status=200,
        decision="auto" if reasons == ("sampled",) else "escalated",
        payload={
            "input": dict(GOOD),
            "output": {"prediction": prediction, "probabilities": {prediction: 0.8, other: 0.2}},
        },
        ts_us=ts,
        latency_ms=1.0,
        confidence=0.8,
        caller=caller,
    )
    with store.write() as conn:
        log.append(store, conn, [record])
        conn.execute(
            review_items.insert().values(
                id=record.id,
                service=service,
                version=version,
                state="open",
                reasons=orjson.dumps(list(reasons)).decode(),
                cohort=cohort,
                decision=record.decision,
                prediction=orjson.dumps(prediction).decode(),
                reviewers=reviewers,
                created_us=ts,
                deadline_us=ts + 3_600_000_000,
            )
        )
    return record.id


def actions(store: Store, kind: str) -> list[dict[str, Any]]:
    """The audit records of action *kind*, oldest first."""
    with store.read() as conn:
        return [r for r in log.tail(conn, 100_000) if r["action"] == kind]
