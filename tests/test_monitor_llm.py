"""LLM figures of a prompt version over a window, read from the audit log (SQLite and
PostgreSQL): time to first token, tokens, cost, fallbacks, models, feedback; which
field of an answer is its label; and the report behind ``prodgate metrics``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from gateway_support import running, write_spec
from llm_support import MOCK_CONFIG, llm_spec, register_prompt, write_prompt
from prodgate import spec as spec_module
from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.llm.mock import MockHandle, running_mock
from prodgate.monitor import llm
from prodgate.monitor.window import window_conditions, window_stats
from prodgate.settings import Settings
from prodgate.spec import ServiceSpec
from prodgate.store.engine import Store, now_us, open_store
from prodgate.store.tables import audit_log, feedback, versions

T0 = 1_700_000_000_000_000
MIN = 60_000_000

SPEC = """\
providers:
  mock:
    base_url: http://127.0.0.1:9/v1
    models:
      large: {input: 5, output: 15}
      small: {input: 1, output: 2}
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
      input: {type: object, properties: {amount: {type: number}}}
    gates: [accuracy >= 0.9]
"""


@pytest.fixture
def letters() -> ServiceSpec:
    return spec_module.parse(SPEC, Path("prodgate.yaml")).service("letters")


def prompt_version(store: Store, number: int, service: str = "letters") -> None:
    """A registered prompt version's row (what ``register`` writes for a prompt)."""
    with store.write() as conn:
        conn.execute(
            versions.insert().values(
                service=service,
                number=number,
                flavor="prompt",
                sha256=f"{number:064d}",
                size=100,
                artifact="p.yaml",
                source="p.yaml",
                trusted=False,
                note="",
                created_by="tester",
                created_at_us=T0,
            )
        )


def call(
    version: int,
    ts: int,
    *,
    status: int = 200,
    latency: float = 100.0,
    ttft: float | None = 40.0,
    tokens: tuple[int, int, int] = (100, 20, 0),
    cost: float | None = 0.001,
    model: str = "mock/large",
    fallback: bool = False,
    retries: int = 0,
    estimated: bool = False,
    stream: bool = False,
    text: str = '{"category": "complaint", "reply": "Sorry."}',
    parsed: dict[str, Any] | None = None,
    message: str = "My car was hit.",
    service: str = "letters",
    llm_part: bool = True,
) -> Record:
    """An LLM call's inference record, shaped as the gateway records it."""
    provider, name = model.split("/", 1)
    payload: dict[str, Any] = {"input": {"message": message}}
    if status == 200:
        payload["output"] = {
            "text": text,
            "parsed": parsed if parsed is not None else orjson.loads(text),
        }
    if llm_part:
        payload["llm"] = {
            "mode": "predict",
            "stream": stream,
            "prompt_model": "mock/large",
            "provider": provider,
            "model": name,
            "fallback": fallback,
            "attempts": [],
            "retries": retries,
            "usage": {
                "input_tokens": tokens[0],
                "output_tokens": tokens[1],
                "cached_tokens": tokens[2],
                "estimated": estimated,
            },
            "cost_usd": cost,
            "ttft_ms": ttft if status == 200 else None,
            "finish_reason": "stop" if status == 200 else None,
        }
    return Record(
        kind=KIND_INFERENCE,
        action="predict",
        ts_us=ts,
        payload=payload,
        service=service,
        version=version,
        status=status,
        decision="auto" if status == 200 else "rejected",
        latency_ms=latency,
        actor="k_test",
    )


def append(store: Store, records: list[Record], truths: dict[str, Any] | None = None) -> None:
    with store.write() as conn:
        log.append(store, conn, records)
        for rid, value in (truths or {}).items():
            conn.execute(
                feedback.insert().values(
                    inference_id=rid,
                    service=records[0].service,
                    version=records[0].version,
                    value=orjson.dumps(value).decode(),
                    source="test",
                    observed_at_us=T0,
                    received_at_us=T0,
                )
            )


