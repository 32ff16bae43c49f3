"""Separation of duties compares people: an agent's approval counts as its owner's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from gateway_support import SPEC, write_spec
from prodgate import spec as spec_module
from prodgate.audit import log
from prodgate.exceptions import ApprovalRefused
from prodgate.identity import keys
from prodgate.identity.actor import Actor, Origin
from prodgate.identity.keyring import KeyRing, read_keys
from prodgate.registry import approvals, versions
from prodgate.settings import Settings
from prodgate.spec import ServiceSpec
from prodgate.store.engine import Store, open_store
from prodgate.store.tables import audit_log

#: Two approvals needed, so a second one by the same person would have counted.
TWO = SPEC.replace("    batching:\n", "    approvals: {required: 2}\n    batching:\n", 1)


@pytest.fixture
def gov(settings: Settings) -> Iterator[tuple[Store, ServiceSpec]]:
    write_spec(settings, TWO)
    store = open_store(settings)
    yield store, spec_module.load(settings.config).service("claims")
    store.dispose()


def agent_of(store: Store, owner: str, name: str = "triage-bot") -> Actor:
    """The actor an agent key owned by *owner* stands for over HTTP."""
    issued = keys.create(store, name, scopes=["admin:claims"], actor="ops", owner=owner, agent=True)
    ring = KeyRing()
    ring.load(read_keys(store))
    return ring.authenticate(f"Bearer {issued.token}").actor("10.0.0.7")


def approve(store: Store, service: ServiceSpec, version: int, by: str) -> approvals.Approval:
    return approvals.approve(
        store, service, version, by=by, override_gates=True, reason="reviewed by hand"
    )


def refusals(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log).where(audit_log.c.action == "approve_refused")
        ).all()
    return [log.as_dict(r) for r in rows]


def test_an_agent_may_not_approve_what_its_owner_registered(
    gov: tuple[Store, ServiceSpec],
) -> None:
    store, claims = gov
    v = versions.register(store, claims, "fixture_models:claims", actor="alice")
    bot = agent_of(store, "alice")
    assert (str(bot), bot.person) == ("triage-bot", "alice")
    with pytest.raises(ApprovalRefused) as caught:
        approve(store, claims, v.number, bot)
    assert caught.value.detail == (
        "triage-bot (owned by alice) registered version 1 and may not approve it too"
    )
    # However the owner's name is written, it is the same person.
    for owner in ("Alice", " alice"):
        other = Actor("helper", Origin("admin-api", key="k", owner=owner, agent=True))
        with pytest.raises(ApprovalRefused, match="registered version 1"):
            approve(store, claims, v.number, other)
    (refused, *_) = refusals(store)
    assert refused["actor"] == "triage-bot"
    assert refused["origin"]["owner"] == "alice"
    assert refused["origin"]["agent"] is True
    with store.read() as conn:
        assert approvals.list_approvals(conn, "claims", v.number) == []
    # Someone else's agent may.
    approval = approve(store, claims, v.number, agent_of(store, "carol", "carols-bot"))
    assert (approval.approver, approval.owner, approval.person) == ("carols-bot", "carol", "carol")


def test_an_agent_may_not_approve_again_for_its_owner(gov: tuple[Store, ServiceSpec]) -> None:
    store, claims = gov
    v = versions.register(store, claims, "fixture_models:claims", actor="bob")
    approve(store, claims, v.number, "alice")
    bot = agent_of(store, "alice")
    with pytest.raises(ApprovalRefused) as caught:
        approve(store, claims, v.number, bot)
    assert caught.value.detail == "triage-bot (owned by alice) has already approved version 1"
    with store.read() as conn:
        assert not approvals.is_approved(conn, claims, v.number)
        assert [a.person for a in approvals.list_approvals(conn, "claims", v.number)] == ["alice"]


def test_an_owner_may_not_approve_again_after_their_agent(
    gov: tuple[Store, ServiceSpec],
) -> None:
    store, claims = gov
    v = versions.register(store, claims, "fixture_models:claims", actor="bob")
    bot = agent_of(store, "alice")
    first = approve(store, claims, v.number, bot)
    assert (first.approver, first.owner, first.person) == ("triage-bot", "alice", "alice")
    for alice in ("alice", "ALICE", Actor.cli("alice")):
        with pytest.raises(ApprovalRefused, match=f"^{alice} has already approved version 1"):
            approve(store, claims, v.number, alice)
    # Nor may a second agent of hers.
    with pytest.raises(ApprovalRefused, match=r"\(owned by alice\) has already approved"):
        approve(store, claims, v.number, agent_of(store, "alice", "another-bot"))
    with store.read() as conn:
        stored = approvals.list_approvals(conn, "claims", v.number)
        assert [(a.approver, a.owner) for a in stored] == [("triage-bot", "alice")]
        assert not approvals.is_approved(conn, claims, v.number)
    approve(store, claims, v.number, "dave")
    with store.read() as conn:
        assert approvals.is_approved(conn, claims, v.number)


def test_an_owner_may_not_approve_what_their_agent_registered(
    gov: tuple[Store, ServiceSpec],
) -> None:
    store, claims = gov
    v = versions.register(store, claims, "fixture_models:claims", actor=agent_of(store, "alice"))
    with pytest.raises(ApprovalRefused, match="registered version 1"):
        approve(store, claims, v.number, "alice")
