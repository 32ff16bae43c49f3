"""What people do to rollouts: start, pause, resume, abort, confirm.

Each command is one write transaction that waits for the service's rollout lock (so
it never interleaves with a controller's tick), checks the rollout's state, moves
it, changes the split if the command does (bumping the generation so gateways
reload) and records who did it and why in the audit log.
"""

from __future__ import annotations

from typing import Any

import orjson

from prodgate.audit import log
from prodgate.exceptions import NoRolloutError, RolloutRefused, RolloutStateError, UsageError
from prodgate.registry.approvals import require_approved
from prodgate.registry.versions import get_version
from prodgate.rollout.split import clear_canary, get_deployment, promote_canary, set_split
from prodgate.rollout.state import (
    ABORTED,
    ACTIVE_STATES,
    AWAITING,
    PAUSED,
    PROMOTED,
    RUNNING,
    Rollout,
    active_rollout,
    compare_and_set,
    get_rollout,
    lock,
)
from prodgate.rollout.status import last_judgement
from prodgate.spec import ServiceSpec
from prodgate.store.engine import Store
from prodgate.store.engine import now_us as wall_clock_us
from prodgate.store.tables import rollouts


def start(
    store: Store,
    service: ServiceSpec,
    version: int,
    *,
    actor: str,
    now_us: int | None = None,
    reason: str = "",
) -> Rollout:
    """Start a canary of *version* at the policy's first step against production.

    Refused for an unknown version, a version already in production, a service with
    nothing in production, a rollout already under way, or an unapproved version.
    """
    policy = service.policy.rollout
    if not policy.steps or policy.steps[0] >= 100:
        raise UsageError("a rollout needs at least one canary step below 100 percent")
    now = wall_clock_us() if now_us is None else now_us
    with store.write() as conn:
        lock(store, conn, service.name, wait=True)
        get_version(conn, service.name, version)  # raises for an unknown version
        dep = get_deployment(conn, service.name, for_update=True)
        if dep is None or dep.production_version is None:
            raise RolloutRefused(
                f"{service.name} has nothing in production to compare a canary with; "
                f"run 'prodgate deploy {service.name} VERSION' first"
            )
        if dep.production_version == version:
            raise RolloutRefused(f"{service.name} version {version} is already in production")
        if dep.disabled:
            raise RolloutRefused(
                f"{service.name} is disabled ({dep.disabled_reason}): a canary would get no "
                f"traffic; run 'prodgate enable {service.name}' first"
            )
        other = active_rollout(conn, service.name)
        if other is not None:
            raise RolloutRefused(
                f"a rollout of {service.name} version {other.canary_version} is {other.state}; "
                f"finish it or run 'prodgate rollout abort {service.name}' first"
            )
        require_approved(conn, service, version, "canary")
        weight = float(policy.steps[0]) / 100.0
        result = conn.execute(
            rollouts.insert().values(
                service=service.name,
                canary_version=version,
                baseline_version=dep.production_version,
                state=RUNNING,
                step=0,
                failures=0,
                policy=orjson.dumps(policy.as_dict()).decode(),
                interval_started_at_us=now,
                started_by=actor,
                started_at_us=now,
                updated_at_us=now,
                reason=reason,
            )
        )
        key = result.inserted_primary_key
        assert key is not None  # an INSERT of one row always has one
        rollout_id = int(key[0])
        set_split(
            store, conn, service.name, actor, now, canary_version=version, canary_weight=weight
        )
        log.append(
            store,
            conn,
            [
                log.action(
                    "rollout_start",
                    actor=actor,
                    service=service.name,
                    version=version,
                    rollout_id=rollout_id,
                    baseline=dep.production_version,
                    weight=weight,
                    policy=policy.as_dict(),
                    reason=reason,
                )
            ],
        )
        return get_rollout(conn, rollout_id)


def _command(
    store: Store,
    service: str,
    action: str,
    allowed: tuple[str, ...],
    new_state: str,
    *,
    actor: str,
    reason: str,
    now_us: int | None,
) -> Rollout:
    """A person's command on the active rollout: check its state, move it, record it."""
    now = wall_clock_us() if now_us is None else now_us
    with store.write() as conn:
        lock(store, conn, service, wait=True)
        r = active_rollout(conn, service)
        if r is None:
            raise NoRolloutError(f"{service} has no rollout under way")
        if r.state not in allowed:
            raise RolloutStateError(
                f"the rollout of {service} version {r.canary_version} is {r.state}; "
                f"'{action}' needs it {' or '.join(allowed)}"
            )
        values: dict[str, Any] = {"state": new_state, "updated_at_us": now, "reason": reason}
        if new_state == RUNNING:
            values["interval_started_at_us"] = now  # judge only what follows the resume
        if not compare_and_set(conn, r, **values):  # pragma: no cover - the lock makes this rare
            raise RolloutStateError(f"the rollout of {service} changed meanwhile; try again")
        details: dict[str, Any] = {"rollout_id": r.id, "step": r.step, "failures": r.failures}
        records = [
            log.action(
                f"rollout_{action}",
                actor=actor,
                service=service,
                version=r.canary_version,
                reason=reason,
                **details,
            )
        ]
        if new_state == ABORTED:
            clear_canary(store, conn, r, actor, now)
        elif new_state == PROMOTED:
            previous = promote_canary(store, conn, r, actor, now)
            # The promotion itself, with the evidence the person confirmed on.
            records.append(
                log.action(
                    "promote",
                    actor=actor,
                    service=service,
                    version=r.canary_version,
                    reason=reason,
                    previous=previous,
                    confirmed=True,
                    judgement=last_judgement(conn, r),
                    **details,
                )
            )
        log.append(store, conn, records)
        return get_rollout(conn, r.id)


def pause(
    store: Store, service: ServiceSpec, *, actor: str, reason: str = "", now_us: int | None = None
) -> Rollout:
    """Stop judging the running rollout; the canary keeps its current weight."""
    return _command(
        store, service.name, "pause", (RUNNING,), PAUSED, actor=actor, reason=reason, now_us=now_us
    )


def resume(
    store: Store, service: ServiceSpec, *, actor: str, reason: str = "", now_us: int | None = None
) -> Rollout:
    """Judge the paused rollout again, from a fresh interval starting now."""
    return _command(
        store, service.name, "resume", (PAUSED,), RUNNING, actor=actor, reason=reason, now_us=now_us
    )


def abort(
    store: Store, service: ServiceSpec, *, actor: str, reason: str = "", now_us: int | None = None
) -> Rollout:
    """Stop the rollout and take all traffic off the canary (production is untouched)."""
    return _command(
        store,
        service.name,
        "abort",
        ACTIVE_STATES,
        ABORTED,
        actor=actor,
        reason=reason or f"aborted by {actor}",
        now_us=now_us,
    )


def confirm(
    store: Store, service: ServiceSpec, *, actor: str, reason: str = "", now_us: int | None = None
) -> Rollout:
    """Promote a rollout that passed every step and waits at the manual gate."""
    return _command(
        store,
        service.name,
        "confirm",
        (AWAITING,),
        PROMOTED,
        actor=actor,
        reason=reason or f"confirmed by {actor}",
        now_us=now_us,
    )