def read(store: Store, version: int, service: str = "letters") -> llm.LlmFigures:
    with store.read() as conn:
        return llm.read_figures(conn, window_conditions(service, version, T0, T0 + MIN))


# -- the figures ---------------------------------------------------------------------------


def test_tokens_cost_ttft_fallbacks_and_models(store: Store) -> None:
    records = [call(1, T0 + i, ttft=float(i + 1), cost=0.001) for i in range(20)]  # 1..20 ms
    records += [
        call(1, T0 + 100, model="mock/small", fallback=True, retries=2, cost=0.0002, ttft=500.0),
        call(1, T0 + 101, tokens=(50, 10, 30), estimated=True, stream=True, cost=0.0005),
        call(1, T0 + 102, status=502, ttft=None, tokens=(0, 0, 0), cost=0.0, retries=3),
        call(1, T0 + 103, status=422, llm_part=False),  # refused at the door: no route
    ]
    # Every breaker open: no target was tried, the record names no model.
    untried = call(1, T0 + 104, status=503, ttft=None, tokens=(0, 0, 0), cost=0.0, fallback=True)
    untried.payload["llm"].update(provider="", model="")
    append(store, [*records, untried])
    f = read(store, 1)
    assert (f.calls, f.answered, f.streams) == (24, 22, 1)
    assert (f.input_tokens, f.output_tokens, f.cached_tokens) == (2150, 430, 30)
    assert f.estimated == 1
    assert f.estimated_share == pytest.approx(1 / 24)
    assert f.priced == 24
    assert f.cost_total == pytest.approx(20 * 0.001 + 0.0002 + 0.0005)
    assert f.cost_per_call == pytest.approx(f.cost_total / 24)
    assert f.cost_variance() > 0
    # nearest rank over 22 answered: 1..20, 40 (the estimated one) and 500
    assert f.p50_ttft_ms == 11.0
    assert f.p95_ttft_ms == 40.0
    assert (f.fallbacks, f.retries) == (1, 5)
    assert f.fallback_rate == pytest.approx(1 / 24)
    assert f.finish_reasons == {"stop": 22}
    large, small = f.models
    # the untried call counts under the prompt's model, as no fallback
    assert (large.model, large.calls, large.errors, large.fallback) == ("mock/large", 23, 2, 0)
    assert (small.model, small.calls, small.fallback, small.input_tokens) == (
        "mock/small",
        1,
        1,
        100,
    )
    assert small.cost_usd == pytest.approx(0.0002)
    out = f.as_dict()
    assert out["cost_usd"]["per_call"] == pytest.approx(f.cost_total / 24)
    assert out["models"][1]["cost_per_call"] == pytest.approx(0.0002)
    assert out["tokens"]["estimated_calls"] == 1
    orjson.dumps(out)  # recorded as JSON in rollout records


def test_an_empty_window_has_no_figures(store: Store) -> None:
    f = read(store, 1)
    assert f.calls == 0
    assert f.p95_ttft_ms is None
    assert f.cost_per_call is None
    assert (f.accuracy, f.mean_score, f.cost_per_positive) == (None, None, None)
    assert f.fallback_rate == 0.0
    assert f.as_dict()["models"] == []


def test_only_the_window_counts(store: Store) -> None:
    append(
        store,
        [
            call(1, T0),
            call(1, T0 + MIN - 1),
            call(1, T0 + MIN),  # the next window's
            call(1, T0 - 1),
            call(2, T0 + 5),
            call(1, T0 + 5, service="drafts"),
        ],
    )
    assert read(store, 1).calls == 2


def test_a_nul_in_a_message_reads_on_both_engines(store: Store) -> None:
    # PostgreSQL's jsonb refuses \\u0000 anywhere in the text; the payload is cast to json.
    nul = call(1, T0, message="a\x00b", text="\x00", parsed={"category": "status"})
    append(store, [nul])
    assert read(store, 1).calls == 1


