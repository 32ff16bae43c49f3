"""Alerts: the spec's rules judged against a service's figures, with hysteresis, one
state per rule in the store, and each firing and resolving recorded and delivered.

A rule (:class:`prodgate.spec.monitor.Rule`) is judged on one figure: the value its
canonical key (``null_rate(customer_age)``, ``drift share``, ``estimated accuracy on
high_value``) has in the flat mapping a :class:`FiguresSource` gives for the service
over the rule's span (``over``, else the service's window). The state machine::

    ok --breached--> pending --breached `for` times in a row--> firing
    pending --not breached--> ok
    firing --past `clear` (default: the threshold)--> ok   (resolved)

A missing figure (None: no traffic, no profile, no calibration) leaves the state as
it is: no data is not evidence of health or of trouble.

State lives in ``alert_states`` (this module is its only writer), one row per service
and rule. Every change is a conditional update on the row as it was read (state,
streak and time of the last update), so when several replicas evaluate at once one
update matches and the others change nothing: only the winner records the
transition in the audit log (in the same transaction) and hands it to the webhooks.
A replica that finds a rule evaluated less than ``min_gap_s`` ago leaves it alone, so
``for`` counts evaluation intervals, not replicas (the server's loop passes
:data:`MIN_GAP` of its interval). A rule taken out of the spec is forgotten: its row
is removed and, if it was firing, that is recorded as its resolution.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from prodgate.audit import log
from prodgate.spec import ServiceSpec, Spec
from prodgate.spec.monitor import Rule
from prodgate.store.engine import Store
from prodgate.store.engine import now_us as wall_clock_us
from prodgate.store.tables import alert_states

logger = logging.getLogger("prodgate.monitor.alerts")

OK, PENDING, FIRING = "ok", "pending", "firing"
#: What a transition is called in the audit log, the webhooks and the metrics.
FIRED, RESOLVED = "firing", "resolved"
#: The audit log's action and actor for alert transitions.
ACTION_ALERT = "alert"
MONITOR_ACTOR = "monitor"

#: The share of an interval within which a rule judged by another replica is left
#: alone: one replica's own evaluations are at least an interval apart.
MIN_GAP = 0.9

#: A service's figures: canonical figure key -> value (None: not known).
Figures = Mapping[str, float | None]


class FiguresSource(Protocol):
    """Where figures come from: ``prodgate.monitor.report.figures`` in the server.

    Returns the figures of *service* (its production version) over the *span_s*
    seconds ending at *now_us*, keyed as :mod:`prodgate.spec.monitor` spells them.
    """

    def __call__(
        self, store: Store, spec: Spec, service: str, *, span_s: float, now_us: int
    ) -> Figures: ...


class AlertMetrics:
    """The alerts' Prometheus series, in the gateway's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.firing = Gauge(
            "prodgate_alert_firing",
            "1 while an alert rule of a service fires, else 0 (as this replica last saw it).",
            ["service", "alert"],
            registry=r,
        )
        self.value = Gauge(
            "prodgate_alert_value",
            "The figure an alert rule was last judged on (NaN when it was not known).",
            ["service", "alert"],
            registry=r,
        )
        self.transitions = Counter(
            "prodgate_alert_transitions",
            "Alert transitions this replica made (state: firing, resolved).",
            ["service", "alert", "state"],
            registry=r,
        )
        self.evaluation_errors = Counter(
            "prodgate_monitor_evaluation_errors",
            "Evaluations of a service's alert rules that failed (figures or store).",
            ["service"],
            registry=r,
        )
        self.webhooks = Counter(
            "prodgate_alert_webhook_deliveries",
            "Webhook deliveries of alert transitions by outcome: ok, retry (a failed try "
            "that will be tried again), failed (tries exhausted), dropped (queue full or "
            "stopped before delivery).",
            ["outcome"],
            registry=r,
        )


@dataclass(frozen=True)
class AlertState:
    """A rule's stored state."""

    service: str
    rule: str
    state: str
    value: float | None
    streak: int
    since_us: int
    updated_at_us: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "alert": self.rule,
            "state": self.state,
            "value": self.value,
            "streak": self.streak,
            "since_us": self.since_us,
            "updated_at_us": self.updated_at_us,
        }


