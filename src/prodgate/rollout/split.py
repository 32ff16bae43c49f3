"""The traffic split of each service: the ``deployments`` table's only writer.

A deployment row says which version takes production traffic, which runs as a
canary at what weight, which runs in shadow (sees copies, answers nobody), where a
rollback would go now (``previous_version``: the production version before the
current one, in the history that :func:`rollback` walks back through), and whether
the kill switch is on. Every
change bumps the store's generation, so running gateways pick it up within a second,
and is recorded in the audit log with who, when and why. The rollout controller
and commands move the canary through :func:`set_split`, :func:`promote_canary` and
:func:`clear_canary` here; the gateway only reads (:func:`all_deployments`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit import log
from prodgate.audit.history import production_versions
from prodgate.exceptions import ConflictError, UsageError
from prodgate.registry.approvals import require_approved
from prodgate.registry.versions import get_version
from prodgate.rollout.state import (
    Rollout,
    abort_active,
    active_rollout,
    lock,
    restart_interval,
)
from prodgate.spec import ServiceSpec
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import deployments


@dataclass(frozen=True)
class Deployment:
    service: str
    production_version: int | None
    updated_by: str
    updated_at_us: int
    canary_version: int | None = None
    canary_weight: float = 0.0
    shadow_version: int | None = None
    previous_version: int | None = None
    disabled: bool = False
    disabled_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "production": self.production_version,
            "canary": self.canary_version,
            "canary_weight": self.canary_weight,
            "shadow": self.shadow_version,
            "previous": self.previous_version,
            "disabled": self.disabled,
            "disabled_reason": self.disabled_reason,
            "updated_by": self.updated_by,
            "updated_at_us": self.updated_at_us,
        }


def _from_row(row: Any) -> Deployment:
    m = row._mapping
    return Deployment(
        service=m["service"],
        production_version=m["production_version"],
        updated_by=m["updated_by"],
        updated_at_us=int(m["updated_at_us"]),
        canary_version=m["canary_version"],
        canary_weight=float(m["canary_weight"] or 0.0),
        shadow_version=m["shadow_version"],
        previous_version=m["previous_version"],
        disabled=bool(m["disabled"]),
        disabled_reason=m["disabled_reason"],
    )


def get_deployment(
    conn: Connection, service: str, *, for_update: bool = False
) -> Deployment | None:
    """The service's split; *for_update* locks its row until the transaction ends.

    Whoever reads the split in order to write it back whole must lock it: on
    PostgreSQL another transaction (the rollout controller moving the canary's
    weight) may otherwise commit in between, and writing the stale copy back would
    undo that change. SQLite's write transactions already exclude each other.
    """
    query = sa.select(deployments).where(deployments.c.service == service)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return _from_row(row) if row is not None else None


def all_deployments(conn: Connection) -> dict[str, Deployment]:
    return {d.service: d for d in map(_from_row, conn.execute(sa.select(deployments)).all())}


def save(store: Store, conn: Connection, new: Deployment) -> None:
    """Write *new* as the service's split and tell gateways (same transaction)."""
    values = {k: v for k, v in new.__dict__.items() if k != "service"}
    if get_deployment(conn, new.service) is None:
        conn.execute(deployments.insert().values(service=new.service, **values))
    else:
        conn.execute(
            deployments.update().where(deployments.c.service == new.service).values(**values)
        )
    store.bump_generation(conn)


def _commit(
    store: Store,
    conn: Connection,
    new: Deployment,
    action: str,
    version: int | None,
    **details: Any,
) -> Deployment:
    """Save *new* and record *action* in the audit log, in the caller's transaction."""
    save(store, conn, new)
    log.append(
        store,
        conn,
        [log.action(action, actor=new.updated_by, service=new.service, version=version, **details)],
    )
    return new


def _current(conn: Connection, service: str, actor: str) -> Deployment:
    """The split as it stands, locked for this transaction's write."""
    return get_deployment(conn, service, for_update=True) or Deployment(
        service, None, actor, now_us()
    )


def deploy(
    store: Store, service: ServiceSpec, number: int, *, actor: str, reason: str = ""
) -> Deployment:
    """Send 100% of *service*'s traffic to approved version *number*."""
    with store.write() as conn:
        get_version(conn, service.name, number)  # raises for an unknown version
        require_approved(conn, service, number, "production")
        # Lock the split first: a rollout that starts meanwhile is then seen below.
        before = _current(conn, service.name, actor)
        active = active_rollout(conn, service.name)
        if active is not None:
            raise ConflictError(
                f"a rollout of version {active.canary_version} is under way; finish it or run "
                f"'prodgate rollout abort {service.name}' first"
            )
        if before.production_version == number:
            raise ConflictError(f"{service.name} version {number} is already in production")
        previous = before.production_version
        new = replace(
            before,
            production_version=number,
            previous_version=previous,  # never *number*: that is refused above
            canary_version=None,
            canary_weight=0.0,
            updated_by=actor,
            updated_at_us=now_us(),
        )
        _commit(
            store,
            conn,
            new,
            "deploy",
            number,
            previous=previous,
            reason=reason,
        )
    return new