def test_feedback_rates_answers(store: Store) -> None:
    records = [call(1, T0 + i, cost=0.001) for i in range(10)]
    truths: dict[str, Any] = {
        records[0].id: {"label": "complaint", "match": True},
        records[1].id: {"label": "fraud", "match": False},
        records[2].id: {"correct": "Sorry.", "match": True},
        records[3].id: {"score": 0.9},
        records[4].id: {"score": 0.2},
        records[5].id: {"score": 0.5},
    }
    append(store, records, truths)
    f = read(store, 1)
    assert (f.labelled, f.graded, f.correct) == (6, 3, 2)
    assert f.accuracy == pytest.approx(2 / 3)
    assert f.scored == 3
    assert f.mean_score == pytest.approx((0.9 + 0.2 + 0.5) / 3)
    assert f.score_variance() == pytest.approx(0.1233333, rel=1e-4)
    assert f.positive == 4  # two right, two scored >= 0.5
    assert f.positive_share == pytest.approx(4 / 6)
    # ten answers at $0.001, two in three of them good: $0.0015 a good answer
    assert f.cost_per_positive == pytest.approx(0.01 / (10 * 4 / 6))


def test_a_prompt_versions_window_carries_its_figures(store: Store) -> None:
    prompt_version(store, 1)
    records = [call(1, T0 + i, latency=float(i + 1)) for i in range(20)]
    records.append(call(1, T0 + 50, status=503, ttft=None))
    truths = {r.id: {"label": "x", "match": i % 4 != 0} for i, r in enumerate(records[:20])}
    append(store, records, truths)
    with store.read() as conn:
        s = window_stats(conn, "letters", 1, T0, T0 + MIN)
        classic = window_stats(conn, "letters", 1, T0, T0 + MIN, llm=False)
    assert (s.requests, s.errors, s.successes) == (21, 1, 20)
    assert s.p95_latency_ms == 19.0
    assert s.llm is not None
    assert s.llm.calls == 21
    assert (s.labelled, s.graded, s.correct) == (20, 20, 15)
    assert s.accuracy == pytest.approx(0.75)
    assert s.as_dict()["llm"]["feedback"]["accuracy"] == pytest.approx(0.75)
    # Read as a classifier's, its feedback is no label: no accuracy, no LLM figures.
    assert classic.llm is None
    assert classic.graded == 0
    assert "llm" not in classic.as_dict()


def test_feedback_before_the_interval_counts_for_quality_only(store: Store) -> None:
    prompt_version(store, 1)
    early = [call(1, T0 - MIN + i) for i in range(5)]
    late = [call(1, T0 + i, cost=0.002) for i in range(5)]
    append(store, early + late, {r.id: {"score": 1.0} for r in early})
    with store.read() as conn:
        s = window_stats(conn, "letters", 1, T0, T0 + MIN, quality_start_us=T0 - MIN)
    assert s.llm is not None
    assert s.llm.calls == 5
    assert s.llm.cost_per_call == pytest.approx(0.002)
    assert s.llm.scored == 5


def test_a_classifiers_window_is_unchanged(store: Store) -> None:
    record = Record(
        kind=KIND_INFERENCE,
        action="predict",
        ts_us=T0,
        payload={"input": {"amount": 1.0}, "output": {"prediction": "routine"}},
        service="claims",
        version=1,
        status=200,
        decision="auto",
        latency_ms=3.0,
    )
    append(store, [record], {record.id: "routine"})
    with store.read() as conn:
        s = window_stats(conn, "claims", 1, T0, T0 + MIN)
    assert s.llm is None
    assert (s.labelled, s.graded, s.correct) == (1, 1, 1)
    assert "llm" not in s.as_dict()


# -- an answer's label ---------------------------------------------------------------------


def service(output: dict[str, Any] | None, labels: list[str] | None = None) -> ServiceSpec:
    return ServiceSpec(
        name="s",
        owner=spec_module.Owner("o", "o@x"),
        kind="llm",
        contract={"type": "object", "properties": {}},
        labels=tuple(labels) if labels else None,
        output_contract=output,
    )


def props(**schemas: Any) -> dict[str, Any]:
    return {"type": "object", "properties": schemas}