@dataclass(frozen=True)
class Transition:
    """An alert that fired or resolved, as recorded (``record_id``) and delivered."""

    service: str
    rule: Rule
    state: str  # FIRED or RESOLVED
    value: float
    at_us: int
    since_us: int  # when the state it left began
    record_id: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON a webhook receives."""
        return {
            "type": "prodgate.alert",
            "service": self.service,
            "alert": self.rule.name,
            "state": self.state,
            "when": self.rule.text,
            "key": self.rule.key,
            "value": self.value,
            "threshold": self.rule.threshold,
            "clear": self.rule.resolve_at,
            "at": _iso(self.at_us),
            "at_us": self.at_us,
            "since_us": self.since_us,
            "audit_id": self.record_id,
        }


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def next_state(rule: Rule, state: str, streak: int, value: float) -> tuple[str, int]:
    """The state and streak after judging *value* (the hysteresis, as a pure function)."""
    if state == FIRING:
        return (OK, 0) if rule.cleared(value) else (FIRING, 0)
    if rule.breached(value):
        streak += 1
        return (FIRING, 0) if streak >= rule.for_ else (PENDING, streak)
    return OK, 0


def states(conn: Connection, service: str | None = None) -> list[AlertState]:
    """The stored states (of one service, or all), by service and rule."""
    q = sa.select(alert_states).order_by(alert_states.c.service, alert_states.c.rule)
    if service is not None:
        q = q.where(alert_states.c.service == service)
    return [AlertState(**row._mapping) for row in conn.execute(q).all()]


def firing(conn: Connection, service: str) -> list[AlertState]:
    """The service's rules firing now, as the store holds them."""
    return [s for s in states(conn, service) if s.state == FIRING]


def _read(conn: Connection, service: str, rule: str) -> AlertState | None:
    c = alert_states.c
    row = conn.execute(sa.select(alert_states).where(c.service == service, c.rule == rule)).first()
    return AlertState(**row._mapping) if row is not None else None


