"""People's sign-off on versions, and the rule that production traffic needs it.

A version may be approved only when its newest stored evaluation passed its gates,
unless the approver overrides the gates with a reason (recorded as such). The spec
can ask for several distinct approvers and for separation of duties (whoever
registered a version may not approve it). Until a version has its approvals it may
run only in shadow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit import log
from prodgate.exceptions import ApprovalRefused, NotApprovedError, UsageError
from prodgate.identity.actor import Actor, same_person
from prodgate.registry.versions import get_version
from prodgate.spec import ServiceSpec
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import approvals, evaluations


@dataclass(frozen=True)
class Approval:
    approver: str
    note: str
    override_gates: bool
    reason: str
    created_at_us: int
    #: The person accountable when the approver is an agent (its key's owner).
    owner: str | None = None

    @property
    def person(self) -> str:
        return self.owner or self.approver


def list_approvals(conn: Connection, service: str, version: int) -> list[Approval]:
    rows = conn.execute(
        sa.select(approvals)
        .where(approvals.c.service == service, approvals.c.version == version)
        .order_by(approvals.c.id)
    ).all()
    return [
        Approval(
            r.approver, r.note, bool(r.override_gates), r.reason, int(r.created_at_us), r.owner
        )
        for r in rows
    ]


def latest_evaluation(conn: Connection, service: str, version: int) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(evaluations)
        .where(evaluations.c.service == service, evaluations.c.version == version)
        .order_by(evaluations.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return {"id": int(row.id), "passed": bool(row.passed), **orjson.loads(row.result)}


def is_approved(conn: Connection, service: ServiceSpec, version: int) -> bool:
    return len(list_approvals(conn, service.name, version)) >= service.policy.approvals.required


def approved_versions(conn: Connection, service: ServiceSpec) -> list[int]:
    """The versions of *service* with all the approvals its policy requires."""
    rows = conn.execute(
        sa.select(approvals.c.version, sa.func.count())
        .where(approvals.c.service == service.name)
        .group_by(approvals.c.version)
    ).all()
    need = service.policy.approvals.required
    return sorted(int(v) for v, n in rows if n >= need)


def require_approved(conn: Connection, service: ServiceSpec, version: int, use: str) -> None:
    """Raise NotApprovedError unless *version* has its approvals (*use*: production/canary)."""
    have = len(list_approvals(conn, service.name, version))
    need = service.policy.approvals.required
    if have < need:
        raise NotApprovedError(
            f"{service.name} version {version} has {have} of {need} approval(s) and cannot "
            f"take {use} traffic; run 'prodgate approve {service.name} {version} --by NAME' "
            "(it may run in shadow meanwhile)"
        )


def _measured(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _failed_gates(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in evaluation.get("gates", []) if not g.get("passed")]


def approve(
    store: Store,
    service: ServiceSpec,
    version: int,
    *,
    by: str,
    note: str = "",
    override_gates: bool = False,
    reason: str = "",
) -> Approval:
    """Record *by*'s approval of *version*; refused approvals are recorded too.

    Names are compared as people mean them: ``Alice``, ``alice`` and `` alice `` are
    one person, for separation of duties and for counting distinct approvers.
    """
    if by != by.strip():  # an Actor comes stripped and stays one: its origin is recorded
        by = by.strip()
    if not by:
        raise UsageError("an approval needs a name: --by NAME")
    if not by.isprintable():
        raise UsageError("an approver's name must not contain control characters")
    if override_gates and not reason.strip():
        raise UsageError("--override-gates needs --reason TEXT saying why")
    with store.write() as conn:
        v = get_version(conn, service.name, version)
        evaluation = latest_evaluation(conn, service.name, version)
        problem = None
        failed: list[dict[str, Any]] = []
        # People are compared, not names: an agent's approval is its owner's.
        owner = by.origin.owner if isinstance(by, Actor) else None
        who = same_person(owner or by)
        as_who = f"{by} (owned by {owner})" if owner else str(by)
        if service.policy.approvals.separation_of_duties and who == same_person(v.registrant):
            problem = f"{as_who} registered version {version} and may not approve it too"
        elif any(same_person(a.person) == who for a in list_approvals(conn, service.name, version)):
            problem = f"{as_who} has already approved version {version}"
        elif evaluation is None and not override_gates:
            problem = (
                f"version {version} has no stored evaluation; run 'prodgate evaluate "
                f"{service.name} {version} --data FILE' first"
            )
        elif evaluation is not None and not evaluation["passed"] and not override_gates:
            failed = _failed_gates(evaluation)
            names = "; ".join(f"{g['gate']} (measured {_measured(g.get('value'))})" for g in failed)
            problem = f"version {version} failed its gates: {names}"
        if problem is not None:
            log.append(
                store,
                conn,
                [
                    log.action(
                        "approve_refused",
                        actor=by,
                        service=service.name,
                        version=version,
                        reason=problem,
                        evaluation_id=evaluation["id"] if evaluation else None,
                        failed_gates=failed,
                        metrics=(evaluation or {}).get("metrics"),
                    )
                ],
            )
    # The refusal is committed above; now say no.
    if problem is not None:
        raise ApprovalRefused(problem)
    with store.write() as conn:
        ts = now_us()
        conn.execute(
            approvals.insert().values(
                service=service.name,
                version=version,
                approver=by,
                owner=owner,
                note=note,
                override_gates=override_gates,
                reason=reason,
                evaluation_id=evaluation["id"] if evaluation else None,
                created_at_us=ts,
            )
        )
        count = len(list_approvals(conn, service.name, version))
        if service.kind == "llm" and count == service.policy.approvals.required:
            # Callers may name an approved prompt version (service@version): gateways load
            # it on their next refresh.
            store.bump_generation(conn)
        log.append(
            store,
            conn,
            [
                log.action(
                    "override" if override_gates else "approve",
                    actor=by,
                    service=service.name,
                    version=version,
                    note=note,
                    reason=reason,
                    evaluation_id=evaluation["id"] if evaluation else None,
                    gates_passed=evaluation["passed"] if evaluation else None,
                    failed_gates=_failed_gates(evaluation) if evaluation else [],
                    approvals=count,
                    required=service.policy.approvals.required,
                )
            ],
        )
    return Approval(by, note, override_gates, reason, ts, owner)
