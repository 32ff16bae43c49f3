"""Reading the review queue: items as reviewers see them, and who may judge them.

An item is one inference a person must (escalated) or may (sampled) judge; its row is
created by the recorder (:mod:`prodgate.pipeline.review_entry`) and changed only by
:mod:`prodgate.review.queue`. This module only reads: the listing, one item with the
inference behind it (input, answer, probabilities, confidence, explanation) and its
decisions so far, and the people separation of duties keeps away from an item.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit.record import KIND_INFERENCE
from prodgate.exceptions import UnknownReviewItemError, UsageError
from prodgate.identity.actor import Actor, same_person
from prodgate.registry.versions import get_version
from prodgate.spec import ServiceSpec
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import api_keys, audit_log, review_decisions, review_items

#: The states of an item: waiting for reviews, waiting for an adjudicator, decided.
OPEN, ADJUDICATION, DECIDED = "open", "adjudication", "decided"
STATES = (OPEN, ADJUDICATION, DECIDED)
#: The states a reviewer can still act on.
PENDING = (OPEN, ADJUDICATION)
#: The roles of a decision: a review, the adjudication of a disagreement, a skip.
REVIEW, ADJUDICATE, SKIP = "review", "adjudicate", "skip"
#: The most items one listing returns.
MAX_LIMIT = 1000
#: The longest reviewer name kept (the width of the columns that hold it).
MAX_NAME = 128


def reviewer_name(reviewer: str) -> str:
    """*reviewer* checked as a name to record; UsageError if it cannot be one."""
    name = reviewer.strip()
    if not name:
        raise UsageError("a review needs the reviewer's name: --by NAME")
    if not name.isprintable() or len(name) > MAX_NAME:
        raise UsageError(f"a reviewer's name must be 1 to {MAX_NAME} printable characters")
    return name


def accountable(reviewer: str) -> str:
    """The person answerable for *reviewer*'s acts: an agent's owner, else the reviewer."""
    return reviewer.person if isinstance(reviewer, Actor) else str(reviewer)


def _loads(text: str | None) -> Any:
    return orjson.loads(text) if text is not None else None


def as_dict(row: Any, now: int | None = None) -> dict[str, Any]:
    """An item row as the API and the CLI show it."""
    now = now if now is not None else now_us()
    m = row._mapping
    leased = m["claimed_by"] is not None and (m["lease_until_us"] or 0) >= now
    return {
        "id": m["id"],
        "service": m["service"],
        "version": m["version"],
        "state": m["state"],
        "reasons": _loads(m["reasons"]) or [],
        "cohort": m["cohort"],
        "decision": m["decision"],
        "prediction": _loads(m["prediction"]),
        "reviewers": m["reviewers"],
        "created_us": m["created_us"],
        "deadline_us": m["deadline_us"],
        "overdue": m["state"] != DECIDED
        and m["deadline_us"] is not None
        and m["deadline_us"] < now,
        "lease": {"claimed_by": m["claimed_by"], "until_us": m["lease_until_us"]}
        if leased
        else None,
        "final": _loads(m["final"]),
        "override": m["override"],
        "decided_us": m["decided_us"],
    }


def get_row(conn: Connection, item_id: str, *, lock: bool = False) -> Any:
    """An item's row (locked for the transaction with *lock*); 404 if there is none."""
    query = sa.select(review_items).where(review_items.c.id == item_id)
    if lock:
        query = query.with_for_update()  # PostgreSQL; SQLite's write lock covers it
    row = conn.execute(query).first() if "\x00" not in item_id else None
    if row is None:
        raise UnknownReviewItemError(f"no review item {item_id!r}")
    return row


