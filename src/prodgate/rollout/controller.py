"""The canary controller: judges running rollouts interval by interval.

:func:`tick` is driven by a clock the caller owns (``now_us``) and never sleeps,
which is how tests drive time and how :func:`run_controller` runs it in the server.
For each running rollout whose interval has elapsed it measures the canary and
production over the interval (:mod:`prodgate.rollout.analysis`), then steps the
canary up, promotes it, waits at the manual gate, counts a failure or rolls it
back (see the state machine in :mod:`prodgate.rollout.state`). Each transition is
one transaction: the rollout row, the split, the generation bump and the audit
records with the metrics that led to it commit together.

Only one controller acts on a rollout at a time. The judging reads happen outside
any lock; the write then takes the service's lock without waiting
(``pg_try_advisory_xact_lock`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
serialises writers), skips the service if another controller holds it, reads the
row again (``FOR UPDATE`` on PostgreSQL) and applies the transition only if the row
is exactly what was judged. So two controllers never both move one interval on.

The commands people use (start, pause, ...) live in :mod:`prodgate.rollout.commands`
and are re-exported here, so this module is the one entry point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from prodgate.audit import log
from prodgate.audit.record import Record
from prodgate.exceptions import NoRolloutError, RolloutRefused, RolloutStateError
from prodgate.monitor.window import VersionStats, window_stats
from prodgate.rollout import drift_check
from prodgate.rollout.analysis import CheckResult, compare
from prodgate.rollout.commands import abort, confirm, pause, resume, start
from prodgate.rollout.split import all_deployments, clear_canary, promote_canary, set_split
from prodgate.rollout.state import (
    ABORTED,
    ACTIVE_STATES,
    AWAITING,
    CONTROLLER_ACTOR,
    FINAL_STATES,
    PAUSED,
    PROMOTED,
    ROLLED_BACK,
    RUNNING,
    Rollout,
    Transition,
    active_rollout,
    compare_and_set,
    get_rollout,
    lock,
)
from prodgate.rollout.status import status
from prodgate.spec import ServiceSpec, Spec
from prodgate.store.engine import Store
from prodgate.store.engine import now_us as wall_clock_us
from prodgate.store.tables import rollouts

__all__ = [
    "ABORTED",
    "ACTIVE_STATES",
    "AWAITING",
    "FINAL_STATES",
    "PAUSED",
    "PROMOTED",
    "ROLLED_BACK",
    "RUNNING",
    "NoRolloutError",
    "Rollout",
    "RolloutRefused",
    "RolloutStateError",
    "Transition",
    "abort",
    "active_rollout",
    "confirm",
    "pause",
    "resume",
    "run_controller",
    "start",
    "status",
    "tick",
]

logger = logging.getLogger("prodgate.rollout")


@dataclass(frozen=True)
class _Verdict:
    canary: VersionStats
    baseline: VersionStats | None
    checks: list[CheckResult]
    failed: str  # why this interval failed; "" when it passed
    judged: bool  # False: not enough requests yet, leave the interval running


def _judge(store: Store, service: ServiceSpec, r: Rollout, now: int) -> _Verdict:
    p = r.policy
    business = service.policy.business
    with store.read() as conn:
        start = r.interval_started_at_us
        # Operations are judged on this interval's traffic, at the current weight;
        # cost and accuracy on every labelled decision since the rollout started,
        # since ground truth arrives late and a share of a canary is a small sample.
        since = r.started_at_us
        canary = window_stats(
            conn, r.service, r.canary_version, start, now, business, quality_start_us=since
        )
        if canary.requests < p.min_requests:
            idle = (now - start) // r.interval_us
            if idle < p.max_idle_intervals:
                return _Verdict(canary, None, [], "", judged=False)
            why = (
                f"too few requests: {canary.requests} to the canary in {idle} intervals "
                f"(min {p.min_requests})"
            )
            return _Verdict(canary, None, [], why, judged=True)
        baseline = window_stats(
            conn, r.service, r.baseline_version, start, now, business, quality_start_us=since
        )
        drift = None
        if p.checks.max_output_drift is not None:
            drift = drift_check.check(
                conn,
                r.service,
                r.canary_version,
                r.baseline_version,
                start,
                now,
                p.checks.max_output_drift,
                min_rows=p.min_requests,
            )
    checks = compare(canary, baseline, p.checks)
    if drift is not None:
        checks.append(drift)
    failed = "; ".join(c.detail for c in checks if not c.passed)
    return _Verdict(canary, baseline, checks, failed, judged=True)


def _metrics(r: Rollout, v: _Verdict, now: int) -> dict[str, Any]:
    return {
        "rollout_id": r.id,
        "step": r.step,
        "weight": r.weight,
        "window": {"start_us": r.interval_started_at_us, "end_us": now},
        "quality_window": {"start_us": r.started_at_us, "end_us": now},
        "checks": [c.as_dict() for c in v.checks],
        "canary": v.canary.as_dict(),
        "baseline": v.baseline.as_dict() if v.baseline is not None else None,
    }


def _apply(store: Store, r: Rollout, v: _Verdict, now: int) -> Transition | None:
    """Write the verdict's transition, unless another controller got there first."""
    p, actor = r.policy, CONTROLLER_ACTOR
    with store.write() as conn:
        if not lock(store, conn, r.service, wait=False):
            return None  # another controller is acting on this service
        current = get_rollout(conn, r.id, for_update=True)
        if current != r:
            return None  # judged a state that no longer exists
        metrics = _metrics(r, v, now)
        records: list[Record] = []
        if v.failed:
            failures = r.failures + 1
            metrics.update(failures=failures, failure_threshold=p.failure_threshold)
            records.append(
                log.action(
                    "rollout_check_failed",
                    actor=actor,
                    service=r.service,
                    version=r.canary_version,
                    reason=v.failed,
                    **metrics,
                )
            )
            if failures >= p.failure_threshold:
                state, step, action = ROLLED_BACK, r.step, "rollback"
                reason = f"automatic: {v.failed}"
                clear_canary(store, conn, r, actor, now)
                records.append(
                    log.action(
                        action,
                        actor=actor,
                        service=r.service,
                        version=r.baseline_version,
                        rolled_back=r.canary_version,
                        reason=reason,
                        **metrics,
                    )
                )
            else:
                state, step, action, reason = RUNNING, r.step, "rollout_check_failed", v.failed
        else:
            failures, nxt = r.failures, r.step + 1
            last = nxt >= len(p.steps) or p.steps[nxt] >= 100
            if last and p.manual_gate:
                state, step, action = AWAITING, r.step, "rollout_awaiting_confirmation"
                reason = "every step passed; waiting for 'prodgate rollout confirm'"
            elif last:
                state, step, action = PROMOTED, r.step, "promote"
                reason = "automatic: every step passed"
                metrics["previous"] = promote_canary(store, conn, r, actor, now)
            else:
                state, step, action = RUNNING, nxt, "rollout_step"
                weight = float(p.steps[nxt]) / 100.0
                reason = f"checks passed at {p.steps[r.step]:g}%; canary to {p.steps[nxt]:g}%"
                metrics["new_weight"] = weight
                set_split(store, conn, r.service, actor, now, canary_weight=weight)
            records.append(
                log.action(
                    action,
                    actor=actor,
                    service=r.service,
                    version=r.canary_version,
                    reason=reason,
                    **metrics,
                )
            )
        moved = compare_and_set(
            conn,
            r,
            state=state,
            step=step,
            failures=failures,
            interval_started_at_us=now,
            updated_at_us=now,
            reason=reason,
        )
        if not moved:  # pragma: no cover - the lock and the re-read make this unreachable
            raise RolloutStateError(f"rollout {r.id} changed while it was being judged")
        log.append(store, conn, records)
    return Transition(r.id, r.service, action, state, step, failures, reason)


