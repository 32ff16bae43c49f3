"""The review queue on both stores: leases, decisions, adjudication, duties, feedback."""

from __future__ import annotations

import http.server
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway_support import register_and_approve, write_spec
from prodgate import spec as spec_module
from prodgate.exceptions import (
    ContractViolationError,
    ReviewRefused,
    UnknownReviewItemError,
    UsageError,
)
from prodgate.identity import keys
from prodgate.identity.actor import Actor, Origin
from prodgate.identity.keyring import Principal
from prodgate.monitor import feedback
from prodgate.monitor.production import production_metrics
from prodgate.review import items, queue
from prodgate.settings import Settings
from prodgate.spec import Spec
from prodgate.store.engine import Store, now_us, open_store
from prodgate.store.tables import feedback as feedback_table
from prodgate.store.tables import review_decisions
from review_support import REVIEW_SPEC, actions, add_item


@pytest.fixture
def spec(settings: Settings, store: Store) -> Spec:
    """The review spec, with version 1 of claims registered by ``tester``."""
    write_spec(settings, REVIEW_SPEC)
    register_and_approve(settings)
    return spec_module.load(settings.config)


def with_review(spec: Spec, **changes: Any) -> Spec:
    """*spec* with the claims service's review policy changed."""
    import dataclasses

    service = spec.services["claims"]
    review = dataclasses.replace(service.review, **changes)
    services = {**spec.services, "claims": dataclasses.replace(service, review=review)}
    return dataclasses.replace(spec, services=services)


def test_next_claims_the_oldest_and_another_reviewer_gets_the_next(
    store: Store, spec: Spec
) -> None:
    first = add_item(store, created_us=now_us() - 2000)
    second = add_item(store, created_us=now_us() - 1000)
    claims = spec.service("claims")
    got = queue.claim_next(store, claims, "alice")
    assert got is not None
    assert got["id"] == first
    assert got["lease"]["claimed_by"] == "alice"
    assert got["input"]["category"] == "auto"
    assert got["probabilities"] == {"routine": 0.8, "adjuster": 0.2}
    assert got["confidence"] == 0.8
    assert got["reasons"] == ["sampled"]
    # Asked again, alice gets the item she holds; bob gets the other; then none is left.
    again = queue.claim_next(store, claims, "alice")
    assert again is not None
    assert again["id"] == first
    bob = queue.claim_next(store, claims, "bob")
    assert bob is not None
    assert bob["id"] == second
    assert queue.claim_next(store, claims, "carol") is None
    assert [a["actor"] for a in actions(store, "review_claim")] == ["alice", "alice", "bob"]


def test_listing_filters_and_orders_oldest_first(store: Store, spec: Spec) -> None:
    old = add_item(store, created_us=now_us() - 5000, reasons=("rule:high-value",), cohort="big")
    new = add_item(store, created_us=now_us() - 1000, reasons=("low_confidence", "sampled"))
    assert [i["id"] for i in items.list_items(store, "claims")] == [old, new]
    assert [i["id"] for i in items.list_items(store, reason="sampled")] == [new]
    assert [i["id"] for i in items.list_items(store, reason="rule:high")] == []
    assert [i["id"] for i in items.list_items(store, cohort="big")] == [old]
    assert [i["id"] for i in items.list_items(store, limit=1)] == [old]
    assert items.list_items(store, "claims", state="decided") == []
    with pytest.raises(UsageError):
        items.list_items(store, state="closed")
    with pytest.raises(UnknownReviewItemError):
        items.show(store, "nope")


def test_two_reviewers_claiming_concurrently_never_get_the_same_item(
    settings: Settings, store: Store, spec: Spec
) -> None:
    ids = {add_item(store, created_us=now_us() - 100_000 + i) for i in range(50)}
    claims = spec.service("claims")
    got: dict[str, list[str]] = {"alice": [], "bob": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(reviewer: str) -> None:
        own = open_store(settings)  # a store (and pool) per reviewer, as two processes
        try:
            start.wait()
            while (item := queue.claim_next(own, claims, reviewer)) is not None:
                got[reviewer].append(item["id"])
                queue.decide(own, spec, item["id"], reviewer, {"label": "routine"})
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=work, args=(r,)) for r in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not set(got["alice"]) & set(got["bob"])
    assert set(got["alice"]) | set(got["bob"]) == ids
    assert len(got["alice"]) + len(got["bob"]) == 50
    with store.read() as conn:
        per_item = Counter(conn.execute(sa.select(review_decisions.c.item_id)).scalars())
    assert set(per_item) == ids
    assert set(per_item.values()) == {1}
    assert len(actions(store, "review_claim")) == 50


