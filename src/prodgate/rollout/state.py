"""A rollout's stored state: its row, its locks, and the writes every transition shares.

The state machine (driven by :mod:`prodgate.rollout.controller` and the commands in
:mod:`prodgate.rollout.commands`)::

    start ─► running ─┬─ checks pass, next step < 100 ──► running (next step)
                      ├─ checks pass, next step is 100 ─► promoted
                      │       (with manual_gate) ───────► awaiting_confirmation
                      │                                     └─ confirm ─► promoted
                      ├─ a check fails ─────────────────► running (failures + 1)
                      ├─ failures reach the threshold ──► rolled_back
                      ├─ too few requests ──────────────► running (window grows; after
                      │                                   max_idle_intervals, a failure)
                      └─ pause ─► paused ─ resume ─► running
    running | paused | awaiting_confirmation ─ abort ─► aborted

Every move that judges starts a fresh interval; failures never reset. All of it
lives in ``rollouts`` and ``deployments``, so a new controller continues where an
old one stopped.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.spec import RolloutPolicy
from prodgate.store.engine import Store
from prodgate.store.tables import rollouts

RUNNING, PAUSED, AWAITING = "running", "paused", "awaiting_confirmation"
PROMOTED, ROLLED_BACK, ABORTED = "promoted", "rolled_back", "aborted"
ACTIVE_STATES = (RUNNING, PAUSED, AWAITING)
FINAL_STATES = (PROMOTED, ROLLED_BACK, ABORTED)

#: Who the audit log names for the controller's own decisions.
CONTROLLER_ACTOR = "controller"

#: Advisory lock class for rollouts (two-int form, so it never meets LOCK_AUDIT).
_LOCK_CLASS = 0x726F6C6C  # "roll"


@dataclass(frozen=True)
class Rollout:
    """One row of ``rollouts``, with its policy parsed."""

    id: int
    service: str
    canary_version: int
    baseline_version: int
    state: str
    step: int
    failures: int
    policy: RolloutPolicy
    interval_started_at_us: int
    started_by: str
    started_at_us: int
    updated_at_us: int
    reason: str

    @classmethod
    def from_row(cls, row: Any) -> Rollout:
        m = row._mapping
        return cls(
            id=int(m["id"]),
            service=m["service"],
            canary_version=int(m["canary_version"]),
            baseline_version=int(m["baseline_version"]),
            state=m["state"],
            step=int(m["step"]),
            failures=int(m["failures"]),
            policy=RolloutPolicy.from_dict(orjson.loads(m["policy"])),
            interval_started_at_us=int(m["interval_started_at_us"]),
            started_by=m["started_by"],
            started_at_us=int(m["started_at_us"]),
            updated_at_us=int(m["updated_at_us"]),
            reason=m["reason"] or "",
        )

    @property
    def weight(self) -> float:
        """The canary's share of traffic at the current step (0..1)."""
        return float(self.policy.steps[self.step]) / 100.0

    @property
    def interval_us(self) -> int:
        return round(self.policy.interval_s * 1_000_000)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def as_dict(self) -> dict[str, Any]:
        """The rollout as JSON (for the CLI and API)."""
        return {
            "id": self.id,
            "service": self.service,
            "canary_version": self.canary_version,
            "baseline_version": self.baseline_version,
            "state": self.state,
            "active": self.active,
            "step": self.step,
            "steps": list(self.policy.steps),
            "weight": self.weight if self.active else 0.0,
            "failures": self.failures,
            "failure_threshold": self.policy.failure_threshold,
            "interval_s": self.policy.interval_s,
            "interval_started_at_us": self.interval_started_at_us,
            "next_check_at_us": (
                self.interval_started_at_us + self.interval_us if self.state == RUNNING else None
            ),
            "manual_gate": self.policy.manual_gate,
            "started_by": self.started_by,
            "started_at_us": self.started_at_us,
            "updated_at_us": self.updated_at_us,
            "reason": self.reason,
        }

    def due(self, now_us: int) -> bool:
        """Whether a running rollout's interval has elapsed at *now_us*."""
        return self.state == RUNNING and now_us - self.interval_started_at_us >= self.interval_us


@dataclass(frozen=True)
class Transition:
    """What one tick did to one rollout."""

    rollout_id: int
    service: str
    action: str  # the audit action written
    state: str
    step: int
    failures: int
    reason: str


# -- reading -------------------------------------------------------------------------


def get_rollout(conn: Connection, rollout_id: int, *, for_update: bool = False) -> Rollout:
    """One rollout by id; *for_update* row-locks it on PostgreSQL until the commit."""
    q = sa.select(rollouts).where(rollouts.c.id == rollout_id)
    if for_update and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return Rollout.from_row(conn.execute(q).one())


def active_rollout(conn: Connection, service: str) -> Rollout | None:
    """The service's rollout under way (running, paused or awaiting confirmation)."""
    row = conn.execute(
        sa.select(rollouts)
        .where(rollouts.c.service == service, rollouts.c.state.in_(ACTIVE_STATES))
        .order_by(rollouts.c.id.desc())
        .limit(1)
    ).first()
    return Rollout.from_row(row) if row is not None else None


# -- writing helpers -----------------------------------------------------------------


def lock(store: Store, conn: Connection, service: str, *, wait: bool) -> bool:
    """Take the service's rollout lock until the transaction ends.

    Returns False when *wait* is off and another transaction holds it (PostgreSQL).
    On SQLite the write transaction's ``BEGIN IMMEDIATE`` already excludes others.
    """
    if store.dialect != "postgresql":
        return True
    # crc32 fits an unsigned 32-bit int; shift it into PostgreSQL's signed integer.
    params = {"c": _LOCK_CLASS, "k": zlib.crc32(service.encode()) - 2**31}
    if wait:
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(CAST(:c AS int), CAST(:k AS int))"), params
        )
        return True
    got = conn.execute(
        sa.text("SELECT pg_try_advisory_xact_lock(CAST(:c AS int), CAST(:k AS int))"), params
    ).scalar()
    return bool(got)


def compare_and_set(conn: Connection, before: Rollout, **values: Any) -> bool:
    """Move the row on only if it is still exactly what was judged (compare and set)."""
    result = conn.execute(
        rollouts.update()
        .where(
            rollouts.c.id == before.id,
            rollouts.c.state == before.state,
            rollouts.c.step == before.step,
            rollouts.c.failures == before.failures,
            rollouts.c.interval_started_at_us == before.interval_started_at_us,
            rollouts.c.updated_at_us == before.updated_at_us,
        )
        .values(**values)
    )
    return result.rowcount == 1


def abort_active(conn: Connection, service: str, reason: str, now: int) -> int | None:
    """Abort the service's rollout under way, if any; return its canary version."""
    r = active_rollout(conn, service)
    if r is None:
        return None
    conn.execute(
        rollouts.update()
        .where(rollouts.c.service == service, rollouts.c.state.in_(ACTIVE_STATES))
        .values(state=ABORTED, reason=reason, updated_at_us=now)
    )
    return r.canary_version


def restart_interval(conn: Connection, service: str, now: int) -> None:
    """Start a running rollout's interval afresh at *now* (after the kill switch)."""
    conn.execute(
        rollouts.update()
        .where(rollouts.c.service == service, rollouts.c.state == RUNNING)
        .values(interval_started_at_us=now, updated_at_us=now)
    )
