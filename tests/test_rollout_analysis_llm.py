"""Canary checks of prompt versions: time to first token, cost per call, accuracy and
mean score from feedback; and the controller rolling back an LLM canary by itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from prodgate import spec as spec_module
from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.monitor.llm import LlmFigures
from prodgate.monitor.window import VersionStats, window_stats
from prodgate.registry import approvals
from prodgate.rollout import split as deployments
from prodgate.rollout.analysis import CheckResult, compare
from prodgate.rollout.controller import start, tick
from prodgate.spec import Checks
from prodgate.store.engine import Store
from prodgate.store.tables import audit_log, feedback, versions

T0 = 1_700_000_000_000_000
MIN = 60_000_000

CLASSIC = ["error_rate", "p95_latency", "escalation_rate", "violation_rate"]


def stats(version: int, figures: LlmFigures | None, **counts: Any) -> VersionStats:
    base: dict[str, Any] = {"requests": 100, "successes": 100, "p95_latency_ms": 200.0}
    base.update(counts)
    return VersionStats(version, T0, T0 + MIN, llm=figures, **base)


def fig(
    *,
    ttft: float | None = 50.0,
    costs: list[float] | None = None,
    scores: list[float] | None = None,
) -> LlmFigures:
    costs = [0.001] * 100 if costs is None else costs
    scores = scores or []
    return LlmFigures(
        calls=len(costs),
        answered=len(costs),
        p95_ttft_ms=ttft,
        priced=len(costs),
        cost_total=sum(costs),
        cost_sq=sum(c * c for c in costs),
        scored=len(scores),
        score_total=sum(scores),
        score_sq=sum(s * s for s in scores),
        labelled=len(scores),
    )


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_a_prompt_version_gets_ttft_and_cost_checks() -> None:
    results = compare(stats(2, fig()), stats(1, fig()), Checks())
    assert [r.name for r in results] == [*CLASSIC, "p95_ttft", "cost_per_call"]
    assert all(r.passed for r in results)
    # Classifiers' stats (no LLM figures) are judged as they always were.
    assert [r.name for r in compare(stats(2, None), stats(1, None), Checks())] == CLASSIC
    assert [r.name for r in compare(stats(2, fig()), stats(1, None), Checks())] == CLASSIC


def test_time_to_first_token_is_a_p95_ratio() -> None:
    checks = Checks(max_ttft_ratio=1.5)
    ok = by_name(compare(stats(2, fig(ttft=75.0)), stats(1, fig(ttft=50.0)), checks))["p95_ttft"]
    assert ok.passed  # x1.5: limits are inclusive
    assert ok.detail == (
        "p95 time to first token 75.0 ms vs 50.0 ms in production: x1.50 (limit x1.5)"
    )
    slow = by_name(compare(stats(2, fig(ttft=80.0)), stats(1, fig(ttft=50.0)), checks))
    assert not slow["p95_ttft"].passed
    assert (slow["p95_ttft"].canary_value, slow["p95_ttft"].baseline_value) == (80.0, 50.0)
    # Under a millisecond both count as one: timer noise, not the model.
    assert by_name(compare(stats(2, fig(ttft=0.9)), stats(1, fig(ttft=0.1)), checks))[
        "p95_ttft"
    ].passed
    none = by_name(compare(stats(2, fig(ttft=None)), stats(1, fig()), checks))["p95_ttft"]
    assert none.passed
    assert none.detail == "not compared: canary answered no call in the window"


def test_cost_per_call_fails_only_beyond_noise() -> None:
    checks = Checks(max_cost_increase=0.10)
    cheap = [0.001] * 100
    # 30% dearer on every call: no noise to hide in.
    dear = by_name(compare(stats(2, fig(costs=[0.0013] * 100)), stats(1, fig(costs=cheap)), checks))
    cost = dear["cost_per_call"]
    assert not cost.passed
    assert cost.canary_value == pytest.approx(0.0013)
    assert cost.detail.startswith("cost per call $0.001300 vs $0.001000 in production: +30.0%")
    assert "limit +10%" in cost.detail
    # 20% dearer on average, but calls cost anything from nothing to twice the mean:
    # on 20 calls each that is within noise; with confidence 0 the point values decide.
    rng = [0.0, 0.0005, 0.001, 0.0015, 0.002] * 4
    noisy_c, noisy_b = fig(costs=[c * 1.2 for c in rng]), fig(costs=rng)
    within = by_name(compare(stats(2, noisy_c), stats(1, noisy_b), checks))["cost_per_call"]
    assert within.passed
    assert "within noise" in within.detail
    point = Checks(max_cost_increase=0.10, confidence=0)
    assert not by_name(compare(stats(2, noisy_c), stats(1, noisy_b), point))["cost_per_call"].passed
    unpriced = by_name(compare(stats(2, fig(costs=[])), stats(1, fig()), checks))["cost_per_call"]
    assert unpriced.passed
    assert unpriced.detail == "not compared: canary has no priced call in the window"


def test_accuracy_counts_graded_answers_only() -> None:
    checks = Checks(min_feedback=20, confidence=0)
    # 30 answers rated each, but only 10 graded right or wrong (the rest scored).
    few = compare(
        stats(2, fig(), labelled=30, graded=10, correct=5),
        stats(1, fig(), labelled=30, graded=10, correct=10),
        checks,
    )
    assert "accuracy" not in by_name(few)
    enough = by_name(
        compare(
            stats(2, fig(), labelled=40, graded=40, correct=30),
            stats(1, fig(), labelled=40, graded=40, correct=38),
            checks,
        )
    )
    assert not enough["accuracy"].passed
    assert enough["accuracy"].detail.startswith("accuracy 0.7500 vs 0.9500 in production")


def test_mean_score_drop() -> None:
    checks = Checks(min_feedback=20, max_score_drop=0.05)
    good = [0.9, 1.0] * 20
    worse = [0.6, 0.7] * 20
    results = by_name(compare(stats(2, fig(scores=worse)), stats(1, fig(scores=good)), checks))
    score = results["mean_score"]
    assert not score.passed
    assert (score.canary_value, score.baseline_value) == (pytest.approx(0.65), pytest.approx(0.95))
    assert "beyond noise" in score.detail
    close = [0.88, 0.98] * 20
    assert by_name(compare(stats(2, fig(scores=close)), stats(1, fig(scores=good)), checks))[
        "mean_score"
    ].passed
    # Fewer than min_feedback scores each: not judged.
    assert "mean_score" not in by_name(
        compare(stats(2, fig(scores=worse[:10])), stats(1, fig(scores=good)), checks)
    )


# -- from the audit log, through the controller --------------------------------------------

SPEC = """\
providers:
  mock:
    base_url: http://127.0.0.1:9/v1
    models: {large: {input: 5, output: 15}, small: {input: 1, output: 2}}
