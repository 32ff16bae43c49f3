"""Review items and decisions written straight into the store, with their inference
records in the audit log, for the tests of review statistics, export and reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from prodgate import spec as spec_module
from prodgate.audit import log
from prodgate.pipeline.records import inference_record
from prodgate.settings import Settings
from prodgate.spec import Spec
from prodgate.store.engine import Store
from prodgate.store.tables import audit_log, review_decisions, review_items
from test_evaluation_store import SPEC as EVALUATION_SPEC

REVIEW = """\
    review:
      sample: 5%
      sample_cohorts: {large: 20%}
      rules: [{name: huge, where: "amount >= 20000", reviewers: 2}]
      deadline: 1h
"""
#: The evaluation tests' ``claims`` service, with a review section.
SPEC = EVALUATION_SPEC + REVIEW
#: The tests' clock: a fixed "now", in microseconds.
NOW = 1_900_000_000_000_000
HOUR = 3_600_000_000


def load_spec(settings: Settings, text: str = SPEC) -> Spec:
    Path(settings.config).write_text(text)
    return spec_module.load(settings.config)


@dataclass
class Item:
    """One inference and its review item as a test states them."""

    input: dict[str, Any]
    prediction: str
    confidence: float = 0.9
    decision: str = "auto"
    reasons: Sequence[str] = ("sampled",)
    cohort: str | None = None
    reviews: Mapping[str, str] = field(default_factory=dict)
    adjudication: tuple[str, str] | None = None  # (adjudicator, label)
    final: str | None = None  # default: the one label all reviews agree on
    state: str | None = None  # default: decided when a final is known, else open
    created_us: int = NOW - 2 * HOUR
    deadline_us: int | None = None  # default: created + 1h
    decided_us: int | None = None  # default: created + 10 minutes
    claimed_by: str | None = None
    lease_until_us: int | None = None
    version: int = 1


def add(store: Store, items: Sequence[Item], service: str = "claims") -> list[tuple[str, int]]:
    """Record *items* (inference records, review items, decisions); their (id, seq)."""
    records = []
    for item in items:
        p = item.confidence if item.prediction == "adjuster" else 1 - item.confidence
        records.append(
            inference_record(
                action="predict",
                service=service,
                version=item.version,
                status=200,
                decision=item.decision,
                payload={
                    "input": item.input,
                    "output": {
                        "prediction": item.prediction,
                        "probabilities": {"routine": 1 - p, "adjuster": p},
                    },
                },
                ts_us=item.created_us,
                latency_ms=1.0,
                confidence=item.confidence,
            )
        )
    with store.write() as conn:
        log.append(store, conn, records)
        seqs = dict(
            conn.execute(
                sa.select(audit_log.c.id, audit_log.c.seq).where(
                    audit_log.c.id.in_([r.id for r in records])
                )
            ).all()
        )
        for record, item in zip(records, items, strict=True):
            final = item.final
            if final is None and item.adjudication is not None:
                final = item.adjudication[1]
            if final is None and item.reviews and len(set(item.reviews.values())) == 1:
                final = next(iter(item.reviews.values()))
            state = item.state or ("decided" if final is not None else "open")
            decided = state == "decided"
            conn.execute(
                review_items.insert().values(
                    id=record.id,
                    service=service,
                    version=item.version,
                    state=state,
                    reasons=orjson.dumps(list(item.reasons)).decode(),
                    cohort=item.cohort,
                    decision=item.decision,
                    prediction=orjson.dumps(item.prediction).decode(),
                    reviewers=max(1, len(item.reviews)),
                    created_us=item.created_us,
                    deadline_us=item.deadline_us
                    if item.deadline_us is not None
                    else item.created_us + HOUR,
                    claimed_by=item.claimed_by,
                    lease_until_us=item.lease_until_us,
                    final=orjson.dumps(final).decode() if decided else None,
                    override=(final != item.prediction) if decided else None,
                    decided_us=(item.decided_us or item.created_us + HOUR // 6)
                    if decided
                    else None,
                )
            )
            acts = [(who, "review", label) for who, label in item.reviews.items()]
            if item.adjudication is not None:
                acts.append((item.adjudication[0], "adjudicate", item.adjudication[1]))
            for i, (who, role, label) in enumerate(acts):
                conn.execute(
                    review_decisions.insert().values(
                        item_id=record.id,
                        reviewer=who,
                        role=role,
                        label=orjson.dumps(label).decode(),
                        note="",
                        claimed_us=item.created_us,
                        at_us=item.created_us + i + 1,
                    )
                )
    return [(r.id, int(seqs[r.id])) for r in records]


def row(amount: float, category: str = "auto", count: int | None = 1) -> dict[str, Any]:
    return {"amount": amount, "category": category, "count": count}