def _insert(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert a rule's first row unless another evaluator just did; whether it did."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(alert_states).values(**values).on_conflict_do_nothing()
    # RETURNING, not rowcount: drivers report -1 for an INSERT that returns rows.
    return conn.execute(stmt.returning(alert_states.c.rule)).first() is not None


def _compare_and_set(conn: Connection, before: AlertState, values: dict[str, Any]) -> bool:
    result = conn.execute(
        alert_states.update()
        .where(
            alert_states.c.service == before.service,
            alert_states.c.rule == before.rule,
            alert_states.c.state == before.state,
            alert_states.c.streak == before.streak,
            alert_states.c.updated_at_us == before.updated_at_us,
        )
        .values(**values)
    )
    return result.rowcount == 1


def judge(
    store: Store,
    service: str,
    rule: Rule,
    value: float | None,
    now_us: int,
    *,
    min_gap_us: int = 0,
) -> tuple[AlertState | None, Transition | None]:
    """Judge one rule on *value* at *now_us*: the state it is in afterwards (None when
    the store holds none yet) and the transition this call made, if any."""
    with store.write() as conn:
        before = _read(conn, service, rule.name)
        if value is None or (before is not None and now_us - before.updated_at_us < min_gap_us):
            return before, None  # nothing known, or another evaluator judged it just now
        state, streak = before.state if before else OK, before.streak if before else 0
        new_state, new_streak = next_state(rule, state, streak, value)
        since = before.since_us if before is not None and new_state == before.state else now_us
        values = {
            "state": new_state,
            "value": value,
            "streak": new_streak,
            "since_us": since,
            "updated_at_us": now_us,
        }
        if before is None:
            won = _insert(conn, {"service": service, "rule": rule.name, **values})
        else:
            won = _compare_and_set(conn, before, values)
        if not won:
            return _read(conn, service, rule.name), None
        after = AlertState(service, rule.name, new_state, value, new_streak, since, now_us)
        event = None
        if new_state == FIRING and state != FIRING:
            event = FIRED
        elif state == FIRING and new_state == OK:
            event = RESOLVED
        if event is None:
            return after, None
        previous_since = before.since_us if before is not None else now_us
        record = log.action(
            ACTION_ALERT,
            actor=MONITOR_ACTOR,
            service=service,
            alert=rule.name,
            state=event,
            when=rule.text,
            key=rule.key,
            value=value,
            op=rule.op,
            threshold=rule.threshold,
            clear=rule.resolve_at,
            over_s=rule.over_s,
            evaluations=rule.for_,
            since_us=previous_since,
            evaluated_at_us=now_us,
        )
        log.append(store, conn, [record])
    return after, Transition(service, rule, event, value, now_us, previous_since, record.id)


def forget(store: Store, service: str, declared: set[str], now_us: int) -> list[str]:
    """Remove the stored states of *service*'s rules it no longer declares; a rule
    that was firing is recorded as resolved (``reason``: removed). Returns their names."""
    with store.read() as conn:
        stale = [s for s in states(conn, service) if s.rule not in declared]
    removed = []
    for old in stale:
        with store.write() as conn:
            c = alert_states.c
            gone = conn.execute(
                alert_states.delete().where(
                    c.service == service,
                    c.rule == old.rule,
                    c.state == old.state,
                    c.updated_at_us == old.updated_at_us,
                )
            ).rowcount
            if gone != 1:
                continue  # another evaluator removed or moved it
            if old.state == FIRING:
                record = log.action(
                    ACTION_ALERT,
                    actor=MONITOR_ACTOR,
                    service=service,
                    alert=old.rule,
                    state=RESOLVED,
                    reason="the rule is no longer in the spec",
                    since_us=old.since_us,
                    evaluated_at_us=now_us,
                )
                log.append(store, conn, [record])
        removed.append(old.rule)
    return removed


def evaluate(
    store: Store,
    service: ServiceSpec,
    figures: Callable[[float], Figures],
    now_us: int,
    *,
    min_gap_us: int = 0,
    metrics: AlertMetrics | None = None,
) -> list[Transition]:
    """Judge every rule of *service*; *figures(span_s)* gives the figures over a span
    (asked once per distinct span). Returns the transitions this evaluator made."""
    monitor = service.monitor
    by_span = {span: figures(span) for span in monitor.spans()}
    done: list[Transition] = []
    for rule in monitor.alerts:
        raw = by_span[rule.over_s or monitor.window_s].get(rule.key)
        value = _finite(raw)
        state, transition = judge(store, service.name, rule, value, now_us, min_gap_us=min_gap_us)
        if metrics is not None:
            shown = value if value is not None else (state.value if state is not None else None)
            metrics.value.labels(service.name, rule.name).set(math.nan if shown is None else shown)
            on = state is not None and state.state == FIRING
            metrics.firing.labels(service.name, rule.name).set(1 if on else 0)
            if transition is not None:
                metrics.transitions.labels(service.name, rule.name, transition.state).inc()
        if transition is not None:
            logger.warning(
                "alert %s of %s %s: %s = %g (%s)",
                rule.name,
                service.name,
                transition.state,
                rule.key,
                transition.value,
                rule.text,
            )
            done.append(transition)
    return done


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def tick(
    store: Store,
    spec: Spec,
    source: FiguresSource,
    now_us: int | None = None,
    *,
    min_gap_s: float = 0.0,
    metrics: AlertMetrics | None = None,
) -> list[Transition]:
    """Evaluate the rules of every service that declares some, at *now_us*.

    A failure on one service (its figures, the store) does not stop the others, nor
    lose their transitions: it is logged and counted (``evaluation_errors``).
    """
    now = wall_clock_us() if now_us is None else now_us
    done: list[Transition] = []
    for service in spec.services.values():

        def figures(span_s: float, name: str = service.name) -> Figures:
            return source(store, spec, name, span_s=span_s, now_us=now)

        try:
            removed = forget(store, service.name, {r.name for r in service.monitor.alerts}, now)
            if metrics is not None:
                for name in removed:
                    for gauge in (metrics.firing, metrics.value):
                        with contextlib.suppress(KeyError):  # never shown by this replica
                            gauge.remove(service.name, name)
            if service.monitor.alerts:
                done += evaluate(
                    store, service, figures, now, min_gap_us=int(min_gap_s * 1e6), metrics=metrics
                )
        except Exception:
            if metrics is not None:
                metrics.evaluation_errors.labels(service.name).inc()
            logger.exception("evaluating the alerts of %s failed", service.name)
    return done


class Deliverer(Protocol):
    """What takes transitions to their webhooks (:class:`prodgate.monitor.webhooks.Webhooks`)."""

    def send(self, payload: Mapping[str, Any], urls: tuple[str, ...]) -> None: ...


async def run_monitor(
    store: Store,
    spec: Spec,
    source: FiguresSource,
    interval: float = 10.0,
    *,
    metrics: AlertMetrics | None = None,
    webhooks: Deliverer | None = None,
    clock: Callable[[], int] = wall_clock_us,
    stop: asyncio.Event | None = None,
) -> None:
    """Evaluate every *interval* seconds until cancelled (or *stop* is set); hand each
    transition to *webhooks* (which deliver in their own task).

    Errors are logged and the loop goes on: the next evaluation picks up from the
    states in the store.
    """
    services = {s.name: s for s in spec.services.values() if s.monitor.alerts}
    if not services:
        return
    while stop is None or not stop.is_set():
        try:
            done = await asyncio.to_thread(
                tick, store, spec, source, clock(), min_gap_s=MIN_GAP * interval, metrics=metrics
            )
        except Exception:
            logger.exception("alert evaluation failed")
            done = []
        for transition in done:
            urls = services[transition.service].monitor.webhooks
            if webhooks is not None and urls:
                webhooks.send(transition.as_dict(), urls)
        if stop is None:
            await asyncio.sleep(interval)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
