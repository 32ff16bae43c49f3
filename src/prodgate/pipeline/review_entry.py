"""What enters review, decided on the request path, and its items, created in the
recorder's group commit.

The decide stage hands each answered row's record to :meth:`Entry.mark`, which
applies the service's ``review:`` policy (:mod:`prodgate.spec.review`) in memory:

- a decision escalated already (``low_confidence``: below the service's confidence
  threshold; ``guard``: a rail's ``escalate``) enters;
- a rule whose ``where`` holds on the row the model saw (``rule:NAME``) escalates the
  decision and enters it, with as many reviewers as the most demanding rule asks;
- a sample does (``sampled``): a hash of the service and the inference id against the
  rate of the row's sampling cohort (the first ``sample_cohorts`` entry whose ``where``
  holds) or the service's rate. The id decides, so every replica, and any later
  recount, draws the same sample, and over many ids the share converges on the rate.

An inference enters once whatever the number of reasons; they are all listed. The
mark is ``payload["review"]`` on the inference's own audit record, which is the
record of its entry: ``{"reasons", "cohort", "reviewers", "deadline_us"}``. The
recorder then writes one ``review_items`` row per marked record in the same
transaction as the records (:func:`enter`), so review costs the request path no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.pipeline.decision import ESCALATED
from prodgate.spec import ServiceSpec
from prodgate.spec.cohorts import Condition
from prodgate.store.engine import insert_many
from prodgate.store.tables import review_items

REVIEW = "review"  # the payload key of the mark
LOW_CONFIDENCE, GUARD, SAMPLED = "low_confidence", "guard", "sampled"
RULE = "rule:"
OPEN = "open"
_SCALE = float(1 << 64)


def draw(service: str, inference_id: str) -> float:
    """The inference's place in [0, 1): a hash of the service and id, the same on every
    replica. An inference is sampled at rate r when its place is below r."""
    digest = hashlib.blake2b(f"{service}\x00{inference_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


class Entry:
    """One service's review policy, applied to its decisions in memory."""

    def __init__(self, service: ServiceSpec) -> None:
        self.name = service.name
        self.spec = service.review
        self.on = self.spec.on
        self.threshold = service.escalation_below
        self._cohorts: list[tuple[str, Condition]] = [
            (c.name, c.where) for c in service.policy.cohorts if c.where is not None
        ]
        self._deadline_us = int(self.spec.deadline_s * 1_000_000)

    def mark(self, records: Sequence[Record]) -> int:
        """Mark the answered records that enter review; how many a rule escalated."""
        if not self.on:
            return 0
        escalated = 0
        spec = self.spec
        for record in records:
            reasons: list[str] = []
            if record.decision == ESCALATED:
                reasons.append(LOW_CONFIDENCE if self._unsure(record.confidence) else GUARD)
            payload = record.payload
            row = payload.get("input")
            row = row if isinstance(row, dict) else {}
            reviewers = spec.reviewers
            for rule in spec.rules:
                if rule.where.matches(row):
                    reasons.append(RULE + rule.name)
                    reviewers = max(reviewers, rule.reviewers)
            if reasons and record.decision != ESCALATED:
                record.decision = ESCALATED
                escalated += 1
            stratum, rate = None, spec.sample
            for name, condition, cohort_rate in spec.sample_cohorts:
                if condition.matches(row):
                    stratum, rate = name, cohort_rate
                    break
            if rate > 0 and draw(self.name, record.id) < rate:
                reasons.append(SAMPLED)
            if not reasons:
                continue
            cohort = stratum or self._cohort(row)
            payload[REVIEW] = {
                "reasons": reasons,
                "cohort": cohort,
                "reviewers": reviewers,
                "deadline_us": record.ts_us + self._deadline_us,
            }
        return escalated

    def _unsure(self, confidence: float | None) -> bool:
        """Whether the confidence threshold escalated a decision (else a guard did)."""
        return self.threshold is not None and confidence is not None and confidence < self.threshold

    def _cohort(self, row: dict[str, Any]) -> str | None:
        """The first of the service's ``where`` cohorts the row belongs to."""
        for name, where in self._cohorts:
            if where.matches(row):
                return name
        return None


def item_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """The ``review_items`` rows of the marked inference records among *records*."""
    rows = []
    for r in records:
        mark = r.payload.get(REVIEW) if r.kind == KIND_INFERENCE else None
        if not isinstance(mark, dict):
            continue
        output = r.payload.get("output")
        prediction = output.get("prediction") if isinstance(output, dict) else None
        rows.append(
            {
                "id": r.id,
                "service": r.service or "",
                "version": r.version,
                "state": OPEN,
                "reasons": orjson.dumps(mark.get("reasons", [])).decode(),
                "cohort": mark.get("cohort"),
                "decision": r.decision or "",
                "prediction": orjson.dumps(prediction).decode(),
                "reviewers": int(mark.get("reviewers", 1)),
                "created_us": r.ts_us,
                "deadline_us": mark.get("deadline_us"),
                "claimed_by": None,
                "lease_until_us": None,
                "final": None,
                "override": None,
                "decided_us": None,
                "attributions": None,
            }
        )
    return rows


def enter(conn: Connection, records: Sequence[Record], *, replay: bool = False) -> int:
    """Create the items of *records* inside the caller's transaction (the recorder's
    group commit); on a journal's *replay*, only those not created before. How many."""
    rows = item_rows(records)
    if rows and replay:
        ids = [row["id"] for row in rows]
        present = set(
            conn.execute(sa.select(review_items.c.id).where(review_items.c.id.in_(ids))).scalars()
        )
        rows = [row for row in rows if row["id"] not in present]
    insert_many(conn, review_items, rows)
    return len(rows)
