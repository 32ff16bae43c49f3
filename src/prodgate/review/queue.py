"""The review queue's life: claims with a lease, decisions, skips and adjudication.

This is the one module that changes ``review_items`` after the recorder created them
and the one writer of ``review_decisions``. Every act (claim, decide, skip, adjudicate,
and a refusal under separation of duties) is one audit record with the reviewer as
its actor.

Claims: a reviewer holds an item under a lease (the spec's ``review.lease``). Taking
one is a conditional UPDATE (``WHERE claimed_by IS NULL OR lease_until_us < now``)
whose row count says who won, so two reviewers, on any replicas and either store,
never hold the same item; a lease that runs out puts the item back in the queue.

Decisions: an item needs ``reviewers`` reviews from distinct people. When they agree,
their label is final; when they do not, the item waits for an adjudicator, someone who
did not review it, whose label is final. A final label becomes the inference's
feedback with source ``review`` (through :func:`prodgate.monitor.feedback.submit`, so
it feeds production metrics and canary checks like any truth), is recorded as an
override when it differs from the model's answer, and is POSTed to the service's
review webhook, best effort.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit import log
from prodgate.audit.record import KIND_REVIEW
from prodgate.exceptions import (
    ContractViolationError,
    ReviewRefused,
    StoreError,
    Violation,
)
from prodgate.identity.actor import same_person
from prodgate.monitor import feedback
from prodgate.monitor.webhooks import where
from prodgate.review.items import (
    ADJUDICATE,
    ADJUDICATION,
    DECIDED,
    OPEN,
    PENDING,
    REVIEW,
    SKIP,
    Duties,
    decisions,
    get_row,
    reviewer_name,
    show,
)
from prodgate.spec import ServiceSpec, Spec
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import feedback as feedback_table
from prodgate.store.tables import review_decisions, review_items

logger = logging.getLogger("prodgate.review")

#: Candidates looked at per round of ``next``; rounds before giving up on a busy queue.
BATCH = 20
ROUNDS = 20
#: Seconds a review webhook may take: it is told, not waited for.
WEBHOOK_TIMEOUT_S = 2.0
#: The fields of a decision's body besides the truth itself.
NOTE = "note"


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _audit(
    store: Store,
    conn: Connection,
    act: str,
    reviewer: str,
    row: Any,
    **details: Any,
) -> None:
    """One audit record of kind ``review`` (beside a service's governance history, as
    feedback is: a busy queue's claims and decisions would drown its approvals)."""
    record = log.action(
        act,
        actor=reviewer,
        service=row.service,
        version=row.version,
        item_id=row.id,
        inference_id=row.id,
        **details,
    )
    record.kind = KIND_REVIEW
    log.append(store, conn, [record])


def _lease_free(row: Any, reviewer: str, now: int) -> bool:
    """Whether *reviewer* may take *row*'s lease: nobody holds it, it ran out, or it is
    theirs already."""
    return (
        row.claimed_by is None
        or (row.lease_until_us or 0) < now
        or same_person(row.claimed_by) == same_person(reviewer)
    )


def _acted(made: list[dict[str, Any]], reviewer: str, roles: tuple[str, ...]) -> bool:
    who = same_person(reviewer)
    return any(same_person(d["reviewer"]) == who and d["role"] in roles for d in made)


def _take(conn: Connection, row: Any, reviewer: str, lease_s: float, now: int) -> int | None:
    """Take *row*'s lease unless someone else holds it now; the lease's end, or None
    when someone else won it first (the UPDATE's row count says so)."""
    c = review_items.c
    free = [c.claimed_by.is_(None), c.lease_until_us < now]
    if row.claimed_by is not None and same_person(row.claimed_by) == same_person(reviewer):
        free.append(c.claimed_by == row.claimed_by)  # theirs already: renewed
    until = now + int(lease_s * 1_000_000)
    taken = conn.execute(
        review_items.update()
        .where(c.id == row.id, c.state == row.state, sa.or_(*free))
        .values(claimed_by=str(reviewer), lease_until_us=until)
    )
    return until if taken.rowcount == 1 else None


def _refuse(
    store: Store, conn: Connection, reviewer: str, row: Any, act: str, problem: str
) -> None:
    """Record a refusal under separation of duties; the caller raises after commit."""
    _audit(store, conn, "review_refused", reviewer, row, attempted=act, reason=problem)


def _check_may_judge(
    conn: Connection, service: ServiceSpec, row: Any, reviewer: str, made: list[dict[str, Any]]
) -> tuple[str | None, bool]:
    """Why *reviewer* may not judge *row* (None if they may), and whether the reason is
    separation of duties (recorded as a refusal)."""
    if row.state == DECIDED:
        return f"review item {row.id} is decided already", False
    if _acted(made, reviewer, (REVIEW, ADJUDICATE)):
        if row.state == ADJUDICATION:
            return (
                f"{reviewer} reviewed item {row.id}; its disagreement needs another "
                "person to adjudicate",
                False,
            )
        return f"{reviewer} has already reviewed item {row.id}", False
    duties = Duties(conn, service)
    problem = duties.refusal(row, reviewer, duties.requesters([row.id])[row.id])
    return problem, problem is not None


def _may_not(
    store: Store,
    conn: Connection,
    service: ServiceSpec,
    row: Any,
    reviewer: str,
    made: list[dict[str, Any]],
    act: str,
    now: int,
) -> str | None:
    """Why *reviewer* may not *act* on *row* now (None when they may): the rules of
    :func:`_check_may_judge`, then someone else's lease. A refusal under separation
    of duties is recorded."""
    problem, duty = _check_may_judge(conn, service, row, reviewer, made)
    if problem is None and not _lease_free(row, reviewer, now):
        problem = f"review item {row.id} is claimed by {row.claimed_by} until its lease ends"
    if problem is not None and duty:
        _refuse(store, conn, reviewer, row, act, problem)
    return problem


def claim(store: Store, spec: Spec, item_id: str, reviewer: str) -> dict[str, Any]:
    """*reviewer* takes item *item_id* under a lease; refused (409) when someone else
    holds it, when it is decided, when they reviewed it already, or under separation of
    duties."""
    reviewer = _named(reviewer)
    refused: str | None = None
    with store.write() as conn:
        row = get_row(conn, item_id, lock=True)
        service = spec.service(row.service)
        now = now_us()
        made = decisions(conn, [row.id])[row.id]
        refused = _may_not(store, conn, service, row, reviewer, made, "claim", now)
        if refused is None:
            until = _take(conn, row, reviewer, service.review.lease_s, now)
            if until is None:  # lost to a concurrent claim
                refused = f"review item {row.id} was just claimed by someone else"
            else:
                _audit(store, conn, "review_claim", reviewer, row, lease_until_us=until)
    if refused is not None:
        raise ReviewRefused(refused)
    return show(store, item_id)


def claim_next(store: Store, service: ServiceSpec, reviewer: str) -> dict[str, Any] | None:
    """The oldest item of *service* that *reviewer* may judge, claimed under a lease;
    None when there is none.

    An item the reviewer holds already comes first; items they reviewed, skipped or may
    not judge (separation of duties) are passed over. Candidates are read, then taken
    one at a time by a conditional UPDATE; one taken by a concurrent reviewer in
    between is passed over too, and when a whole batch went that way another is read.
    """
    reviewer = _named(reviewer)
    c = review_items.c
    passed: list[str] = []  # items this reviewer may not judge: not read again
    for _ in range(ROUNDS):
        now = now_us()
        contested = False
        with store.write() as conn:
            rows = conn.execute(
                sa.select(review_items)
                .where(
                    c.service == service.name,
                    c.state.in_(PENDING),
                    c.id.not_in(passed) if passed else sa.true(),
                    sa.or_(
                        c.claimed_by.is_(None),
                        c.lease_until_us < now,
                        c.claimed_by == str(reviewer),
                    ),
                    ~sa.exists().where(
                        review_decisions.c.item_id == c.id,
                        review_decisions.c.reviewer == str(reviewer),
                    ),
                )
                .order_by(
                    # Theirs first (a CASE: a comparison with NULL sorts apart per store).
                    sa.case((c.claimed_by == str(reviewer), 0), else_=1),
                    c.created_us,
                    c.id,
                )
                .limit(BATCH)
            ).all()
            if not rows:
                return None
            made = decisions(conn, [r.id for r in rows])
            duties = Duties(conn, service)
            requesters = duties.requesters([r.id for r in rows])
            taken: str | None = None
            for row in rows:
                if _acted(made[row.id], reviewer, (REVIEW, ADJUDICATE, SKIP)) or (
                    duties.refusal(row, reviewer, requesters[row.id]) is not None
                ):  # acted on under another spelling of their name, or not theirs to judge
                    passed.append(row.id)
                    continue
                until = _take(conn, row, reviewer, service.review.lease_s, now)
                if until is None:
                    contested = True
                    continue
                _audit(store, conn, "review_claim", reviewer, row, lease_until_us=until, next=True)
                taken = row.id
                break
        if taken is not None:
            return show(store, taken)
        if not contested and len(rows) < BATCH:
            return None
    return None


def skip(store: Store, item_id: str, reviewer: str) -> dict[str, Any]:
    """*reviewer* passes on an item: their lease (if they hold it) is released and
    ``next`` does not hand them the item again."""
    reviewer = _named(reviewer)
    with store.write() as conn:
        row = get_row(conn, item_id, lock=True)
        if row.state == DECIDED:
            raise ReviewRefused(f"review item {row.id} is decided already")
        now = now_us()
        made = decisions(conn, [row.id])[row.id]
        if not _acted(made, reviewer, (SKIP,)):
            conn.execute(
                review_decisions.insert().values(
                    item_id=row.id,
                    reviewer=str(reviewer),
                    role=SKIP,
                    label=None,
                    note="",
                    claimed_us=None,
                    at_us=now,
                )
            )
        released = row.claimed_by is not None and same_person(row.claimed_by) == same_person(
            reviewer
        )
        if released:
            conn.execute(
                review_items.update()
                .where(review_items.c.id == row.id)
                .values(claimed_by=None, lease_until_us=None)
            )
        _audit(store, conn, "review_skip", reviewer, row, released=released)
    return {"id": item_id, "skipped": True, "released": released}


def truth(service: ServiceSpec, body: Any) -> tuple[Any, dict[str, Any], str]:
    """A decision's body checked: (the label or value as stored, the feedback body it
    makes, the note). The truth follows feedback's rules exactly (a classifier's
    ``label``, a regressor's ``value``, an LLM answer's ``label``, ``score`` or
    ``correct``); ``source`` and ``observed_at`` are the review's own, not the body's."""
    if not isinstance(body, dict):
        raise ContractViolationError([Violation("", 'send {"label": ...} or {"value": ...}')])
    given = {k: v for k, v in body.items() if k != NOTE}
    violations = [
        Violation(f"/{k}", "unknown field") for k in sorted({"source", "observed_at"} & set(given))
    ]
    note = body.get(NOTE, "")
    if note is None:
        note = ""
    if not isinstance(note, str) or "\x00" in note or len(note) > 10_000:
        violations.append(Violation("/note", "must be text of at most 10,000 characters"))
    try:
        value, _, _ = feedback.parse(given, service)
    except ContractViolationError as exc:
        violations = exc.violations + violations
    if violations:
        raise ContractViolationError(violations)
    return value, {**given, "source": "review"}, note


def _is_override(service: ServiceSpec, prediction: Any, final: Any) -> bool | None:
    """Whether the final label differs from the model's answer (None: not comparable,
    e.g. a score given to an LLM answer)."""
    if service.kind == "classifier":
        return bool(service.as_label(prediction) != final)
    if service.kind == "llm":
        if "label" in final:
            return bool(service.as_label(prediction) != final["label"])
        if "correct" in final:
            return bool(str(prediction).strip() != str(final["correct"]).strip())
        return None
    return bool(prediction != final)


#: How a decided item's event reaches the service's webhook: given the service and
#: the event, returns what became of it (``sent``, ``failed``, ``queued``) or None.
Notify = Callable[[ServiceSpec, dict[str, Any]], str | None]


def decide(
    store: Store,
    spec: Spec,
    item_id: str,
    reviewer: str,
    body: Any,
    *,
    notify: Notify | None = None,
) -> dict[str, Any]:
    """*reviewer*'s decision on an item: ``{"label": L}`` (or ``value``, or an LLM
    answer's ``label``/``score``/``correct``) and an optional ``note``.

    The reviewer must hold the item's lease, or take it now if nobody holds it. The
    result says what became of the item: ``open`` (more reviews needed),
    ``adjudication`` (the reviews disagree) or ``decided`` with the final label, the
    override flag and what happened to the feedback and the webhook.
    """
    reviewer = _named(reviewer)
    with store.read() as conn:
        service = spec.service(get_row(conn, item_id).service)
    value, truth_body, note = truth(service, body)
    refused: str | None = None
    outcome: dict[str, Any] = {}
    try:
        with store.write() as conn:
            row = get_row(conn, item_id, lock=True)
            now = now_us()
            made = decisions(conn, [row.id])[row.id]
            refused = _may_not(store, conn, service, row, reviewer, made, "decide", now)
            if refused is None:
                outcome = _record(store, conn, service, row, reviewer, value, note, made, now)
                if outcome["state"] == DECIDED:
                    outcome["feedback"] = _feedback(store, conn, spec, item_id, truth_body)
    except StoreError as exc:
        if isinstance(exc.__cause__, sa.exc.IntegrityError):  # the unique constraint
            raise ReviewRefused(f"{reviewer} has already reviewed item {item_id}") from None
        raise
    if refused is not None:
        raise ReviewRefused(refused)
    if outcome["state"] == DECIDED:
        event = {"event": "review.decided", **{k: v for k, v in outcome.items() if k != "feedback"}}
        outcome["webhook"] = (notify or _post)(service, event)
    return outcome


def _record(
    store: Store,
    conn: Connection,
    service: ServiceSpec,
    row: Any,
    reviewer: str,
    value: Any,
    note: str,
    made: list[dict[str, Any]],
    now: int,
) -> dict[str, Any]:
    """Store one decision and move the item on; its audit record says where to."""
    role = ADJUDICATE if row.state == ADJUDICATION else REVIEW
    held = row.claimed_by is not None and same_person(row.claimed_by) == same_person(reviewer)
    claimed = (row.lease_until_us - int(service.review.lease_s * 1_000_000)) if held else now
    conn.execute(
        review_decisions.insert().values(
            item_id=row.id,
            reviewer=str(reviewer),
            role=role,
            label=_json(value),
            note=note,
            claimed_us=claimed,
            at_us=now,
        )
    )
    labels = [d["label"] for d in made if d["role"] == REVIEW] + [value]
    final: Any = None
    if role == ADJUDICATE:
        state, final = DECIDED, value
    elif len(labels) < row.reviewers:
        state = OPEN
    elif all(label == labels[0] for label in labels):
        state, final = DECIDED, value
    else:
        state = ADJUDICATION
    changes: dict[str, Any] = {"state": state, "claimed_by": None, "lease_until_us": None}
    override = None
    if state == DECIDED:
        override = _is_override(service, orjson.loads(row.prediction or "null"), final)
        changes.update(final=_json(final), override=override, decided_us=now)
    conn.execute(review_items.update().where(review_items.c.id == row.id).values(**changes))
    _audit(
        store,
        conn,
        "review_adjudicate" if role == ADJUDICATE else "review_decide",
        reviewer,
        row,
        label=value,
        note=note,
        state=state,
        reviews=len(labels) if role == REVIEW else len(labels) - 1,
        needed=row.reviewers,
        final=final,
        override=override,
    )
    return {
        "id": row.id,
        "inference_id": row.id,
        "service": row.service,
        "version": row.version,
        "reviewer": str(reviewer),
        "role": role,
        "label": value,
        "state": state,
        "final": final,
        "override": override,
        "reasons": orjson.loads(row.reasons),
        "cohort": row.cohort,
        "decided_us": now if state == DECIDED else None,
        "reviewers": sorted({d["reviewer"] for d in made if d["role"] != SKIP} | {str(reviewer)}),
    }


def _feedback(
    store: Store, conn: Connection, spec: Spec, item_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """The final label as the inference's feedback (source ``review``), in the
    decision's transaction; feedback that came first from elsewhere is kept, and the
    answer says so."""
    existing = conn.execute(
        sa.select(feedback_table.c.source).where(feedback_table.c.inference_id == item_id)
    ).scalar()
    if existing is None:
        try:
            with conn.begin_nested():  # feedback posted meanwhile keeps the decision
                feedback.write(store, conn, spec, item_id, body)
        except sa.exc.IntegrityError:
            existing = "another source, meanwhile"
        else:
            return {"written": True, "source": "review"}
    return {
        "written": False,
        "source": existing,
        "detail": f"the inference already had feedback from {existing!r}; it is kept",
    }


def _post(service: ServiceSpec, event: dict[str, Any]) -> str | None:
    """POST the event to the service's review webhook, if it has one, now: one try
    with a short timeout (the command line's way; the server queues it for delivery
    with retries instead). A failure is logged (scheme and host only: webhook URLs
    carry tokens), never the decision's failure. Returns ``sent``, ``failed`` or None."""
    url = service.review.webhook
    if not url:
        return None
    try:
        response = httpx.post(
            url,
            content=orjson.dumps(event),
            headers={"content-type": "application/json", "user-agent": "prodgate-review"},
            timeout=WEBHOOK_TIMEOUT_S,
            follow_redirects=False,
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        logger.warning(
            "review webhook %s failed for item %s: %s",
            where(url),
            event["id"],
            type(exc).__name__,
        )
        return "failed"
    return "sent"


def _named(reviewer: str) -> str:
    """The reviewer checked, kept as given when it is an Actor (its origin is recorded)."""
    name = reviewer_name(reviewer)
    return reviewer if name == reviewer else name