def rollback(
    store: Store,
    service: ServiceSpec,
    *,
    actor: str,
    reason: str = "",
    to: int | None = None,
) -> Deployment:
    """Put an earlier production version back at once (and stop any canary).

    Production versions form a stack replayed from the audit log
    (:func:`~prodgate.audit.history.production_versions`): a rollback pops the current
    one, so rollback after rollback walks further back, until there is no earlier
    version (a :class:`ConflictError`). With *to*, it goes back to that version, which
    must be in the stack below the current one and still approved; every version above
    it is popped. A rollback without *to* asks for no approval: it is the emergency
    lever, to what served just before.
    """
    with store.write() as conn:
        # The rollout lock first, as rollout commands and the controller take it: a
        # controller tick moving the canary meanwhile then waits instead of deadlocking.
        lock(store, conn, service.name, wait=True)
        before = get_deployment(conn, service.name, for_update=True)
        current = before.production_version if before is not None else None
        if before is None or current is None:
            raise ConflictError(f"{service.name} has nothing in production to roll back")
        stack = production_versions(conn, service.name)
        if not stack or stack[-1] != current:
            # Only a split written outside this module disagrees with its log; what
            # serves now is what a rollback leaves, whatever the log says.
            stack.append(current)
        earlier = stack[:-1]
        if to is None:
            if not earlier:
                raise ConflictError(
                    f"{service.name} has no earlier production version than {current} to go back to"
                )
            target = earlier[-1]
        else:
            get_version(conn, service.name, to)  # raises for an unknown version
            if to == current:
                raise ConflictError(f"{service.name} version {to} is already in production")
            if to not in earlier:
                went_back = ", ".join(str(v) for v in dict.fromkeys(reversed(earlier)))
                raise ConflictError(
                    f"{service.name} version {to} is not an earlier production version to go "
                    f"back to ({'those are: ' + went_back if went_back else 'there is none'}); "
                    f"'prodgate deploy {service.name} {to}' puts it in production"
                )
            require_approved(conn, service, to, "production")
            target = to
        remaining = earlier[: len(earlier) - earlier[::-1].index(target)]
        canary = abort_active(conn, service.name, f"rollback by {actor}", now_us())
        new = replace(
            before,
            production_version=target,
            # Where a rollback would go now: the version below, in the same stack.
            previous_version=remaining[-2] if len(remaining) > 1 else None,
            canary_version=None,
            canary_weight=0.0,
            updated_by=actor,
            updated_at_us=now_us(),
        )
        _commit(
            store,
            conn,
            new,
            "rollback",
            target,
            rolled_back=current,
            aborted_canary=canary,
            reason=reason or "manual rollback",
        )
    return new


def set_shadow(
    store: Store, service: ServiceSpec, number: int | None, *, actor: str, reason: str = ""
) -> Deployment:
    """Run *number* in shadow (copies of requests, answers never returned); None stops it.

    Shadow needs no approval: it never decides anything.
    """
    with store.write() as conn:
        if number is not None:
            get_version(conn, service.name, number)
        before = _current(conn, service.name, actor)
        new = replace(before, shadow_version=number, updated_by=actor, updated_at_us=now_us())
        _commit(
            store,
            conn,
            new,
            "shadow",
            number,
            previous=before.shadow_version,
            reason=reason,
        )
    return new


def set_disabled(
    store: Store, service: ServiceSpec, disabled: bool, *, actor: str, reason: str = ""
) -> Deployment:
    """The kill switch: while on, every request gets 503 with *reason*, and is recorded."""
    if disabled and not reason.strip():
        raise UsageError("disabling a service needs --reason TEXT; callers will see it")
    with store.write() as conn:
        before = _current(conn, service.name, actor)
        if before.disabled == disabled:
            state = "disabled" if disabled else "enabled"
            raise ConflictError(f"{service.name} is already {state}")
        now = now_us()
        new = replace(
            before,
            disabled=disabled,
            disabled_reason=reason if disabled else None,
            updated_by=actor,
            updated_at_us=now,
        )
        if not disabled:
            # A canary judged on the interval that held the outage would count it as
            # "too few requests": judging starts afresh on the traffic from now on.
            restart_interval(conn, service.name, now)
        _commit(
            store,
            conn,
            new,
            "disable" if disabled else "enable",
            before.production_version,
            reason=reason,
        )
    return new


def set_split(
    store: Store, conn: Connection, service: str, actor: str, now: int, **values: Any
) -> None:
    """Change the service's split and bump the generation so gateways reload it."""
    # Only the columns that change are written, so a concurrent change to other
    # columns (kill switch, shadow) is never overwritten with a stale copy.
    conn.execute(
        deployments.update()
        .where(deployments.c.service == service)
        .values(updated_by=actor, updated_at_us=now, **values)
    )
    store.bump_generation(conn)


def promote_canary(store: Store, conn: Connection, r: Rollout, actor: str, now: int) -> int | None:
    """Make the canary production; return the old production version."""
    dep = get_deployment(conn, r.service)
    old = dep.production_version if dep is not None else r.baseline_version
    set_split(
        store,
        conn,
        r.service,
        actor,
        now,
        production_version=r.canary_version,
        previous_version=old,
        canary_version=None,
        canary_weight=0.0,
    )
    return old


def clear_canary(store: Store, conn: Connection, r: Rollout, actor: str, now: int) -> None:
    """Take all traffic off the canary; production keeps it."""
    set_split(store, conn, r.service, actor, now, canary_version=None, canary_weight=0.0)