def test_an_expired_lease_returns_the_item(
    store: Store, spec: Spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = add_item(store)
    claims = spec.service("claims")
    assert queue.claim_next(store, claims, "alice") is not None
    assert queue.claim_next(store, claims, "bob") is None
    with pytest.raises(ReviewRefused, match="claimed by alice"):
        queue.claim(store, spec, item, "bob")
    later = now_us() + int(claims.review.lease_s * 1_000_000) + 1_000_000
    monkeypatch.setattr(queue, "now_us", lambda: later)
    got = queue.claim_next(store, claims, "bob")
    assert got is not None
    assert got["id"] == item
    with pytest.raises(ReviewRefused, match="claimed by bob"):
        queue.decide(store, spec, item, "alice", {"label": "routine"})
    decided = queue.decide(store, spec, item, "bob", {"label": "routine"})
    assert decided["state"] == "decided"


def test_a_reviewer_cannot_review_twice(store: Store, spec: Spec) -> None:
    item = add_item(store, reviewers=2)
    first = queue.decide(store, spec, item, "alice", {"label": "routine", "note": "clear"})
    assert first["state"] == "open"
    assert first["final"] is None
    with pytest.raises(ReviewRefused, match="already reviewed") as refused:
        queue.decide(store, spec, item, "Alice ", {"label": "routine"})
    assert refused.value.status == 409
    with pytest.raises(ReviewRefused, match="already reviewed"):
        queue.claim(store, spec, item, "alice")
    assert queue.claim_next(store, spec.service("claims"), "alice") is None
    shown = items.show(store, item)
    assert [(d["reviewer"], d["role"], d["note"]) for d in shown["decisions"]] == [
        ("alice", "review", "clear")
    ]


def test_disagreement_goes_to_an_adjudicator_whose_label_is_final(store: Store, spec: Spec) -> None:
    item = add_item(store, reviewers=2, prediction="routine")
    queue.decide(store, spec, item, "alice", {"label": "routine"})
    split = queue.decide(store, spec, item, "bob", {"label": "adjuster"})
    assert split["state"] == "adjudication"
    assert split["final"] is None
    assert [i["id"] for i in items.list_items(store, state="adjudication")] == [item]
    claims = spec.service("claims")
    assert queue.claim_next(store, claims, "alice") is None
    with pytest.raises(ReviewRefused, match="another person to adjudicate"):
        queue.claim(store, spec, item, "bob")
    got = queue.claim_next(store, claims, "carol")
    assert got is not None
    assert got["state"] == "adjudication"
    final = queue.decide(store, spec, item, "carol", {"label": "adjuster"})
    assert final["role"] == "adjudicate"
    assert (final["state"], final["final"], final["override"]) == ("decided", "adjuster", True)
    assert final["feedback"] == {"written": True, "source": "review"}
    shown = items.show(store, item)
    assert [d["role"] for d in shown["decisions"]] == ["review", "review", "adjudicate"]
    assert shown["override"] is True
    assert shown["final"] == "adjuster"
    assert [a["actor"] for a in actions(store, "review_adjudicate")] == ["carol"]
    assert [a["state"] for a in actions(store, "review_decide")] == ["open", "adjudication"]


def test_agreeing_reviewers_decide_without_adjudication(store: Store, spec: Spec) -> None:
    item = add_item(store, reviewers=2, prediction="adjuster")
    queue.decide(store, spec, item, "alice", {"label": "adjuster"})
    final = queue.decide(store, spec, item, "bob", {"label": 1})  # by position
    assert (final["state"], final["final"], final["override"]) == ("decided", "adjuster", False)
    assert final["reviewers"] == ["alice", "bob"]


def test_separation_of_duties_keeps_registrant_and_requester_away(store: Store, spec: Spec) -> None:
    claims = spec.service("claims")
    registered = add_item(store)
    # An agent's key, owned by dana, made the request behind this one.
    issued = keys.create(
        store, "triage-bot", scopes=["predict:claims"], actor="tester", owner="dana", agent=True
    )
    bot = Principal(issued.key.id, "triage-bot", "dana", ("predict:claims",), True)
    requested = add_item(store, caller=bot, created_us=now_us() + 1)
    with pytest.raises(ReviewRefused, match="registered version 1"):
        queue.claim(store, spec, registered, "Tester")
    with pytest.raises(ReviewRefused, match="made the request"):
        queue.decide(store, spec, requested, "dana", {"label": "routine"})
    # dana's own review agent is dana, for separation of duties.
    agent = Actor("review-bot", Origin("admin-api", owner="dana", agent=True))
    with pytest.raises(ReviewRefused, match="owned by dana"):
        queue.claim(store, spec, requested, agent)
    got = queue.claim_next(store, claims, "dana")
    assert got is not None
    assert got["id"] == registered
    assert queue.claim_next(store, claims, "tester") is None  # registered the version
    refusals = actions(store, "review_refused")
    assert [(r["actor"], r["attempted"]) for r in refusals] == [
        ("Tester", "claim"),
        ("dana", "decide"),
        ("review-bot", "claim"),
    ]
    # Without separation of duties, the registrant may review.
    relaxed = with_review(spec, separation_of_duties=False)
    third = add_item(store, created_us=now_us() + 2)
    assert queue.decide(store, relaxed, third, "tester", {"label": "routine"})["state"] == (
        "decided"
    )


def test_next_looks_past_more_items_than_a_batch_that_are_not_the_reviewers(
    store: Store, spec: Spec
) -> None:
    """dana's agent made the oldest requests (more than one read's worth): next passes
    over them all and finds the item she may judge."""
    issued = keys.create(
        store, "triage-bot", scopes=["predict:claims"], actor="tester", owner="dana", agent=True
    )
    bot = Principal(issued.key.id, "triage-bot", "dana", ("predict:claims",), True)
    start = now_us()
    for i in range(queue.BATCH + 5):
        add_item(store, caller=bot, created_us=start + i)
    hers = add_item(store, created_us=start + queue.BATCH + 10)
    got = queue.claim_next(store, spec.service("claims"), "dana")
    assert got is not None
    assert got["id"] == hers


def test_the_final_label_is_feedback_from_review_and_counts_in_production_metrics(
    store: Store, spec: Spec
) -> None:
    item = add_item(store, prediction="routine")
    result = queue.decide(store, spec, item, "alice", {"label": "adjuster", "note": "large"})
    assert result["override"] is True
    with store.read() as conn:
        row = conn.execute(
            sa.select(feedback_table).where(feedback_table.c.inference_id == item)
        ).one()
    assert (row.source, row.value) == ("review", '"adjuster"')
    report = production_metrics(store, spec.service("claims"), 3600)
    (version,) = report["versions"]
    assert version["quality"] is not None
    assert version["quality"]["rows"] == 1
    assert version["quality"]["metrics"]["accuracy"] == 0.0  # the model said routine
    decided = actions(store, "review_decide")
    assert decided[-1]["final"] == "adjuster"
    assert decided[-1]["override"] is True
    assert actions(store, "feedback")[-1]["actor"] == "review"


def test_feedback_from_elsewhere_is_kept_and_the_result_says_so(store: Store, spec: Spec) -> None:
    item = add_item(store)
    feedback.submit(store, spec, item, {"label": "routine", "source": "claims-desk"})
    result = queue.decide(store, spec, item, "alice", {"label": "adjuster"})
    assert result["state"] == "decided"
    assert result["feedback"]["written"] is False
    assert result["feedback"]["source"] == "claims-desk"
    with store.read() as conn:
        source = conn.execute(sa.select(feedback_table.c.source)).scalar_one()
    assert source == "claims-desk"


def test_skip_releases_the_lease_and_next_passes_the_item_over(store: Store, spec: Spec) -> None:
    item = add_item(store)
    claims = spec.service("claims")
    assert queue.claim_next(store, claims, "alice") is not None
    assert queue.skip(store, item, "alice") == {"id": item, "skipped": True, "released": True}
    assert queue.claim_next(store, claims, "alice") is None
    assert queue.skip(store, item, "alice")["released"] is False  # twice: still fine
    got = queue.claim_next(store, claims, "bob")
    assert got is not None
    assert got["id"] == item
    # A skip is no review: alice may still take it by id and decide.
    queue.skip(store, item, "bob")
    assert queue.decide(store, spec, item, "alice", {"label": "routine"})["state"] == "decided"
    with pytest.raises(ReviewRefused, match="decided already"):
        queue.skip(store, item, "carol")
    assert [a["actor"] for a in actions(store, "review_skip")] == ["alice", "alice", "bob"]


def test_bad_decisions_are_refused_with_every_violation(store: Store, spec: Spec) -> None:
    item = add_item(store)
    with pytest.raises(ContractViolationError) as bad:
        queue.decide(store, spec, item, "alice", {"label": "maybe", "source": "me", "note": 3})
    paths = sorted(v.path for v in bad.value.violations)
    assert paths == ["/label", "/note", "/source"]
    with pytest.raises(ContractViolationError):
        queue.decide(store, spec, item, "alice", ["routine"])
    with pytest.raises(UsageError):
        queue.decide(store, spec, item, "  ", {"label": "routine"})
    with pytest.raises(UnknownReviewItemError):
        queue.decide(store, spec, "f" * 32, "alice", {"label": "routine"})
    assert items.show(store, item)["decisions"] == []


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_the_webhook_is_told_and_a_dead_one_fails_nothing(
    store: Store, spec: Spec, receiver: str, tmp_path: Path
) -> None:
    import orjson

    item = add_item(store)
    told = queue.decide(store, with_review(spec, webhook=receiver), item, "alice", {"label": 0})
    assert told["webhook"] == "sent"
    (body,) = _Receiver.bodies
    event = orjson.loads(body)
    assert (event["event"], event["id"], event["final"]) == ("review.decided", item, "routine")
    other = add_item(store)
    dead = with_review(spec, webhook="http://127.0.0.1:9/hook")
    result = queue.decide(store, dead, other, "alice", {"label": "routine"})
    assert (result["state"], result["webhook"]) == ("decided", "failed")