def _hold(store: Store, r: Rollout, now: int) -> None:
    """Start *r*'s interval afresh at *now* without judging it (its service is off)."""
    with store.write() as conn:
        if (
            lock(store, conn, r.service, wait=False)
            and get_rollout(conn, r.id, for_update=True) == r
        ):
            compare_and_set(conn, r, interval_started_at_us=now, updated_at_us=now)


def tick(store: Store, spec: Spec, now_us: int | None = None) -> list[Transition]:
    """Judge every running rollout whose interval has elapsed at *now_us*.

    Safe to call from several controllers at once: each interval is judged once.
    A failure on one service does not stop the others; the first is raised at the end.
    While a service's kill switch is on, its canary answers nobody, so its rollout is
    not judged: each elapsed interval starts afresh, and judging resumes on the
    traffic that follows ``enable`` (rather than failing for too few requests).
    """
    now = wall_clock_us() if now_us is None else now_us
    with store.read() as conn:
        running = [
            Rollout.from_row(row)
            for row in conn.execute(
                sa.select(rollouts).where(rollouts.c.state == RUNNING).order_by(rollouts.c.id)
            ).all()
        ]
        disabled = {d.service for d in all_deployments(conn).values() if d.disabled}
    done: list[Transition] = []
    first_error: Exception | None = None
    for r in running:
        service = spec.services.get(r.service)
        if service is None or not r.due(now):
            continue  # a service no longer in the spec is left as it is, for a person
        try:
            if r.service in disabled:
                _hold(store, r, now)
                continue
            verdict = _judge(store, service, r, now)
            if not verdict.judged:
                continue
            transition = _apply(store, r, verdict, now)
        except Exception as exc:
            if first_error is not None:  # the first is raised below, the rest said here
                logger.error("rollout %s of %s: %s", r.id, r.service, exc)
            first_error = first_error or exc
            continue
        if transition is not None:
            logger.info(
                "rollout %s of %s v%s: %s (%s)",
                r.id,
                r.service,
                r.canary_version,
                transition.action,
                transition.reason,
            )
            done.append(transition)
    if first_error is not None:
        raise first_error
    return done


async def run_controller(
    store: Store,
    spec: Spec,
    interval: float = 1.0,
    clock: Callable[[], int] = wall_clock_us,
    stop: asyncio.Event | None = None,
) -> None:
    """Tick every *interval* seconds until cancelled (or *stop* is set).

    Errors are logged and the loop goes on: a store outage must not end rollouts'
    supervision, and the next tick picks up where the store says things are.
    """
    while stop is None or not stop.is_set():
        try:
            await asyncio.to_thread(tick, store, spec, clock())
        except Exception:
            logger.exception("rollout controller tick failed")
        if stop is None:
            await asyncio.sleep(interval)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