def decisions(conn: Connection, item_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The decisions (reviews, adjudications, skips) on each of *item_ids*, in order."""
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in item_ids}
    if not item_ids:
        return out
    rows = conn.execute(
        sa.select(review_decisions)
        .where(review_decisions.c.item_id.in_(list(item_ids)))
        .order_by(review_decisions.c.id)
    ).all()
    for r in rows:
        out[r.item_id].append(
            {
                "reviewer": r.reviewer,
                "role": r.role,
                "label": _loads(r.label),
                "note": r.note,
                "claimed_us": r.claimed_us,
                "at_us": r.at_us,
            }
        )
    return out


def list_items(
    store: Store,
    service: str | None = None,
    *,
    state: str | None = None,
    reason: str | None = None,
    cohort: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Items oldest first; *state* None means those still pending (open or in
    adjudication). *reason* matches one of an item's reasons exactly."""
    if state is not None and state not in STATES:
        raise UsageError(f"state {state!r}: use one of {', '.join(STATES)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"limit {limit}: must be 1 to {MAX_LIMIT}")
    query = sa.select(review_items).order_by(review_items.c.created_us, review_items.c.id)
    if service is not None:
        query = query.where(review_items.c.service == service)
    query = query.where(review_items.c.state.in_([state] if state else PENDING))
    if reason is not None:
        # Reasons are kept as a JSON list: a reason matches as its JSON string, quotes
        # included, so "rule:a" does not match "rule:ab".
        query = query.where(review_items.c.reasons.contains(_json(reason), autoescape=True))
    if cohort is not None:
        query = query.where(review_items.c.cohort == cohort)
    now = now_us()
    with store.read() as conn:
        rows = conn.execute(query.limit(limit)).all()
    return [as_dict(r, now) for r in rows]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def show(store: Store, item_id: str) -> dict[str, Any]:
    """One item with what a reviewer needs to judge it: the input, the model's answer
    with its probabilities and confidence, why it is here, its cohort and version, the
    explanation when it has been computed, the decisions so far and the lease."""
    with store.read() as conn:
        row = get_row(conn, item_id)
        record = conn.execute(
            sa.select(audit_log.c.payload, audit_log.c.confidence, audit_log.c.ts_us).where(
                audit_log.c.id == item_id, audit_log.c.kind == KIND_INFERENCE
            )
        ).first()
        made = decisions(conn, [item_id])[item_id]
    payload = _loads(record.payload) if record is not None else {}
    item = as_dict(row)
    output = payload.get("output") or {}
    item.update(
        {
            "inference_id": item_id,
            "input": payload.get("input"),
            "output": output,
            "probabilities": output.get("probabilities") if isinstance(output, dict) else None,
            "confidence": record.confidence if record is not None else None,
            "attributions": _loads(row.attributions),
            "decisions": made,
        }
    )
    return item


class Duties:
    """Separation of duties on items: who registered each version, and who stands
    behind the request of each inference. Read once per batch of items."""

    def __init__(self, conn: Connection, service: ServiceSpec) -> None:
        self.conn = conn
        self.service = service
        self._registrants: dict[int, str] = {}

    def registrant(self, version: int | None) -> str | None:
        if version is None:
            return None
        if version not in self._registrants:
            self._registrants[version] = get_version(
                self.conn, self.service.name, version
            ).registrant
        return self._registrants[version]

    def requesters(self, item_ids: Iterable[str]) -> dict[str, set[str]]:
        """The people behind each inference's request: the key's identity recorded on
        the record and the key's owner (an agent's accountable person)."""
        ids = list(item_ids)
        rows = self.conn.execute(
            sa.select(audit_log.c.id, audit_log.c.actor, audit_log.c.payload).where(
                audit_log.c.id.in_(ids)
            )
        ).all()
        keys: dict[str, str] = {}
        out: dict[str, set[str]] = {i: set() for i in ids}
        for r in rows:
            if r.actor:
                out[r.id].add(same_person(r.actor))
            key = _loads(r.payload).get("key")
            if isinstance(key, str):
                keys[r.id] = key
        if keys:
            owners = dict(
                self.conn.execute(
                    sa.select(api_keys.c.id, api_keys.c.owner).where(
                        api_keys.c.id.in_(set(keys.values()))
                    )
                ).all()
            )
            for item_id, key in keys.items():
                if key in owners:
                    out[item_id].add(same_person(owners[key]))
        return out

    def refusal(self, row: Any, reviewer: str, requesters: set[str]) -> str | None:
        """Why *reviewer* may not judge the item of *row*, or None when they may."""
        if not self.service.review.separation_of_duties:
            return None
        who = same_person(accountable(reviewer))
        owned = (
            f"{reviewer} (owned by {accountable(reviewer)})" if who != same_person(reviewer) else ""
        )
        named = owned or str(reviewer)
        registrant = self.registrant(row.version)
        if registrant is not None and who == same_person(registrant):
            return (
                f"{named} registered version {row.version} of {row.service} and may not "
                "review its decisions (separation of duties)"
            )
        if who in requesters:
            return (
                f"{named} made the request behind inference {row.id} and may not review it "
                "(separation of duties)"
            )
        return None