@pytest.mark.parametrize(
    ("output", "labels", "field"),
    [
        (None, None, None),
        (props(label={"type": "string"}, kind={"enum": ["a", "b"]}), None, "label"),
        (props(tone={"enum": ["x", "y"]}, kind={"enum": ["a", "b"]}), ["a", "b"], "kind"),
        (props(kind={"enum": ["a", "b"]}, reply={"type": "string"}), None, "kind"),
        (props(kind={"enum": ["a", "b"]}, tone={"enum": ["x", "y"]}), None, None),  # which?
        (props(reply={"type": "string"}), ["a", "b"], None),
    ],
)
def test_the_label_field(output: Any, labels: list[str] | None, field: str | None) -> None:
    assert llm.label_field(service(output, labels)) == field


def test_an_answers_label_and_its_grade(letters: ServiceSpec) -> None:
    structured = {"text": "{...}", "parsed": {"category": "fraud", "reply": "We will check."}}
    assert llm.answer_label(letters, structured) == "fraud"
    # Without a parsed answer, the text: a declared label whatever its case and spacing.
    assert llm.answer_label(letters, {"text": "  New_Claim \n"}) == "new_claim"
    assert llm.answer_label(letters, {"text": "no idea"}) == "no idea"
    assert llm.answer_label(letters, None) is None
    assert llm.grade(letters, structured, {"label": "fraud"}) == {"label": "fraud", "match": True}
    assert llm.grade(letters, structured, {"label": "status"})["match"] is False
    assert llm.grade(letters, structured, {"correct": "FRAUD"})["match"] is True
    free = service(None)
    said = {"text": "The claim is  open."}
    assert llm.grade(free, said, {"correct": "the claim is open."})["match"] is True
    assert llm.grade(free, said, {"correct": "It is closed."})["match"] is False
    assert llm.grade(free, said, {"score": 0.4}) == {"score": 0.4}


# -- the report of ``prodgate metrics`` ----------------------------------------------------


def test_the_report_of_an_llm_service(store: Store, letters: ServiceSpec) -> None:
    prompt_version(store, 1)
    prompt_version(store, 2)
    v1 = [call(1, T0 + i, latency=float(10 + i), cost=0.002) for i in range(10)]
    v2 = [call(2, T0 + i, cost=0.0005, model="mock/small") for i in range(4)]
    v2.append(call(2, T0 + 9, status=502, ttft=None, cost=0.0))
    append(store, v1, {v1[0].id: {"label": "complaint", "match": True}})
    append(store, v2)
    report = llm.report(store, letters, 60, end_us=T0 + MIN)
    assert (report["service"], report["kind"], report["window_s"]) == ("letters", "llm", 60)
    one, two = report["versions"]
    assert (one["version"], one["calls"], one["errors"], one["answered"]) == (1, 10, 0, 10)
    assert one["decisions"] == {"auto": 10}
    assert one["latency_ms"] == {"p50": 14.0, "p95": 19.0}
    assert one["llm"]["cost_usd"]["total"] == pytest.approx(0.02)
    assert one["llm"]["cost_usd"]["per_positive"] == pytest.approx(0.002)  # 1 of 1 rated good
    assert one["llm"]["feedback"]["accuracy"] == 1.0
    assert "quality" not in one
    assert (two["calls"], two["errors"], two["error_rate"]) == (5, 1, 0.2)
    assert two["decisions"] == {"auto": 4, "rejected": 1}
    models = [(m["model"], m["calls"], m["errors"]) for m in two["llm"]["models"]]
    assert models == [("mock/small", 4, 0), ("mock/large", 1, 1)]  # most calls first
    only = llm.report(store, letters, 60, end_us=T0 + MIN, version=2)
    assert [v["version"] for v in only["versions"]] == [2]
    assert llm.report(store, letters, 60, end_us=T0 + MIN, version=3)["versions"] == []
    orjson.dumps(report)


