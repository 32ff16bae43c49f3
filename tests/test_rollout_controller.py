"""The canary controller on both stores: steps, promotion, rollback, gates, commands,
restarts and two controllers racing, driven by a clock the test owns."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from feedback_support import insert_truth
from prodgate import spec as spec_module
from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.exceptions import (
    ConflictError,
    NotApprovedError,
    UnknownVersionError,
    UsageError,
)
from prodgate.registry import approvals, versions
from prodgate.rollout import controller
from prodgate.rollout import split as deployments
from prodgate.rollout.controller import (
    NoRolloutError,
    RolloutRefused,
    RolloutStateError,
    Transition,
    run_controller,
    start,
    status,
    tick,
)
from prodgate.rollout.split import get_deployment
from prodgate.settings import Settings
from prodgate.spec import ServiceSpec, Spec
from prodgate.store.engine import Store
from prodgate.store.engine import now_us as wall_clock_us
from prodgate.store.tables import audit_log, rollouts

SPEC = """\
version: 1
services:
  claims:
    owner: {name: Claims Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        required: [amount, category]
        properties:
          amount: {type: number, minimum: 0}
          category: {type: string, enum: [auto, home, travel]}
    escalation: {confidence_below: 0.7}
    business:
      positive: adjuster
      costs: {false_negative: {rate: 0.1, of: amount}, false_positive: 40, escalation: 25}
    rollout:
      steps: [10, 50, 100]
      interval_s: 60
      min_requests: 20
      failure_threshold: 2
      max_idle_intervals: 2
"""

T0 = 1_700_000_000_000_000
MIN = 60_000_000  # one interval


@dataclass
class World:
    store: Store
    spec: Spec
    svc: ServiceSpec


def setup(store: Store, *, deploy: bool = True, **rollout: Any) -> World:
    spec = spec_module.parse(SPEC, Path("prodgate.yaml"))
    svc = spec.service("claims")
    if rollout:
        policy = replace(svc.policy, rollout=replace(svc.policy.rollout, **rollout))
        svc = replace(svc, policy=policy)
        spec = Spec(spec.path, {**spec.services, "claims": svc})
    for ref in ("fixture_models:claims", "fixture_models:claims_v2"):
        v = versions.register(store, svc, ref, actor="dev")
        approvals.approve(
            store, svc, v.number, by="someone-else", override_gates=True, reason="test"
        )
    if deploy:
        deployments.deploy(store, svc, 1, actor="dev")
    return World(store, spec, svc)


def traffic(
    store: Store,
    version: int,
    start_us: int,
    n: int,
    *,
    errors: int = 0,
    latency: float = 10.0,
    escalated: int = 0,
) -> None:
    """*n* inference records of *version* spread over the interval from *start_us*."""
    records = []
    for i in range(n):
        status = 500 if i < errors else 200
        decision = "rejected" if status != 200 else ("escalated" if i >= n - escalated else "auto")
        records.append(
            Record(
                kind=KIND_INFERENCE,
                action="predict",
                ts_us=start_us + i * (MIN // max(n, 1)),
                payload={"input": {"amount": 10.0, "category": "auto"}},
                service="claims",
                version=version,
                status=status,
                decision=decision,
                latency_ms=latency,
            )
        )
    with store.write() as conn:
        log.append(store, conn, records)


def healthy(store: Store, start_us: int, canary: int = 2) -> None:
    traffic(store, canary, start_us, 40)
    traffic(store, 1, start_us, 40)


def audit(store: Store, action: str) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log)
            .where(audit_log.c.kind == "action", audit_log.c.action == action)
            .order_by(audit_log.c.seq)
        ).all()
    return [log.as_dict(r) for r in rows]


def split(store: Store) -> tuple[int | None, int | None, float, int | None]:
    with store.read() as conn:
        d = get_deployment(conn, "claims")
    assert d is not None
    return d.production_version, d.canary_version, d.canary_weight, d.previous_version


def rollout_row(store: Store) -> dict[str, Any]:
    with store.read() as conn:
        return status(conn, "claims")


def assert_judged_record(record: dict[str, Any]) -> None:
    """An automatic transition carries the checks and both versions' metrics."""
    assert record["actor"] == "controller"
    assert record["reason"]
    assert {c["name"] for c in record["checks"]} >= {"error_rate", "p95_latency"}
    assert record["canary"]["requests"] >= 20
    assert record["baseline"]["version"] == 1
    assert record["window"]["end_us"] > record["window"]["start_us"]


# -- the happy path ------------------------------------------------------------------


def test_promotes_after_every_step_passes(store: Store) -> None:
    w = setup(store)
    g = store.generation()
    r = start(store, w.svc, 2, actor="alice", now_us=T0, reason="new model")
    assert (r.state, r.step, r.weight, r.failures) == ("running", 0, 0.1, 0)
    assert split(store) == (1, 2, 0.1, None)
    assert store.generation() == g + 1
    [started] = audit(store, "rollout_start")
    assert started["actor"] == "alice"
    assert started["baseline"] == 1
    assert started["weight"] == 0.1
    assert started["rollout_id"] == r.id
    assert started["policy"]["steps"] == [10, 50, 100]

    healthy(store, T0)
    assert tick(store, w.spec, T0 + MIN - 1) == []  # the interval has not elapsed
    [t] = tick(store, w.spec, T0 + MIN)
    assert (t.action, t.state, t.step) == ("rollout_step", "running", 1)
    assert split(store) == (1, 2, 0.5, None)
    assert store.generation() == g + 2
    [step] = audit(store, "rollout_step")
    assert_judged_record(step)
    assert all(c["passed"] for c in step["checks"])
    assert step["new_weight"] == 0.5
    assert step["canary"]["requests"] == 40

    healthy(store, T0 + MIN)
    [t] = tick(store, w.spec, T0 + 2 * MIN)
    assert (t.action, t.state) == ("promote", "promoted")
    assert split(store) == (2, None, 0.0, 1)
    assert store.generation() == g + 3
    [promoted] = audit(store, "promote")
    assert_judged_record(promoted)
    assert promoted["version"] == 2
    assert promoted["previous"] == 1
    assert rollout_row(store)["state"] == "promoted"
    assert tick(store, w.spec, T0 + 10 * MIN) == []


# -- failures ------------------------------------------------------------------------


def test_rolls_back_at_the_failure_threshold_without_resetting_failures(store: Store) -> None:
    w = setup(store)
    start(store, w.svc, 2, actor="alice", now_us=T0)
    g = store.generation()
    traffic(store, 2, T0, 40, errors=10)  # 25% errors
    traffic(store, 1, T0, 40)
    [t] = tick(store, w.spec, T0 + MIN)
    assert (t.action, t.state, t.failures, t.step) == ("rollout_check_failed", "running", 1, 0)
    assert split(store) == (1, 2, 0.1, None)
    assert store.generation() == g  # the split did not change
    [failed] = audit(store, "rollout_check_failed")
    assert_judged_record(failed)
    assert failed["failures"] == 1
    assert failed["failure_threshold"] == 2
    errors = next(c for c in failed["checks"] if c["name"] == "error_rate")
    assert not errors["passed"]
    assert errors["canary_value"] == 0.25

    healthy(store, T0 + MIN)  # a passing interval does not forgive the failure
    [t] = tick(store, w.spec, T0 + 2 * MIN)
    assert (t.action, t.failures, t.step) == ("rollout_step", 1, 1)

    traffic(store, 2, T0 + 2 * MIN, 40, latency=50.0)  # x5 latency
    traffic(store, 1, T0 + 2 * MIN, 40)
    [t] = tick(store, w.spec, T0 + 3 * MIN)
    assert (t.action, t.state, t.failures) == ("rollback", "rolled_back", 2)
    assert split(store) == (1, None, 0.0, None)
    assert store.generation() == g + 2  # the step, then the rollback
    [rollback] = audit(store, "rollback")
    assert_judged_record(rollback)
    assert rollback["reason"].startswith("automatic: ")
    assert "latency" in rollback["reason"]
    assert rollback["rolled_back"] == 2
    assert rollback["version"] == 1
    assert len(audit(store, "rollout_check_failed")) == 2
    assert rollout_row(store)["state"] == "rolled_back"
    assert tick(store, w.spec, T0 + 10 * MIN) == []


def test_too_few_requests_is_not_judged_then_counts_as_a_failure(store: Store) -> None:
    w = setup(store)
    start(store, w.svc, 2, actor="alice", now_us=T0)
    traffic(store, 2, T0, 5, errors=5)  # awful, but too few to judge
    traffic(store, 1, T0, 40)
    assert tick(store, w.spec, T0 + MIN) == []
    assert audit(store, "rollout_check_failed") == []
    assert rollout_row(store)["interval_started_at_us"] == T0  # the window keeps growing

    [t] = tick(store, w.spec, T0 + 2 * MIN)  # max_idle_intervals = 2
    assert (t.action, t.failures, t.state) == ("rollout_check_failed", 1, "running")
    assert t.reason.startswith("too few requests: 5")
    assert rollout_row(store)["interval_started_at_us"] == T0 + 2 * MIN

    # requests accumulate across intervals until there are enough to judge
    traffic(store, 2, T0 + 2 * MIN, 12)
    assert tick(store, w.spec, T0 + 3 * MIN) == []
    traffic(store, 2, T0 + 3 * MIN, 12)
    traffic(store, 1, T0 + 3 * MIN, 40)
    [t] = tick(store, w.spec, T0 + 4 * MIN)
    assert (t.action, t.step, t.failures) == ("rollout_step", 1, 1)
    [step] = audit(store, "rollout_step")
    assert step["canary"]["requests"] == 24
    assert step["window"] == {"start_us": T0 + 2 * MIN, "end_us": T0 + 4 * MIN}


def decisions(store: Store, version: int, start_us: int, n: int) -> list[str]:
    """*n* answered decisions of *version* ("routine"), spread over the interval; their ids."""
    records = [
        Record(
            kind=KIND_INFERENCE,
            action="predict",
            ts_us=start_us + i * (MIN // n),
            payload={
                "input": {"amount": 100.0, "category": "auto"},
                "output": {"prediction": "routine"},
            },
            service="claims",
            version=version,
            status=200,
            decision="auto",
            latency_ms=10.0,
        )
        for i in range(n)
    ]
    with store.write() as conn:
        log.append(store, conn, records)
    return [r.id for r in records]


def truth(store: Store, ids: list[str], label: str, at_us: int) -> None:
    with store.write() as conn:
        for rid in ids:
            insert_truth(conn, rid, label, at_us, source="claims-system")


def test_feedback_that_arrives_late_still_judges_the_canary(store: Store) -> None:
    w = setup(store)
    start(store, w.svc, 2, actor="alice", now_us=T0)
    canary_ids = decisions(store, 2, T0, 40)
    production_ids = decisions(store, 1, T0, 40)
    [t] = tick(store, w.spec, T0 + MIN)  # no ground truth yet: operations only
    assert (t.action, t.step) == ("rollout_step", 1)
    # The truth about the first interval's decisions arrives during the second one:
    # every canary decision was wrong, every production decision right.
    truth(store, canary_ids, "adjuster", T0 + MIN + 5)
    truth(store, production_ids, "routine", T0 + MIN + 5)
    healthy(store, T0 + MIN)
    [t] = tick(store, w.spec, T0 + 2 * MIN)
    assert (t.action, t.failures) == ("rollout_check_failed", 1)
    assert "accuracy 0.0000 vs 1.0000" in t.reason
    [record] = audit(store, "rollout_check_failed")
    assert record["canary"]["graded"] == 40
    assert record["canary"]["requests"] == 40  # this interval's own traffic
    assert record["quality_window"] == {"start_us": T0, "end_us": T0 + 2 * MIN}
    assert record["window"] == {"start_us": T0 + MIN, "end_us": T0 + 2 * MIN}


def test_the_kill_switch_holds_the_rollout_without_failing_it(store: Store) -> None:
    w = setup(store, max_idle_intervals=1)  # the strictest: one idle interval fails
    t0 = wall_clock_us()  # enable restarts the interval on the wall clock
    start(store, w.svc, 2, actor="alice", now_us=t0)
    deployments.set_disabled(store, w.svc, True, actor="ops", reason="incident")
    # No canary traffic for many intervals: not "too few requests", just on hold.
    for k in range(1, 6):
        assert tick(store, w.spec, t0 + k * MIN) == []
    assert audit(store, "rollout_check_failed") == []
    assert rollout_row(store)["interval_started_at_us"] == t0 + 5 * MIN
    deployments.set_disabled(store, w.svc, False, actor="ops")
    enabled = rollout_row(store)["interval_started_at_us"]
    assert enabled >= t0  # judging starts afresh from the moment of enable
    healthy(store, enabled)
    [t] = tick(store, w.spec, enabled + MIN)
    assert (t.action, t.step, t.failures) == ("rollout_step", 1, 0)


# -- people --------------------------------------------------------------------------


def test_manual_gate_waits_for_confirmation(store: Store) -> None:
    w = setup(store, manual_gate=True)
    start(store, w.svc, 2, actor="alice", now_us=T0)
    with pytest.raises(RolloutStateError, match="running"):
        controller.confirm(store, w.svc, actor="bob")
    healthy(store, T0)
    tick(store, w.spec, T0 + MIN)
    healthy(store, T0 + MIN)
    g = store.generation()
    [t] = tick(store, w.spec, T0 + 2 * MIN)
    assert (t.action, t.state) == ("rollout_awaiting_confirmation", "awaiting_confirmation")
    assert split(store) == (1, 2, 0.5, None)  # the canary holds its last step
    assert store.generation() == g
    assert_judged_record(audit(store, "rollout_awaiting_confirmation")[0])
    assert tick(store, w.spec, T0 + 5 * MIN) == []  # waits as long as it takes

    r = controller.confirm(store, w.svc, actor="bob", reason="looks good", now_us=T0 + 6 * MIN)
    assert r.state == "promoted"
    assert split(store) == (2, None, 0.0, 1)
    assert store.generation() == g + 1
    [confirmed] = audit(store, "rollout_confirm")
    assert confirmed["actor"] == "bob"
    assert confirmed["reason"] == "looks good"
    [promoted] = audit(store, "promote")
    assert promoted["actor"] == "bob"
    assert promoted["reason"] == "looks good"
    assert promoted["confirmed"] is True
    assert promoted["previous"] == 1
    assert promoted["judgement"]["action"] == "rollout_awaiting_confirmation"
    assert promoted["judgement"]["checks"]
    with pytest.raises(NoRolloutError):
        controller.confirm(store, w.svc, actor="bob")


def test_pause_and_resume(store: Store) -> None:
    w = setup(store)
    start(store, w.svc, 2, actor="alice", now_us=T0)
    g = store.generation()
    r = controller.pause(store, w.svc, actor="alice", reason="investigating", now_us=T0 + 1)
    assert r.state == "paused"
    assert split(store) == (1, 2, 0.1, None)  # the canary keeps serving its share
    assert store.generation() == g
    [paused] = audit(store, "rollout_pause")
    assert paused["actor"] == "alice"
    assert paused["reason"] == "investigating"
    with pytest.raises(RolloutStateError, match="paused"):
        controller.pause(store, w.svc, actor="alice")

    traffic(store, 2, T0, 40, errors=40)  # bad while paused: not judged
    traffic(store, 1, T0, 40)
    assert tick(store, w.spec, T0 + MIN) == []
    assert tick(store, w.spec, T0 + 5 * MIN) == []

    r = controller.resume(store, w.svc, actor="carol", reason="fixed", now_us=T0 + 5 * MIN)
    assert r.state == "running"
    assert r.interval_started_at_us == T0 + 5 * MIN
    assert audit(store, "rollout_resume")[0]["actor"] == "carol"
    with pytest.raises(RolloutStateError):
        controller.resume(store, w.svc, actor="carol")
    healthy(store, T0 + 5 * MIN)
    [t] = tick(store, w.spec, T0 + 6 * MIN)
    assert (t.action, t.failures) == ("rollout_step", 0)


def test_abort(store: Store) -> None:
    w = setup(store)
    start(store, w.svc, 2, actor="alice", now_us=T0)
    g = store.generation()
    r = controller.abort(store, w.svc, actor="alice", reason="wrong model", now_us=T0 + 5)
    assert r.state == "aborted"
    assert r.reason == "wrong model"
    assert split(store) == (1, None, 0.0, None)
    assert store.generation() == g + 1
    [aborted] = audit(store, "rollout_abort")
    assert aborted["actor"] == "alice"
    assert aborted["reason"] == "wrong model"
    assert aborted["version"] == 2
    assert aborted["rollout_id"] == r.id
    with pytest.raises(NoRolloutError):
        controller.abort(store, w.svc, actor="alice")
    healthy(store, T0)
    assert tick(store, w.spec, T0 + MIN) == []
    # the service is free for another rollout
    again = start(store, w.svc, 2, actor="alice", now_us=T0 + MIN)
    assert rollout_row(store)["id"] == again.id != r.id


def test_start_refusals(store: Store) -> None:
    w = setup(store)
    with pytest.raises(UnknownVersionError):
        start(store, w.svc, 9, actor="alice")
    with pytest.raises(RolloutRefused, match="already in production"):
        start(store, w.svc, 1, actor="alice")
    unapproved = versions.register(store, w.svc, "fixture_models:claims", actor="dev")
    with pytest.raises(NotApprovedError, match="canary"):
        start(store, w.svc, unapproved.number, actor="alice")
    one_step = replace(
        w.svc, policy=replace(w.svc.policy, rollout=replace(w.svc.policy.rollout, steps=(100,)))
    )
    with pytest.raises(UsageError, match="below 100"):
        start(store, one_step, 2, actor="alice")
    deployments.set_disabled(store, w.svc, True, actor="ops", reason="incident 7")
    with pytest.raises(RolloutRefused, match=r"disabled \(incident 7\)"):
        start(store, w.svc, 2, actor="alice")
    deployments.set_disabled(store, w.svc, False, actor="ops")
    with pytest.raises(ConflictError, match="version 1 is already in production"):
        deployments.deploy(store, w.svc, 1, actor="dev")
    start(store, w.svc, 2, actor="alice")
    approvals.approve(
        store, w.svc, unapproved.number, by="someone-else", override_gates=True, reason="t"
    )
    with pytest.raises(RolloutRefused, match="is running"):
        start(store, w.svc, unapproved.number, actor="alice")
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(rollouts)).scalar() == 1
    assert len(audit(store, "rollout_start")) == 1


def test_start_needs_something_in_production(store: Store) -> None:
    w = setup(store, deploy=False)
    with pytest.raises(RolloutRefused, match="nothing in production"):
        start(store, w.svc, 2, actor="alice")


def test_status(store: Store) -> None:
    w = setup(store)
    with store.read() as conn, pytest.raises(NoRolloutError):
        status(conn, "claims")
    r = start(store, w.svc, 2, actor="alice", now_us=T0)
    s = rollout_row(store)
    assert s["id"] == r.id
    assert s["state"] == "running"
    assert s["active"] is True
    assert (s["step"], s["steps"], s["weight"], s["failures"]) == (0, [10, 50, 100], 0.1, 0)
    assert s["next_check_at_us"] == T0 + MIN
    assert s["last_judgement"] is None
    assert s["started_by"] == "alice"
    assert s["policy"]["min_requests"] == 20
    healthy(store, T0)
    tick(store, w.spec, T0 + MIN)
    s = rollout_row(store)
    assert (s["step"], s["weight"]) == (1, 0.5)
    assert s["last_judgement"]["action"] == "rollout_step"
    assert all(c["passed"] for c in s["last_judgement"]["checks"])
    assert s["last_judgement"]["canary"]["requests"] == 40


# -- restarts and concurrency --------------------------------------------------------


def test_a_new_controller_continues_where_the_old_one_stopped(
    settings: Settings, store: Store
) -> None:
    w = setup(store)
    start(store, w.svc, 2, actor="alice", now_us=T0)
    healthy(store, T0)
    [t] = tick(store, w.spec, T0 + MIN)
    assert t.action == "rollout_step"
    store.dispose()  # the old process is gone

    fresh = Store(settings)
    try:
        healthy(fresh, T0 + MIN)
        assert tick(fresh, w.spec, T0 + MIN + 5) == []  # the new interval has only begun
        [t] = tick(fresh, w.spec, T0 + 2 * MIN)
        assert t.action == "promote"
        assert split(fresh) == (2, None, 0.0, 1)
    finally:
        fresh.dispose()


def test_two_controllers_make_one_transition_per_interval(settings: Settings, store: Store) -> None:
    w = setup(store)
    start(store, w.svc, 2, actor="alice", now_us=T0)
    other = Store(settings)
    done: list[Transition] = []
    errors: list[BaseException] = []
    try:
        for interval in (1, 2):
            healthy(store, T0 + (interval - 1) * MIN)
            barrier = threading.Barrier(2)

            def run(
                s: Store, now: int = T0 + interval * MIN, b: threading.Barrier = barrier
            ) -> None:
                try:
                    for _ in range(3):
                        b.wait(timeout=20)
                        done.extend(tick(s, w.spec, now))
                except BaseException as exc:  # surfaced below
                    errors.append(exc)
                    b.abort()  # never leave the other thread waiting

            threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in (store, other)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(timeout=30)
    finally:
        other.dispose()
    assert errors == []
    assert [t.action for t in done] == ["rollout_step", "promote"]
    assert len(audit(store, "rollout_step")) == 1
    assert len(audit(store, "promote")) == 1
    assert split(store) == (2, None, 0.0, 1)


# -- the runner ----------------------------------------------------------------------


def test_run_controller_ticks_and_survives_errors(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    w = setup(store)
    start(store, w.svc, 2, actor="alice", now_us=T0)
    healthy(store, T0)
    healthy(store, T0 + MIN)
    calls = 0

    def clock() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("clock trouble")
        return T0 + (calls - 1) * MIN

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_controller(store, w.spec, 0.01, clock, stop))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if rollout_row(store)["state"] != "running":
                break
        stop.set()
        await asyncio.wait_for(task, 5)

    with caplog.at_level(logging.ERROR, logger="prodgate.rollout"):
        asyncio.run(main())
    assert rollout_row(store)["state"] == "promoted"
    assert "rollout controller tick failed" in caplog.text
