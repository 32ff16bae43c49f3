"""``prodgate metrics``: per version calls, errors, latency and decisions; for an LLM
service time to first token, tokens, cost, fallbacks and models (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.settings import Settings
from prodgate.store.engine import now_us, open_store
from prodgate.store.tables import feedback, versions
from test_cli import assert_one_line_error, run

SPEC = """\
providers:
  mock:
    base_url: http://127.0.0.1:9/v1
    models: {large: {input: 5, output: 15}, small: {input: 1, output: 2}}
services:
  letters:
    owner: {name: Ops, contact: ops@example.com}
    kind: llm
    labels: [complaint, fraud]
    contract:
      input: {type: object, properties: {message: {type: string}}, required: [message]}
  claims:
    owner: {name: Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input: {type: object, properties: {amount: {type: number}}}
    gates: [accuracy >= 0.9]
"""

MS = 1000


def llm_call(version: int, ts: int, i: int, *, status: int = 200) -> Record:
    fallback = i % 5 == 4  # one in five answered by the small model
    return Record(
        kind=KIND_INFERENCE,
        action="predict",
        ts_us=ts,
        payload={
            "input": {"message": f"message {i}"},
            "output": {"text": "fraud"} if status == 200 else None,
            "llm": {
                "mode": "predict",
                "stream": False,
                "prompt_model": "mock/large",
                "provider": "mock",
                "model": "small" if fallback else "large",
                "fallback": fallback,
                "retries": 1 if fallback else 0,
                "usage": {
                    "input_tokens": 100,
                    "output_tokens": 20,
                    "cached_tokens": 50 if i % 2 else 0,
                    "estimated": i == 0,
                },
                "cost_usd": 0.0002 if fallback else 0.001,
                "ttft_ms": float(10 + i) if status == 200 else None,
                "finish_reason": "stop",
            },
        },
        service="letters",
        version=version,
        status=status,
        decision="auto" if status == 200 else "rejected",
        latency_ms=float(20 + i),
        actor="k_app",
    )


def classic_call(ts: int, i: int) -> Record:
    return Record(
        kind=KIND_INFERENCE,
        action="predict",
        ts_us=ts,
        payload={"input": {"amount": 1.0}, "output": {"prediction": "routine"}},
        service="claims",
        version=1,
        status=200,
        decision="escalated" if i == 0 else "auto",
        latency_ms=float(i + 1),
    )


@pytest.fixture
def recorded(settings: Settings) -> Settings:
    """Ten calls of letters v1 (one failed, four with feedback), three of v2, and four
    decisions of claims v1 (two labelled), all in the last minutes."""
    Path(settings.config).write_text(SPEC)
    store = open_store(settings)
    now = now_us()
    v1 = [llm_call(1, now - (60 - i) * MS, i) for i in range(9)]
    v1.append(llm_call(1, now - 40 * MS, 9, status=502))
    v2 = [llm_call(2, now - (30 - i) * MS, i + 1) for i in range(3)]
    claims = [classic_call(now - (20 - i) * MS, i) for i in range(4)]
    truths: list[tuple[Record, Any]] = [
        (v1[1], {"label": "fraud", "match": True}),
        (v1[2], {"label": "complaint", "match": False}),
        (v1[3], {"score": 0.9}),
        (v1[4], {"score": 0.1}),
        (claims[1], "routine"),
        (claims[2], "adjuster"),
    ]
    try:
        with store.write() as conn:
            for number in (1, 2):
                conn.execute(
                    versions.insert().values(
                        service="letters",
                        number=number,
                        flavor="prompt",
                        sha256=f"{number:064d}",
                        size=1,
                        artifact="p.yaml",
                        source="p.yaml",
                        trusted=False,
                        note="",
                        created_by="dev",
                        created_at_us=now,
                    )
                )
            log.append(store, conn, v1 + v2 + claims)
            for record, truth in truths:
                conn.execute(
                    feedback.insert().values(
                        inference_id=record.id,
                        service=record.service,
                        version=record.version,
                        value=orjson.dumps(truth).decode(),
                        source="t",
                        observed_at_us=now,
                        received_at_us=now,
                    )
                )
    finally:
        store.dispose()
    return settings


def test_an_llm_services_metrics(recorded: Settings) -> None:
    r = run(recorded, "metrics", "letters", "--window", "1h")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "letters, last 1h:"
    assert lines[1].split() == [
        "VERSION",
        "CALLS",
        "ERRORS",
        "P50/P95",
        "MS",
        "TTFT",
        "P50/P95",
        "TOKENS",
        "IN/OUT/CACHED",
        "ESTIMATED",
        "COST",
        "$",
        "$/CALL",
        "$/GOOD",
        "FALLBACK",
    ]
    # v1: 10 calls, the last failed (on the small model); latency 20..28 ms answered;
    # ttft 10..18; 2 of 10 fallbacks; cost 8 x 0.001 + 2 x 0.0002; 2 good of 4 rated,
    # 9 answered: 0.0084 / 4.5 a good answer
    assert lines[2].split() == [
        "1",
        "10",
        "1",
        "(10.0%)",
        "24.0/28.0",
        "14.0/18.0",
        "1000/200/250",
        "10.0%",
        "0.0084",
        "0.00084",
        "0.00186667",
        "20.0%",
    ]
    assert lines[3].split()[:3] == ["2", "3", "0"]
    assert "  v1 mock/large: 8 calls, 800 in / 160 out tokens, $0.008\n" in r.output
    small = "  v1 mock/small: 2 calls, 1 failed, 2 as fallback, 200 in / 40 out tokens, $0.0004"
    assert small in r.output
    assert (
        "  v1 feedback: 4 rated, accuracy 50.0% of 2 graded, mean score 0.50 of 2, 2 good"
        in r.output
    )

    body = json.loads(run(recorded, "metrics", "letters", "--json").output)
    assert (body["service"], body["kind"], body["window_s"]) == ("letters", "llm", 3600)
    one = body["versions"][0]
    assert (one["calls"], one["errors"], one["decisions"]) == (10, 1, {"auto": 9, "rejected": 1})
    assert one["llm"]["tokens"] == {
        "input": 1000,
        "output": 200,
        "cached": 250,
        "estimated_calls": 1,
        "estimated_share": 0.1,
    }
    assert one["llm"]["cost_usd"]["per_call"] == pytest.approx(0.00084)
    assert one["llm"]["cost_usd"]["per_positive"] == pytest.approx(0.0084 / 4.5)
    assert (one["llm"]["fallback_rate"], one["llm"]["retries"]) == (0.2, 2)
    assert [m["model"] for m in one["llm"]["models"]] == ["mock/large", "mock/small"]

    only = json.loads(run(recorded, "metrics", "letters", "--version", "2", "--json").output)
    assert [v["version"] for v in only["versions"]] == [2]
    r = run(recorded, "metrics", "letters", "--version", "3")
    assert (r.exit_code, r.output) == (0, "letters: no calls of version 3 in the last 1h\n")


def test_a_classifiers_metrics_have_no_llm_columns(recorded: Settings) -> None:
    r = run(recorded, "metrics", "claims", "--window", "30m")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "claims, last 30m:"
    assert "TTFT" not in r.output
    assert "COST $" not in r.output
    assert lines[1].split()[:5] == ["VERSION", "CALLS", "ERRORS", "P50/P95", "MS"]
    assert lines[2].split()[:9] == [
        "1",
        "4",
        "0",
        "(0.0%)",
        "2.0/4.0",
        "auto",
        "3,",
        "escalated",
        "1",
    ]
    assert "v1 gate FAIL: accuracy is 0.5; needs >= 0.9" in r.output
    body = json.loads(run(recorded, "metrics", "claims", "--json").output)
    [v] = body["versions"]
    assert "llm" not in v
    assert v["quality"]["metrics"]["accuracy"] == 0.5
    assert v["operations"]["escalation_rate"] == 0.25


def test_nothing_in_the_window(settings: Settings) -> None:
    Path(settings.config).write_text(SPEC)
    r = run(settings, "metrics", "letters", "--window", "90s")
    assert (r.exit_code, r.output) == (0, "letters: no calls in the last 90s\n")
    assert json.loads(run(settings, "metrics", "letters", "--json").output)["versions"] == []


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["metrics", "nope"], ["unknown service 'nope'", "letters"]),
        (["metrics", "letters", "--window", "soon"], ["window 'soon'", "1h"]),
        (["metrics", "letters", "--version", "0"], ["'0' is not a version number"]),
    ],
)
def test_mistakes_are_one_line_exit_2(
    settings: Settings, args: list[str], needles: list[str]
) -> None:
    Path(settings.config).write_text(SPEC)
    assert_one_line_error(run(settings, *args), *needles)
