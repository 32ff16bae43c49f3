"""Window statistics from the audit log and feedback, and the canary checks."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest

from feedback_support import insert_truth
from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.monitor.window import VersionStats, window_stats
from prodgate.rollout.analysis import compare
from prodgate.spec import Business, Checks, Cost
from prodgate.store.engine import Store

T0 = 1_700_000_000_000_000
MIN = 60_000_000
BUSINESS = Business(
    "adjuster",
    {
        "false_negative": Cost(rate=0.1, of="amount"),
        "false_positive": Cost(amount=40.0),
        "escalation": Cost(amount=25.0),
    },
)


def inference(
    version: int | None,
    ts: int,
    *,
    status: int = 200,
    latency: float = 10.0,
    decision: str | None = None,
    prediction: str = "routine",
    amount: float = 100.0,
    service: str = "claims",
    action: str = "predict",
) -> Record:
    payload: dict[str, Any] = {"input": {"amount": amount, "category": "auto"}}
    if status == 200:
        payload["output"] = {"prediction": prediction, "probabilities": None}
    return Record(
        kind=KIND_INFERENCE,
        action=action,
        ts_us=ts,
        payload=payload,
        service=service,
        version=version,
        status=status,
        decision=decision or ("auto" if status == 200 else "rejected"),
        latency_ms=latency,
    )


def append(store: Store, records: list[Record], truths: dict[str, str] | None = None) -> None:
    with store.write() as conn:
        log.append(store, conn, records)
        for rid, truth in (truths or {}).items():
            insert_truth(conn, rid, truth, T0)


def stats(store: Store, version: int, business: Business | None = None) -> VersionStats:
    with store.read() as conn:
        return window_stats(conn, "claims", version, T0, T0 + MIN, business)


def test_counts_rates_and_p95(store: Store) -> None:
    records = [inference(2, T0 + i, latency=float(i + 1)) for i in range(100)]  # 1..100 ms
    records += [inference(2, T0 + 200 + i, decision="escalated", latency=5.0) for i in range(20)]
    records += [inference(2, T0 + 300, status=500), inference(2, T0 + 301, status=503)]
    records += [inference(2, T0 + 400 + i, status=422) for i in range(6)]
    append(store, records)
    s = stats(store, 2)
    assert (s.requests, s.errors, s.successes, s.escalations, s.violations) == (128, 2, 120, 20, 6)
    assert s.error_rate == pytest.approx(2 / 128)
    assert s.escalation_rate == pytest.approx(20 / 120)
    assert s.violation_rate == pytest.approx(6 / 128)
    # nearest rank over 120 successes: the 114th smallest; twenty 5s come first
    assert s.p95_latency_ms == 94.0
    assert s.labelled == 0
    assert s.accuracy is None
    assert s.cost_per_decision is None


def test_the_window_is_half_open_and_selective(store: Store) -> None:
    append(
        store,
        [
            inference(2, T0),  # counted: the start is inside
            inference(2, T0 + MIN - 1),  # counted
            inference(2, T0 + MIN),  # the end is outside: the next window's
            inference(2, T0 - 1),  # before
            inference(1, T0 + 5),  # another version
            inference(2, T0 + 5, service="other"),  # another service
            inference(2, T0 + 5, action="shadow"),  # a shadow copy answered nobody
        ],
    )
    s = stats(store, 2)
    assert s.requests == 2
    assert s.successes == 2


def test_empty_window(store: Store) -> None:
    s = stats(store, 2, BUSINESS)
    assert s.requests == 0
    assert s.p95_latency_ms is None
    assert s.error_rate == s.escalation_rate == s.violation_rate == 0.0
    assert s.accuracy is None
    assert s.cost_per_decision is None
    assert s.as_dict()["error_rate"] == 0.0


def test_accuracy_and_business_cost_from_feedback(store: Store) -> None:
    right = inference(2, T0 + 1, prediction="adjuster")  # true positive: 0
    missed = inference(2, T0 + 2, prediction="routine", amount=5000.0)  # FN: 0.1 * 5000
    alarm = inference(2, T0 + 3, prediction="adjuster")  # false positive: 40
    escalated = inference(2, T0 + 4, prediction="routine", decision="escalated")  # 25
    unlabelled = inference(2, T0 + 5)
    refused = inference(2, T0 + 6, status=422)
    append(
        store,
        [right, missed, alarm, escalated, unlabelled, refused],
        {
            right.id: "adjuster",
            missed.id: "adjuster",
            alarm.id: "routine",
            escalated.id: "routine",
            refused.id: "routine",  # not an accepted decision: ignored
        },
    )
    s = stats(store, 2, BUSINESS)
    assert s.labelled == 4
    assert s.graded == 4
    assert s.accuracy == pytest.approx(2 / 4)  # right and escalated (its prediction was right)
    assert s.cost_total == pytest.approx(0 + 500 + 40 + 25)
    assert s.cost_sq == pytest.approx(0 + 500**2 + 40**2 + 25**2)
    assert s.cost_variance() == pytest.approx(statistics.variance([0, 500, 40, 25]))
    assert s.cost_per_decision == pytest.approx(565 / 4)
    assert stats(store, 2).cost_per_decision is None  # no business section, no cost


def test_quality_may_look_further_back_than_operations(store: Store) -> None:
    earlier = inference(2, T0 - MIN, prediction="adjuster")  # before this window
    now = inference(2, T0 + 1, prediction="routine")
    failed = inference(2, T0 - 5, status=500)
    append(store, [earlier, now, failed], {earlier.id: "adjuster", now.id: "adjuster"})
    with store.read() as conn:
        s = window_stats(conn, "claims", 2, T0, T0 + MIN, quality_start_us=T0 - MIN)
    assert (s.requests, s.errors) == (1, 0)  # operations: this window only
    assert (s.graded, s.correct) == (2, 1)  # quality: since the earlier start
    assert stats(store, 2).graded == 1  # by default the same window for both


def test_feedback_rows_read_are_bounded(store: Store) -> None:
    records = [inference(2, T0 + i) for i in range(30)]
    append(store, records, {r.id: "routine" for r in records})
    with store.read() as conn:
        s = window_stats(conn, "claims", 2, T0, T0 + MIN, feedback_limit=10)
    assert s.successes == 30
    assert s.labelled == 10


# -- compare (pure) ------------------------------------------------------------------


def vs(**kw: Any) -> VersionStats:
    base: dict[str, Any] = {
        "version": 1,
        "start_us": T0,
        "end_us": T0 + MIN,
        "requests": 1000,
        "successes": 1000,
        "p95_latency_ms": 20.0,
    }
    base.update(kw)
    return VersionStats(**base)


def by_name(results: list[Any]) -> dict[str, Any]:
    return {r.name: r for r in results}


def test_equal_versions_pass_every_check() -> None:
    results = compare(vs(version=2), vs(), Checks())
    assert [r.name for r in results] == [
        "error_rate",
        "p95_latency",
        "escalation_rate",
        "violation_rate",
    ]
    assert all(r.passed for r in results)


@pytest.mark.parametrize(
    ("canary", "failing"),
    [
        ({"errors": 30}, "error_rate"),  # 3% vs 1% > +1%
        ({"p95_latency_ms": 40.0}, "p95_latency"),  # x2 > x1.5
        ({"escalations": 200}, "escalation_rate"),  # 20% vs 10% > +5%
        ({"violations": 60}, "violation_rate"),  # 6% vs 2% > +2%
    ],
)
def test_each_check_fails_past_its_limit(canary: dict[str, Any], failing: str) -> None:
    baseline = vs(errors=10, escalations=100, violations=20)
    canary_stats = vs(**{"errors": 10, "escalations": 100, "violations": 20, **canary})
    results = by_name(compare(canary_stats, baseline, Checks()))
    assert [n for n, r in results.items() if not r.passed] == [failing]
    assert failing.split("_")[0] in results[failing].detail


def test_limits_are_inclusive() -> None:
    # exactly +1% errors, exactly x1.5 latency
    results = compare(vs(errors=20, p95_latency_ms=30.0), vs(errors=10), Checks())
    assert all(r.passed for r in results)


def test_sub_millisecond_latencies_are_not_compared_as_ratios() -> None:
    results = by_name(compare(vs(p95_latency_ms=0.9), vs(p95_latency_ms=0.3), Checks()))
    assert results["p95_latency"].passed


def test_latency_without_successes_is_not_judged() -> None:
    results = by_name(compare(vs(p95_latency_ms=None), vs(), Checks()))
    assert results["p95_latency"].passed
    assert "not compared" in results["p95_latency"].detail


def test_cost_and_accuracy_need_enough_feedback_on_both() -> None:
    good = vs(labelled=50, graded=50, correct=45, cost_total=500.0)
    worse = vs(version=2, labelled=50, graded=50, correct=40, cost_total=700.0)
    plain = Checks(min_feedback=20, confidence=0)  # point values, no test of noise
    results = by_name(compare(worse, good, plain))
    assert not results["cost_per_decision"].passed  # +40% > +10%
    assert results["cost_per_decision"].canary_value == pytest.approx(14.0)
    assert not results["accuracy"].passed  # 0.80 vs 0.90
    few = vs(version=2, labelled=10, graded=10, correct=1, cost_total=900.0)
    assert "accuracy" not in by_name(compare(few, good, plain))
    assert "cost_per_decision" not in by_name(compare(worse, few, plain))


def costs(version: int, values: list[float], correct: int) -> VersionStats:
    return vs(
        version=version,
        labelled=len(values),
        graded=len(values),
        correct=correct,
        cost_total=sum(values),
        cost_sq=sum(v * v for v in values),
    )


def test_a_heavy_tailed_cost_spike_within_noise_passes() -> None:
    # Production: 200 decisions, mostly cheap, six large misses. The canary drew four
    # more large misses: +50% in cost per decision, which is what a few claims do.
    base = [10.0] * 194 + [1000.0] * 6
    canary = [10.0] * 190 + [1000.0] * 10
    results = by_name(
        compare(costs(2, canary, 190), costs(1, base, 190), Checks(max_cost_increase=0.1))
    )
    check = results["cost_per_decision"]
    assert check.canary_value == pytest.approx(1.5 * check.baseline_value, rel=0.01)
    assert check.passed
    assert "within noise" in check.detail
    # The same shares over 20x the decisions are no longer noise.
    many = by_name(
        compare(
            costs(2, canary * 20, 3800), costs(1, base * 20, 3800), Checks(max_cost_increase=0.1)
        )
    )
    assert not many["cost_per_decision"].passed
    assert "beyond noise" in many["cost_per_decision"].detail


def test_an_accuracy_drop_must_be_past_the_limit_beyond_noise() -> None:
    # 0.80 vs 0.90 on 50 labels each: z = (0.10 - 0.02) / 0.071 = 1.13, not significant.
    small = by_name(compare(costs(2, [1.0] * 50, 40), costs(1, [1.0] * 50, 45), Checks()))
    assert small["accuracy"].passed
    assert "within noise" in small["accuracy"].detail
    # On 1,000 labels each the same drop is certain.
    large = by_name(compare(costs(2, [1.0] * 1000, 800), costs(1, [1.0] * 1000, 900), Checks()))
    assert not large["accuracy"].passed
    # A drop inside the limit passes whatever the sample size, with no test made.
    inside = by_name(compare(costs(2, [1.0] * 1000, 890), costs(1, [1.0] * 1000, 900), Checks()))
    assert inside["accuracy"].passed
    assert "noise" not in inside["accuracy"].detail


def test_cost_against_a_free_baseline() -> None:
    free = vs(labelled=30, graded=30, correct=30, cost_total=0.0)
    costly = vs(version=2, labelled=30, graded=30, correct=30, cost_total=30.0)
    results = by_name(compare(costly, free, Checks()))
    assert not results["cost_per_decision"].passed
    assert by_name(compare(free, free, Checks()))["cost_per_decision"].passed


def test_check_results_serialise() -> None:
    result = compare(vs(), vs(), Checks())[0]
    d = result.as_dict()
    assert set(d) == {"name", "passed", "canary_value", "baseline_value", "limit", "detail"}
    assert not math.isnan(d["limit"])
