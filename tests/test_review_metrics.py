"""The review queue on ``/metrics`` (a cached collector), and as alert figures: the
``review_overdue`` and ``review_queue`` rules, and the built-in ``review-overdue`` rule
that fires when an item passes its deadline and resolves once it is decided."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway_support import running
from prodgate.audit import log
from prodgate.monitor import alerts
from prodgate.monitor.operational import default_source
from prodgate.review import metrics as review_metrics
from prodgate.review.stats import review_figures
from prodgate.settings import Settings
from prodgate.spec.monitor import REVIEW_OVERDUE, build, parse_rule, with_review
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import review_items
from review_report_support import HOUR, NOW, Item, add, load_spec, row
from test_evaluation_store import SPEC as PLAIN


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{wanted}}} in /metrics")


def test_the_collector_reads_the_queue_once_per_ttl(settings: Settings, store: Store) -> None:
    load_spec(settings)
    add(
        store,
        [
            Item(row(1.0), "routine", created_us=NOW - 3 * HOUR),  # overdue
            Item(row(2.0), "routine", created_us=NOW - HOUR // 2),
            Item(row(3.0), "routine", reviews={"alice": "routine"}),
        ],
    )
    clock = [100.0]
    registry = CollectorRegistry()
    collector = review_metrics.ReviewCollector(
        ["claims"], lambda: store, clock=lambda: clock[0], now_us=lambda: NOW
    )
    registry.register(collector)
    assert collector.reads == 0  # registering asks the store nothing
    text = generate_latest(registry).decode()
    assert _sample(text, "prodgate_review_items", service="claims", state="open") == 2
    assert _sample(text, "prodgate_review_items", service="claims", state="decided") == 1
    assert _sample(text, "prodgate_review_items", service="claims", state="adjudication") == 0
    assert _sample(text, "prodgate_review_oldest_age_seconds", service="claims") == 3 * 3600
    assert _sample(text, "prodgate_review_overdue_items", service="claims") == 1
    add(store, [Item(row(4.0), "routine", created_us=NOW - 2 * HOUR)])
    generate_latest(registry)
    assert collector.reads == 1  # within the TTL: the cached reading
    clock[0] += review_metrics.TTL_S
    text = generate_latest(registry).decode()
    assert collector.reads == 2
    assert _sample(text, "prodgate_review_overdue_items", service="claims") == 2
    # No store yet (the server has not started): no series, no error.
    empty = CollectorRegistry()
    empty.register(review_metrics.ReviewCollector(["claims"], lambda: None))
    assert "prodgate_review_items{" not in generate_latest(empty).decode()
    # Only services that declare review are collected.
    assert (
        review_metrics.register(CollectorRegistry(), load_spec(settings, PLAIN), lambda: store)
        is None
    )


@pytest.mark.anyio
async def test_the_server_shows_the_queue_on_metrics(settings: Settings, store: Store) -> None:
    load_spec(settings)
    add(store, [Item(row(1.0), "routine", created_us=now_us() - 2 * HOUR)])  # the real clock
    async with running(settings) as client:
        text = (await client.get("/metrics")).text
    assert _sample(text, "prodgate_review_items", service="claims", state="open") == 1
    assert _sample(text, "prodgate_review_overdue_items", service="claims") == 1


def test_rules_on_the_review_figures() -> None:
    assert parse_rule("review_overdue > 0").key == "review_overdue"
    rule = parse_rule("review_queue >= 50")
    assert (rule.metric, rule.threshold) == ("review_queue", 50.0)
    with pytest.raises(ValueError, match="takes no column"):
        parse_rule("review_queue(amount) > 1", columns=["amount"])
    plain = build(None, "classifier", [])
    assert with_review(plain, False) is plain
    assert with_review(plain, True).alerts == (REVIEW_OVERDUE,)
    own = build(
        {"alerts": [{"name": "review-overdue", "when": "review_overdue > 5"}]}, "classifier", []
    )
    assert with_review(own, True) is own  # a rule of the service's own takes its place


def test_the_overdue_alert_fires_and_resolves_when_decided(
    settings: Settings, store: Store
) -> None:
    spec = load_spec(settings)
    declared = spec.service("claims")
    service = dataclasses.replace(
        declared, monitor=with_review(declared.monitor, declared.review.on)
    )
    (item_id, _), _ = add(
        store,
        [
            Item(row(1.0), "routine", created_us=NOW - 50 * 60_000_000),  # due at NOW + 10m
            Item(row(2.0), "routine", reviews={"alice": "routine"}, created_us=NOW - 3 * HOUR),
        ],
    )
    source = default_source()

    def at(now: int) -> list[alerts.Transition]:
        def figures(span_s: float) -> alerts.Figures:
            return source(store, spec, "claims", span_s=span_s, now_us=now)

        return alerts.evaluate(store, service, figures, now)

    assert at(NOW) == []  # the item is not due yet
    (fired,) = at(NOW + 11 * 60_000_000)
    assert (fired.state, fired.rule.name, fired.value) == ("firing", "review-overdue", 1.0)
    assert at(NOW + 12 * 60_000_000) == []  # still firing
    with store.write() as conn:
        conn.execute(
            review_items.update()
            .where(review_items.c.id == item_id)
            .values(state="decided", final='"routine"', override=False, decided_us=NOW)
        )
    (resolved,) = at(NOW + 13 * 60_000_000)
    assert (resolved.state, resolved.value) == ("resolved", 0.0)
    with store.read() as conn:
        recorded = [r for r in log.tail(conn, 20) if r["action"] == "alert"]
    assert [r["state"] for r in recorded] == ["firing", "resolved"]
    assert review_figures(store, spec, "claims", span_s=1.0, now_us=NOW)["review_queue"] == 0.0
