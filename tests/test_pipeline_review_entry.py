"""What enters review: rules, escalations and a deterministic sample, marked on the
request path and made items in the recorder's group commit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from gateway_support import GOOD, SPEC, register_and_deploy, running, write_spec
from prodgate.audit.record import Record, new_id
from prodgate.pipeline.review_entry import Entry, draw
from prodgate.settings import Settings
from prodgate.spec import parse
from prodgate.store.engine import Store, open_store
from prodgate.store.tables import audit_log, review_items

REVIEW = """\
    cohorts:
      big: {where: "amount >= 5000"}
    review:
      sample: 5%
      sample_cohorts: {big: 20%}
      rules:
        - {name: huge, where: "amount >= 20000", reviewers: 2}
      deadline: 2h
"""


def _spec(review: str = REVIEW) -> str:
    return SPEC.replace("    escalation:\n", review + "    escalation:\n", 1)


def _service(review: str = REVIEW) -> Any:
    from pathlib import Path

    return parse(_spec(review), Path("prodgate.yaml")).service("claims")


def _record(row: dict[str, Any], decision: str = "auto", confidence: float = 0.9) -> Record:
    return Record(
        kind="inference",
        action="predict",
        ts_us=1_000_000,
        payload={"input": row, "output": {"prediction": "routine"}},
        service="claims",
        version=1,
        status=200,
        decision=decision,
        confidence=confidence,
    )


def test_a_five_percent_sample_of_100k_lands_within_three_tenths_of_a_point() -> None:
    entry = Entry(_service("    review: {}\n"))
    records = [_record({"amount": 10.0, "category": "auto"}) for _ in range(100_000)]
    entry.mark(records)
    share = sum("review" in r.payload for r in records) / len(records)
    assert 0.047 <= share <= 0.053, share
    assert all(
        r.payload["review"]["reasons"] == ["sampled"] for r in records if "review" in r.payload
    )


def test_stratified_rates_hold_per_cohort() -> None:
    entry = Entry(_service())
    small = [_record({"amount": 100.0, "category": "auto"}) for _ in range(60_000)]
    big = [_record({"amount": 6000.0, "category": "home"}) for _ in range(60_000)]
    entry.mark(small + big)
    small_share = sum("review" in r.payload for r in small) / len(small)
    big_share = sum("review" in r.payload for r in big) / len(big)
    assert 0.047 <= small_share <= 0.053, small_share
    assert 0.195 <= big_share <= 0.205, big_share
    assert {r.payload["review"]["cohort"] for r in big if "review" in r.payload} == {"big"}
    assert {r.payload["review"]["cohort"] for r in small if "review" in r.payload} == {None}


def test_the_sample_is_the_same_in_another_process() -> None:
    """A replica is another process: it draws the same ids (no per-process seed)."""
    ids = [new_id() for _ in range(20_000)]
    here = sorted(i for i in ids if draw("claims", i) < 0.05)
    code = (
        "import json, sys\n"
        "from prodgate.pipeline.review_entry import draw\n"
        "ids = json.load(sys.stdin)\n"
        "print(json.dumps(sorted(i for i in ids if draw('claims', i) < 0.05)))\n"
    )
    there = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(there.stdout) == here
    assert 800 <= len(here) <= 1200


def test_a_rule_escalates_and_asks_for_its_reviewers() -> None:
    entry = Entry(_service())
    huge = _record({"amount": 25_000.0, "category": "auto"})
    small = _record({"amount": 10.0, "category": "auto"})
    unsure = _record({"amount": 10.0, "category": "auto"}, "escalated", 0.55)
    assert entry.mark([huge, small, unsure]) == 1
    assert huge.decision == "escalated"
    mark = huge.payload["review"]
    assert "rule:huge" in mark["reasons"]
    assert mark["reviewers"] == 2
    assert mark["cohort"] == "big"
    assert mark["deadline_us"] == 1_000_000 + 2 * 3600 * 1_000_000
    assert unsure.payload["review"]["reasons"][0] == "low_confidence"
    assert unsure.payload["review"]["reviewers"] == 1


def test_a_guard_escalation_is_named_so() -> None:
    entry = Entry(_service())
    guarded = _record({"amount": 10.0, "category": "auto"}, "escalated", 0.95)
    entry.mark([guarded])
    assert guarded.payload["review"]["reasons"][0] == "guard"


def test_without_a_review_section_nothing_is_marked() -> None:
    from pathlib import Path

    entry = Entry(parse(SPEC, Path("prodgate.yaml")).service("claims"))
    record = _record({"amount": 25_000.0, "category": "auto"}, "escalated", 0.5)
    assert entry.mark([record]) == 0
    assert "review" not in record.payload
    assert record.decision == "escalated"


@pytest.mark.parametrize(
    ("review", "message"),
    [
        ("    review: {rules: [{where: 'nope > 1'}]}\n", "unknown field(s): nope"),
        ("    review: {sample_cohorts: {small: 0.1}}\n", "no cohort named 'small'"),
        ("    review: {sample: 1.5}\n", "review.sample"),
        ("    review: {deadline: soon}\n", "write a number and a unit"),
    ],
)
def test_mistakes_in_the_section_are_named(review: str, message: str) -> None:
    from pathlib import Path

    from prodgate.exceptions import SpecError

    with pytest.raises(SpecError, match="review") as caught:
        parse(_spec("    cohorts:\n      big: {where: 'amount > 1'}\n" + review), Path("p.yaml"))
    assert message in str(caught.value)


@pytest.mark.anyio
async def test_items_are_created_with_their_records(settings: Settings) -> None:
    unsampled = REVIEW.replace("sample: 5%", "sample: 0%").replace("big: 20%", "big: 0%")
    write_spec(settings, _spec(unsampled))
    register_and_deploy(settings)
    rows = [
        {**GOOD, "amount": 25_000.0},  # the rule: escalated, two reviewers
        {**GOOD, "amount": 6_000.0},  # confidence 0.6: escalated already
        {**GOOD, "amount": 100.0},  # sure and small: automatic, not sampled at 0%
    ]
    async with running(settings) as client:
        response = await client.post("/v1/services/claims/predict", json={"instances": rows})
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    assert [a["decision"] for a in answers] == ["escalated", "escalated", "auto"]
    store = open_store(settings)
    try:
        with store.read() as conn:
            items = {r.id: r for r in conn.execute(sa.select(review_items))}
            payloads = {
                r.id: orjson.loads(r.payload)
                for r in conn.execute(sa.select(audit_log.c.id, audit_log.c.payload))
            }
    finally:
        store.dispose()
    huge, unsure, small = (a["id"] for a in answers)
    assert set(items) == {huge, unsure}
    assert json.loads(items[huge].reasons) == ["rule:huge"]
    assert items[huge].reviewers == 2
    assert items[huge].state == "open"
    assert items[huge].cohort == "big"
    assert items[huge].decision == "escalated"
    assert json.loads(items[huge].prediction) == "adjuster"
    assert json.loads(items[unsure].reasons) == ["low_confidence"]
    # The inference's own record is the record of its entry.
    assert payloads[huge]["review"]["reasons"] == ["rule:huge"]
    assert "review" not in payloads[small]


@pytest.mark.anyio
async def test_every_sampled_decision_has_its_item(settings: Settings) -> None:
    """With a sample of 100%, every automatic decision enters: the item count is the
    record count, and each item's id is a recorded inference."""
    write_spec(settings, _spec("    review: {sample: 1.0}\n"))
    register_and_deploy(settings)
    async with running(settings) as client:
        for amount in (10.0, 20.0, 30.0):
            body = {"instances": [{**GOOD, "amount": amount}] * 4}
            response = await client.post("/v1/services/claims/predict", json=body)
            assert response.status_code == 200
    store = open_store(settings)
    try:
        with store.read() as conn:
            ids = set(conn.execute(sa.select(review_items.c.id)).scalars())
            recorded = set(
                conn.execute(
                    sa.select(audit_log.c.id).where(audit_log.c.kind == "inference")
                ).scalars()
            )
    finally:
        store.dispose()
    assert len(ids) == 12
    assert ids <= recorded


