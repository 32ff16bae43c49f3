"""Feedback on LLM answers (SQLite and PostgreSQL): a label, a score or the correct
answer; graded against the answer on arrival, stored with its verdict, and refused
with every violation listed, through the library and over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from gateway_support import running, write_spec
from prodgate import spec as spec_module
from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.exceptions import ConflictError, ContractViolationError, UnknownInferenceError
from prodgate.monitor import feedback
from prodgate.settings import Settings
from prodgate.spec import Spec
from prodgate.store.engine import Store, now_us, open_store
from prodgate.store.tables import audit_log
from prodgate.store.tables import feedback as feedback_table

SPEC = """\
providers:
  mock:
    base_url: http://127.0.0.1:9/v1
    models: {large: {input: 5, output: 15}}
services:
  letters:
    owner: {name: Ops, contact: ops@example.com}
    kind: llm
    labels: [complaint, new_claim, status, fraud]
    contract:
      input: {type: object, properties: {message: {type: string}}, required: [message]}
      output:
        type: object
        properties:
          category: {enum: [complaint, new_claim, status, fraud]}
          reply: {type: string}
  drafts:
    owner: {name: Ops, contact: ops@example.com}
    kind: llm
    contract:
      input: {type: object, properties: {message: {type: string}}}
  claims:
    owner: {name: Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input: {type: object, properties: {x: {type: number}}}
"""

CLASSIFIED = {"text": '{"category": "fraud", "reply": "We will look."}'}
CLASSIFIED["parsed"] = orjson.loads(CLASSIFIED["text"])


@pytest.fixture
def spec() -> Spec:
    return spec_module.parse(SPEC, Path("prodgate.yaml"))


def answer(store: Store, service: str = "letters", output: Any = None, *, status: int = 200) -> str:
    """An LLM answer in the audit log; its id."""
    payload: dict[str, Any] = {
        "input": {"message": "Someone else used my card."},
        "llm": {"provider": "mock", "model": "large", "cost_usd": 0.001},
    }
    if status == 200:
        payload["output"] = CLASSIFIED if output is None else output
    record = Record(
        kind=KIND_INFERENCE,
        action="predict",
        ts_us=now_us(),
        payload=payload,
        service=service,
        version=1,
        status=status,
        decision="auto" if status == 200 else "rejected",
        latency_ms=80.0,
    )
    with store.write() as conn:
        log.append(store, conn, [record])
    return record.id


def stored(store: Store, inference_id: str) -> Any:
    with store.read() as conn:
        value = conn.execute(
            sa.select(feedback_table.c.value).where(feedback_table.c.inference_id == inference_id)
        ).scalar_one()
    return orjson.loads(value)


@pytest.mark.parametrize(
    ("body", "truth"),
    [
        ({"label": "fraud"}, {"label": "fraud", "match": True}),
        ({"label": 3}, {"label": "fraud", "match": True}),  # the 4th label, as for classifiers
        ({"label": "status"}, {"label": "status", "match": False}),
        ({"correct": " Fraud "}, {"correct": " Fraud ", "match": True}),  # the answer's label
        ({"correct": "It is a complaint."}, {"correct": "It is a complaint.", "match": False}),
        ({"score": 1}, {"score": 1.0}),
        ({"score": 0.25, "source": "reviewer"}, {"score": 0.25}),
    ],
)
def test_feedback_is_graded_and_stored_with_its_verdict(
    store: Store, spec: Spec, body: dict[str, Any], truth: dict[str, Any]
) -> None:
    rid = answer(store)
    out = feedback.submit(store, spec, rid, body)
    assert out["truth"] == truth
    assert (out["service"], out["version"], out["source"]) == (
        "letters",
        1,
        body.get("source", "api"),
    )
    assert stored(store, rid) == truth
    with store.read() as conn:
        [record] = log.tail(conn, 1)
    assert (record["action"], record["inference_id"], record["truth"]) == ("feedback", rid, truth)


def test_a_free_text_answer_is_graded_by_its_text(store: Store, spec: Spec) -> None:
    rid = answer(store, "drafts", {"text": "Your claim  is open."})
    out = feedback.submit(store, spec, rid, {"correct": "your claim is open."})
    assert out["truth"]["match"] is True
    rid = answer(store, "drafts", {"text": "Complaint"})
    # No labels declared: any text is a label, compared as text.
    assert feedback.submit(store, spec, rid, {"label": "complaint"})["truth"]["match"] is True


@pytest.mark.parametrize(
    ("body", "violations"),
    [
        (
            {"value": 1.0},
            [
                ("/value", "unknown field"),
                ("", 'give the truth as "label" (a classification), "score" (0 to 1)'),
            ],
        ),
        ({"label": "fraud", "score": 1}, [("", "give one of label, score or correct")]),
        ({"label": "spam"}, [("/label", "must be one of the labels")]),
        ({"label": [1]}, [("/label", "must be one of the labels")]),
        ({"score": 1.5}, [("/score", "must be a number from 0 to 1")]),
        ({"score": True}, [("/score", "must be a number from 0 to 1")]),
        ({"score": "0.5"}, [("/score", "must be a number from 0 to 1")]),
        ({"correct": "  "}, [("/correct", "must be the right answer's text")]),
        ({"correct": "x" * 60_001}, [("/correct", "1 to 60000 characters")]),
        (
            {"score": -1, "source": "", "observed_at": "soon", "extra": 1},
            [
                ("/extra", "unknown field"),
                ("/score", "must be a number from 0 to 1"),
                ("/source", "must be a string of 1 to 128 characters"),
                ("/observed_at", "must be an RFC 3339 time"),
            ],
        ),
        ([1], [("", "send an object with")]),
    ],
)
def test_bad_feedback_lists_every_violation(
    store: Store, spec: Spec, body: Any, violations: list[tuple[str, str]]
) -> None:
    rid = answer(store)
    with pytest.raises(ContractViolationError) as caught:
        feedback.submit(store, spec, rid, body)
    got = caught.value.violations
    assert [v.path for v in got] == [path for path, _ in violations]
    for v, (_, text) in zip(got, violations, strict=True):
        assert text in v.message
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(feedback_table)).scalar() == 0


def test_once_per_answer_and_only_for_answers(store: Store, spec: Spec) -> None:
    rid = answer(store)
    feedback.submit(store, spec, rid, {"score": 0.5})
    with pytest.raises(ConflictError):
        feedback.submit(store, spec, rid, {"label": "fraud"})
    failed = answer(store, status=502)
    with pytest.raises(UnknownInferenceError):
        feedback.submit(store, spec, failed, {"score": 0.5})


def test_a_classifiers_feedback_is_unchanged(store: Store, spec: Spec) -> None:
    rid = answer(store, "claims", {"prediction": "routine"})
    assert feedback.submit(store, spec, rid, {"label": 1})["truth"] == "adjuster"
    with pytest.raises(ContractViolationError) as caught:
        feedback.submit(store, spec, rid, {"score": 0.5})
    assert [v.path for v in caught.value.violations] == ["/score", ""]


@pytest.mark.anyio
async def test_feedback_over_http(settings: Settings) -> None:
    write_spec(settings, SPEC)
    store = open_store(settings)
    try:
        rid = answer(store)
    finally:
        store.dispose()
    async with running(settings) as client:
        url = f"/v1/inferences/{rid}/feedback"
        r = await client.post(url, json={"score": 2, "source": "x" * 200})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"].endswith("contract-violation")
        paths = [e["path"] for e in problem["errors"]]
        assert paths == ["/score", "/source"]
        r = await client.post(url, json={"label": "fraud"})
        assert r.status_code == 201, r.text
        assert r.json()["truth"] == {"label": "fraud", "match": True}
        r = await client.post(url, json={"label": "fraud"})
        assert r.status_code == 409, r.text
    store = open_store(settings)
    try:
        with store.read() as conn:
            actions = conn.execute(
                sa.select(audit_log.c.action).where(audit_log.c.kind == "feedback")
            ).scalars()
            assert list(actions) == ["feedback"]
    finally:
        store.dispose()
