"""Alert rules judged against figures: hysteresis (``for`` and ``clear``), states in the
store moved by conditional updates (one evaluator wins a transition), each transition
recorded in the audit log, and the Prometheus gauges. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from prodgate.audit import log
from prodgate.audit.verify import verify
from prodgate.monitor import alerts
from prodgate.monitor.alerts import FIRING, OK, PENDING, AlertMetrics, Figures
from prodgate.settings import Settings
from prodgate.spec import Spec, loading
from prodgate.store.engine import Store, open_store

SPEC = """\
services:
  claims:
    owner: {name: Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        properties:
          claim_amount: {type: number}
          customer_age: {type: [integer, "null"]}
    monitor:
      window: 1m
      alerts:
        - name: violations
          when: contract violations > 1%
          for: 2
          clear: 0.005
        - when: null_rate(customer_age) > 0.10
        - name: drifting
          when: drift share > 0.3 over 1h
"""

S = 1_000_000  # microseconds in a second
T0 = 1_700_000_000 * S


@pytest.fixture
def spec(tmp_path: Path) -> Spec:
    path = tmp_path / "prodgate.yaml"
    path.write_text(SPEC)
    return loading.load(path)


class Source:
    """Figures the test sets; records the spans it was asked for."""

    def __init__(self) -> None:
        self.values: dict[str, float | None] = {}
        self.spans: list[float] = []

    def __call__(
        self, store: Store, spec: Spec, service: str, *, span_s: float, now_us: int
    ) -> Figures:
        self.spans.append(span_s)
        return dict(self.values)


def _alert_records(store: Store) -> list[dict[str, object]]:
    with store.read() as conn:
        return [r for r in log.tail(conn, 1000, "claims") if r["action"] == "alert"]


def test_hysteresis_fires_after_for_and_resolves_only_past_clear(store: Store, spec: Spec) -> None:
    source = Source()
    registry = CollectorRegistry()
    metrics = AlertMetrics(registry)

    def tick(at_s: int, **values: float | None) -> list[alerts.Transition]:
        source.values = {k.replace("__", " "): v for k, v in values.items()}
        return alerts.tick(store, spec, source, T0 + at_s * S, metrics=metrics)

    def state(rule: str) -> str:
        with store.read() as conn:
            return {s.rule: s.state for s in alerts.states(conn, "claims")}[rule]

    def gauge(name: str, rule: str) -> float | None:
        return registry.get_sample_value(name, {"service": "claims", "alert": rule})

    assert tick(0, violation_rate=0.02) == []  # once: pending (for: 2)
    assert state("violations") == PENDING
    assert tick(10, violation_rate=0.004) == []  # back below: the streak is broken
    assert state("violations") == OK
    assert tick(20, violation_rate=0.02) == []
    (fired,) = tick(30, violation_rate=0.03)
    assert (fired.rule.name, fired.state, fired.value) == ("violations", "firing", 0.03)
    assert state("violations") == FIRING
    assert gauge("prodgate_alert_firing", "violations") == 1
    assert gauge("prodgate_alert_value", "violations") == 0.03
    # Between clear (0.005) and the threshold (1%): still firing.
    assert tick(40, violation_rate=0.008) == []
    assert tick(50, violation_rate=0.01) == []
    # Nothing known (no traffic): the state stays as it is.
    assert tick(60, violation_rate=None) == []
    assert state("violations") == FIRING
    (resolved,) = tick(70, violation_rate=0.005)
    assert resolved.state == "resolved"
    assert state("violations") == OK
    assert gauge("prodgate_alert_firing", "violations") == 0
    assert (
        registry.get_sample_value(
            "prodgate_alert_transitions_total",
            {"service": "claims", "alert": "violations", "state": "firing"},
        )
        == 1
    )
    # The figures were asked for once per span per tick: the window and "over 1h".
    assert sorted(set(source.spans)) == [60, 3600]
    assert len(source.spans) == 2 * 8

    records = _alert_records(store)
    assert [(r["alert"], r["state"]) for r in records] == [
        ("violations", "firing"),
        ("violations", "resolved"),
    ]
    first = records[0]
    assert first["actor"] == "monitor"
    assert first["kind"] == "action"
    assert first["id"] == fired.record_id
    assert first["value"] == 0.03
    assert first["threshold"] == pytest.approx(0.01)
    assert first["clear"] == 0.005
    assert first["key"] == "violation_rate"
    assert first["since_us"] == T0 + 20 * S  # the pending streak that led to it
    assert records[1]["since_us"] == T0 + 30 * S
    assert verify(store).ok


def test_rules_with_a_default_clear_and_with_a_span(store: Store, spec: Spec) -> None:
    source = Source()
    source.values = {"null_rate(customer_age)": 0.2, "drift share": 0.5}
    done = alerts.tick(store, spec, source, T0)
    assert sorted((t.rule.name, t.state) for t in done) == [
        ("drifting", "firing"),
        ("null_rate(customer_age) > 0.10", "firing"),
    ]
    source.values = {"null_rate(customer_age)": 0.1, "drift share": 0.31}
    done = alerts.tick(store, spec, source, T0 + 10 * S)
    assert [(t.rule.name, t.state) for t in done] == [
        ("null_rate(customer_age) > 0.10", "resolved")
    ]
    payload = done[0].as_dict()
    assert payload["service"] == "claims"
    assert payload["state"] == "resolved"
    assert payload["key"] == "null_rate(customer_age)"
    assert payload["at"].endswith("Z")


def test_a_replica_that_finds_a_rule_just_judged_leaves_it(store: Store, spec: Spec) -> None:
    source = Source()
    source.values = {"violation_rate": 0.5}
    alerts.tick(store, spec, source, T0, min_gap_s=5)
    # A second replica 1s later: the rule was judged in this interval already, so the
    # streak does not count it (for: 2 means two intervals, not two replicas).
    alerts.tick(store, spec, source, T0 + 1 * S, min_gap_s=5)
    with store.read() as conn:
        (violations,) = [s for s in alerts.states(conn, "claims") if s.rule == "violations"]
    assert (violations.state, violations.streak) == (PENDING, 1)
    assert alerts.tick(store, spec, source, T0 + 10 * S, min_gap_s=5)


@pytest.fixture
def second(settings: Settings, store: Store) -> Iterator[Store]:
    other = open_store(settings)  # another replica: its own engine on the same store
    yield other
    other.dispose()


def test_one_replica_wins_each_transition(store: Store, second: Store, tmp_path: Path) -> None:
    path = tmp_path / "prodgate.yaml"
    path.write_text(SPEC.replace("          for: 2\n", ""))
    service = loading.load(path).service("claims")
    rounds = [0.5, 0.0] * 3  # fire, resolve, ...
    for step, value in enumerate(rounds):
        figures = {"violation_rate": value, "null_rate(customer_age)": value}
        at = T0 + step * 10 * S
        barrier = threading.Barrier(2)
        made: list[list[alerts.Transition]] = [[], []]

        def run(i: int, s: Store, at: int = at, figures: Figures = figures) -> None:
            barrier.wait()
            made[i] = alerts.evaluate(s, service, lambda span: figures, at)

        threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate((store, second))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        both = made[0] + made[1]
        assert sorted(t.rule.name for t in both) == [
            "null_rate(customer_age) > 0.10",
            "violations",
        ], value
    records = _alert_records(store)
    assert len(records) == 2 * len(rounds)
    assert [r["state"] for r in records if r["alert"] == "violations"] == [
        "firing",
        "resolved",
    ] * 3
    assert verify(store).ok


def test_a_transition_judged_on_a_stale_state_changes_nothing(store: Store, spec: Spec) -> None:
    rule = spec.service("claims").monitor.alerts[1]  # null_rate, for: 1
    alerts.judge(store, "claims", rule, 0.0, T0)
    with store.read() as conn:
        (stale,) = [s for s in alerts.states(conn, "claims") if s.rule == rule.name]
    # Another evaluator fires it meanwhile.
    _, fired = alerts.judge(store, "claims", rule, 0.5, T0 + S)
    assert fired is not None
    with store.write() as conn:
        assert not alerts._compare_and_set(conn, stale, {"state": FIRING, "updated_at_us": T0})
    assert len(_alert_records(store)) == 1


def test_a_rule_taken_out_of_the_spec_is_forgotten(store: Store, spec: Spec) -> None:
    source = Source()
    source.values = {"null_rate(customer_age)": 0.5, "drift share": 0.0}
    registry = CollectorRegistry()
    metrics = AlertMetrics(registry)
    alerts.tick(store, spec, source, T0, metrics=metrics)
    claims = spec.service("claims")
    kept = tuple(r for r in claims.monitor.alerts if r.name == "drifting")
    fewer = replace(claims, monitor=replace(claims.monitor, alerts=kept))
    alerts.tick(store, Spec(spec.path, {"claims": fewer}), source, T0 + 10 * S, metrics=metrics)
    with store.read() as conn:
        assert [s.rule for s in alerts.states(conn, "claims")] == ["drifting"]
    records = _alert_records(store)
    assert [(r["alert"], r["state"]) for r in records] == [
        ("null_rate(customer_age) > 0.10", "firing"),
        ("null_rate(customer_age) > 0.10", "resolved"),
    ]
    assert records[1]["reason"] == "the rule is no longer in the spec"
    labels = {"service": "claims", "alert": "null_rate(customer_age) > 0.10"}
    assert registry.get_sample_value("prodgate_alert_firing", labels) is None