def _marked(n: int) -> Record:
    record = _record({"amount": float(n), "category": "auto"})
    record.payload["review"] = {"reasons": ["sampled"], "cohort": None, "reviewers": 1}
    return record


def test_a_journal_replay_creates_each_item_once(store: Store, tmp_path: Path) -> None:
    """A group committed (records and items), then the process died before emptying
    its journal: the replay adds the missing record and its item, and no item twice."""
    import asyncio

    from prodgate.audit import log
    from prodgate.pipeline import review_entry as entry
    from prodgate.pipeline.journal import Journal
    from prodgate.pipeline.metrics import Metrics
    from prodgate.pipeline.recorder import Recorder

    records = [_marked(1), _marked(2)]
    old = Journal(tmp_path / "journal")
    old.open()
    old.append(records)
    with store.write() as conn:
        log.append(store, conn, records[:1])
        entry.enter(conn, records[:1])
    old.close()

    async def scenario() -> None:
        recorder = Recorder(store, Metrics(), journal=Journal(tmp_path / "journal"))
        recorder.start()
        await recorder.record([_marked(3)])  # replays first, then commits this
        await recorder.close()

    asyncio.run(scenario())
    with store.read() as conn:
        ids = list(conn.execute(sa.select(review_items.c.id)).scalars())
    assert len(ids) == len(set(ids)) == 3
    assert {records[0].id, records[1].id} <= set(ids)