services:
  letters:
    owner: {name: Ops, contact: ops@example.com}
    kind: llm
    contract:
      input: {type: object, properties: {message: {type: string}}, required: [message]}
    rollout:
      steps: [10, 50, 100]
      interval_s: 60
      min_requests: 20
      failure_threshold: 1
"""


def calls(
    store: Store, version: int, n: int, *, cost: float, ttft: float, start_us: int = T0
) -> list[Record]:
    records = [
        Record(
            kind=KIND_INFERENCE,
            action="predict",
            ts_us=start_us + i * (MIN // n),
            payload={
                "input": {"message": "hello"},
                "output": {"text": "hi"},
                "llm": {
                    "provider": "mock",
                    "model": "large",
                    "usage": {"input_tokens": 10, "output_tokens": 5},
                    "cost_usd": cost,
                    "ttft_ms": ttft,
                    "fallback": False,
                },
            },
            service="letters",
            version=version,
            status=200,
            decision="auto",
            latency_ms=ttft * 2,
        )
        for i in range(n)
    ]
    with store.write() as conn:
        log.append(store, conn, records)
    return records


def prompt_versions(store: Store, *numbers: int) -> None:
    with store.write() as conn:
        for number in numbers:
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
                    created_at_us=T0,
                )
            )


def test_window_stats_of_prompt_versions_feed_the_checks(store: Store) -> None:
    prompt_versions(store, 1, 2)
    calls(store, 1, 40, cost=0.001, ttft=50.0)
    canary = calls(store, 2, 40, cost=0.001, ttft=120.0)
    with store.write() as conn:
        for r in canary[:25]:
            conn.execute(
                feedback.insert().values(
                    inference_id=r.id,
                    service="letters",
                    version=2,
                    value=orjson.dumps({"score": 0.9}).decode(),
                    source="t",
                    observed_at_us=T0,
                    received_at_us=T0,
                )
            )
    with store.read() as conn:
        c = window_stats(conn, "letters", 2, T0, T0 + MIN)
        b = window_stats(conn, "letters", 1, T0, T0 + MIN)
    results = by_name(compare(c, b, Checks()))
    assert not results["p95_ttft"].passed
    assert results["cost_per_call"].passed
    assert not results["p95_latency"].passed  # 240 ms against 100 ms
    assert "mean_score" not in results  # production has no scores


def test_the_controller_rolls_back_a_dearer_llm_canary(store: Store) -> None:
    spec = spec_module.parse(SPEC, Path("prodgate.yaml"))
    svc = spec.service("letters")
    prompt_versions(store, 1, 2)
    for number in (1, 2):
        approvals.approve(store, svc, number, by="reviewer", override_gates=True, reason="t")
    deployments.deploy(store, svc, 1, actor="dev")
    start(store, svc, 2, actor="alice", now_us=T0)
    calls(store, 1, 40, cost=0.001, ttft=50.0)
    calls(store, 2, 40, cost=0.003, ttft=50.0)  # a model three times the price
    [t] = tick(store, spec, T0 + MIN)
    assert (t.action, t.state) == ("rollback", "rolled_back")
    assert "cost per call $0.003000 vs $0.001000 in production: +200.0%" in t.reason
    with store.read() as conn:
        payload = conn.execute(
            sa.select(audit_log.c.payload).where(audit_log.c.action == "rollback")
        ).scalar_one()
    record = orjson.loads(payload)
    failed = [c["name"] for c in record["checks"] if not c["passed"]]
    assert failed == ["cost_per_call"]
    assert record["canary"]["llm"]["cost_usd"]["per_call"] == pytest.approx(0.003)
    assert record["baseline"]["llm"]["models"][0]["model"] == "mock/large"