def test_the_report_of_a_classifier_has_no_llm_columns(store: Store) -> None:
    claims = spec_module.parse(SPEC, Path("prodgate.yaml")).service("claims")
    records = [
        Record(
            kind=KIND_INFERENCE,
            action="predict",
            ts_us=T0 + i,
            payload={"input": {"amount": 1.0}, "output": {"prediction": "routine"}},
            service="claims",
            version=1,
            status=200,
            decision="escalated" if i == 0 else "auto",
            latency_ms=2.0,
        )
        for i in range(4)
    ]
    append(store, records, {records[1].id: "routine", records[2].id: "adjuster"})
    [v] = llm.report(store, claims, 60, end_us=T0 + MIN)["versions"]
    assert "llm" not in v
    assert (v["calls"], v["decisions"]) == (4, {"auto": 3, "escalated": 1})
    assert v["latency_ms"] == {"p50": 2.0, "p95": 2.0}
    assert v["operations"]["labelled"] == 2
    assert v["quality"]["metrics"]["accuracy"] == 0.5
    assert v["quality"]["gates"][0]["passed"] is False


# -- from the gateway's own records ----------------------------------------------------------


@pytest.fixture(scope="module")
def mock() -> Iterator[MockHandle]:
    with running_mock(MOCK_CONFIG) as handle:
        yield handle


@pytest.mark.anyio
async def test_figures_of_calls_through_the_gateway(
    settings: Settings, mock: MockHandle, tmp_path: Path
) -> None:
    mock.reset()
    write_spec(settings, llm_spec(mock.url))
    register_prompt(settings, write_prompt(tmp_path, "v1"))  # primary/small, then backup/large
    messages = ["It was staged fraud", "Any status update?", "I complain", "Staged fraud again"]
    ids = []
    async with running(settings) as client:
        for i, message in enumerate(messages):
            if i == 3:  # the small model fails from now on: the large one answers
                mock.set_faults(error_rate=1.0, errors=["500"], models=["small"])
            r = await client.post(
                "/v1/services/letter/predict", json={"inputs": {"message": message}}
            )
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
        verdicts = []
        for rid, body in zip(
            ids,
            [
                {"label": "fraud_signal"},  # the small model said new_claim: wrong
                {"label": "status_question"},
                {"score": 0.9},
                {"correct": "fraud_signal"},  # the large model's category
            ],
            strict=True,
        ):
            r = await client.post(f"/v1/inferences/{rid}/feedback", json=body)
            assert r.status_code == 201, r.text
            verdicts.append(r.json()["truth"].get("match"))
    mock.reset()
    assert verdicts == [False, True, None, True]
    store = open_store(settings)
    try:
        with store.read() as conn:
            payloads = [
                orjson.loads(p)
                for p in conn.execute(
                    sa.select(audit_log.c.payload).where(audit_log.c.kind == KIND_INFERENCE)
                ).scalars()
            ]
            stats = window_stats(conn, "letter", 1, T0, now_us() + 1)
        service = spec_module.load(settings.config).service("letter")
        report = llm.report(store, service, 3600)
    finally:
        store.dispose()
    recorded = [p["llm"] for p in payloads]
    assert stats.llm is not None  # a registered prompt version, found by its flavor
    [v1] = report["versions"]
    f = v1["llm"]
    assert (v1["calls"], f["calls"], f["answered"], f["fallbacks"]) == (4, 4, 4, 1)
    assert f["cost_usd"]["total"] == pytest.approx(sum(r["cost_usd"] for r in recorded))
    assert f["tokens"]["input"] == sum(r["usage"]["input_tokens"] for r in recorded)
    assert f["tokens"]["output"] == sum(r["usage"]["output_tokens"] for r in recorded)
    # As recorded, every try after the first: the small model's second, then the large.
    assert f["retries"] == sum(r["retries"] for r in recorded) == 2
    models = [(m["model"], m["calls"], m["fallback"]) for m in f["models"]]
    assert models == [("primary/small", 3, 0), ("backup/large", 1, 1)]
    assert f["ttft_ms"]["p95"] == max(r["ttft_ms"] for r in recorded)
    assert (f["feedback"]["graded"], f["feedback"]["correct"], f["feedback"]["scored"]) == (3, 2, 1)
    assert stats.accuracy == pytest.approx(2 / 3)
