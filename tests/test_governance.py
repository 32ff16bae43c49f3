"""Governance through the gateway and the admin API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import replace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

import test_rollout_controller as rollouts
from gateway_support import (
    GOOD,
    SPEC,
    bearer,
    deploy,
    make_key,
    register_and_approve,
    register_and_deploy,
    running,
    write_spec,
)
from prodgate import spec as spec_module
from prodgate.audit import log
from prodgate.audit.history import history as read_history
from prodgate.audit.history import production_versions
from prodgate.exceptions import (
    ApprovalRefused,
    ConflictError,
    NotApprovedError,
    UnknownVersionError,
    UsageError,
)
from prodgate.registry import approvals, versions
from prodgate.rollout import commands
from prodgate.rollout import split as deployments
from prodgate.rollout.split import set_split
from prodgate.rollout.state import active_rollout
from prodgate.settings import Settings
from prodgate.spec import Approvals
from prodgate.store.engine import Store, open_store
from prodgate.store.tables import audit_log

pytestmark = pytest.mark.anyio
PREDICT = "/v1/services/claims/predict"
TOKEN = "s3cret-admin-token"


@pytest.fixture
def deployed(deployed: Settings) -> Settings:
    """Version 1 deployed, the admin API open, no rollout controller."""
    return deployed.with_(admin_token=TOKEN, controller=False)


@pytest.fixture
def admin(deployed: Settings) -> dict[str, str]:
    """The key of ops-alice, who governs claims."""
    return bearer(make_key(deployed, "ops-alice-laptop", "admin:claims", owner="ops-alice"))


def claims(settings: Settings) -> Any:
    return spec_module.load(settings.config).service("claims")


async def history(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/v1/services/claims/history")
    assert r.status_code == 200, r.text
    return list(r.json()["history"])


# -- approvals ---------------------------------------------------------------------


def test_registrant_may_not_approve_and_refusal_is_recorded(deployed: Settings) -> None:
    store = open_store(deployed)
    v = versions.register(store, claims(deployed), "fixture_models:claims_v2", actor="carol")
    with pytest.raises(ApprovalRefused, match="carol registered version 2"):
        approvals.approve(
            store, claims(deployed), v.number, by="carol", override_gates=True, reason="x"
        )
    for alias in ("Carol", " carol ", "CAROL"):  # the same person, however written
        with pytest.raises(ApprovalRefused, match="registered version 2"):
            approvals.approve(
                store, claims(deployed), v.number, by=alias, override_gates=True, reason="x"
            )
    with pytest.raises(UsageError, match="control characters"):
        approvals.approve(
            store, claims(deployed), v.number, by="bob\nalice", override_gates=True, reason="x"
        )
    with pytest.raises(UsageError, match="--reason"):
        approvals.approve(store, claims(deployed), v.number, by="dave", override_gates=True)
    with pytest.raises(ApprovalRefused, match="no stored evaluation"):
        approvals.approve(store, claims(deployed), v.number, by="dave")
    with pytest.raises(NotApprovedError, match="0 of 1"):
        deployments.deploy(store, claims(deployed), v.number, actor="dave")
    approvals.approve(
        store, claims(deployed), v.number, by="dave", override_gates=True, reason="hotfix"
    )
    with pytest.raises(ApprovalRefused, match="already approved"):
        approvals.approve(
            store, claims(deployed), v.number, by=" Dave", override_gates=True, reason="x"
        )
    deployments.deploy(store, claims(deployed), v.number, actor="dave")
    store.dispose()


def test_several_approvers_required(settings: Settings) -> None:
    write_spec(
        settings,
        SPEC.replace("    batching:\n", "    approvals: {required: 2}\n    batching:\n", 1),
    )
    number = register_and_approve(settings)  # one approval
    with pytest.raises(NotApprovedError, match="1 of 2"):
        deploy(settings, number)
    store = open_store(settings)
    approvals.approve(store, claims(settings), number, by="erin", override_gates=True, reason="x")
    store.dispose()
    deploy(settings, number)


async def test_unapproved_version_cannot_deploy_or_canary_over_http(
    deployed: Settings, admin: dict[str, str]
) -> None:
    store = open_store(deployed)
    v = versions.register(store, claims(deployed), "fixture_models:claims_v2", actor="carol")
    store.dispose()
    async with running(deployed) as client:
        for path, body in (("deploy", {"version": v.number}), ("rollout", {"version": v.number})):
            r = await client.post(f"/v1/services/claims/{path}", json=body, headers=admin)
            assert r.status_code == 409, r.text
            assert r.json()["type"].endswith("not-approved")
        r = await client.post(
            f"/v1/services/claims/versions/{v.number}/approve",
            json={"override_gates": True, "reason": "reviewed by hand"},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        r = await client.post(
            "/v1/services/claims/deploy", json={"version": v.number}, headers=admin
        )
        assert r.status_code == 200, r.text
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.json()["version"] == v.number  # applied at once, no restart
        actions = [(h["action"], h["actor"]) for h in await history(client)]
        assert ("override", "ops-alice") in actions
        assert ("deploy", "ops-alice") in actions


# -- admin API access --------------------------------------------------------------


async def test_admin_api_needs_the_token(deployed: Settings, admin: dict[str, str]) -> None:
    async with running(deployed, token=None) as client:
        r = await client.get("/v1/services/claims/history")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = await client.get(
            "/v1/services/claims/history", headers={"Authorization": "Bearer nope"}
        )
        assert r.status_code == 401
        assert TOKEN not in r.text
        assert (await client.get("/v1/services/claims/history", headers=admin)).status_code == 200
    # Keys work without the bootstrap key; the bootstrap key works only where it is set.
    async with running(deployed.with_(admin_token=""), token=None) as client:
        r = await client.get("/v1/services/claims/history", headers=admin)
        assert r.status_code == 200
        r = await client.get("/v1/services/claims/history", headers=bearer(TOKEN))
        assert r.status_code == 401


async def test_admin_bad_bodies_are_problems(deployed: Settings, admin: dict[str, str]) -> None:
    async with running(deployed) as client:
        r = await client.post("/v1/services/claims/deploy", content=b"{", headers=admin)
        assert r.status_code == 400
        r = await client.post(
            "/v1/services/claims/deploy", json={"version": "one", "x": 1}, headers=admin
        )
        assert r.status_code == 422
        assert {e["path"] for e in r.json()["errors"]} == {"/version", "/x"}
        r = await client.post("/v1/services/claims/deploy", json={"version": 9}, headers=admin)
        assert r.status_code == 404
        for huge in (2**31, 10**20):
            r = await client.post(
                "/v1/services/claims/deploy", json={"version": huge}, headers=admin
            )
            assert r.status_code == 422, r.text
            assert r.json()["errors"][0]["path"] == "/version"
        r = await client.post(
            "/v1/services/claims/versions/99999999999/approve", json={"by": "x"}, headers=admin
        )
        assert r.status_code == 422, r.text
        r = await client.post("/v1/services/claims/disable", json={}, headers=admin)
        assert r.status_code == 422
        r = await client.post("/v1/services/claims/rollout/jump", headers=admin)
        assert r.status_code == 404


# -- kill switch, rollback, shadow ---------------------------------------------------


def test_kill_switch_keeps_a_weight_the_controller_set_meanwhile(deployed: Settings) -> None:
    # The controller moves the canary's weight in its own transaction; a kill switch
    # thrown while that commits must see the new weight, not write back a stale copy.
    store = open_store(deployed)
    try:
        with store.write() as conn:
            conn.execute(
                deployments.deployments.update().values(canary_version=1, canary_weight=0.05)
            )
        holding, release = threading.Event(), threading.Event()

        def controller_step() -> None:
            with store.write() as conn:
                set_split(store, conn, "claims", "controller", 1, canary_weight=0.5)
                holding.set()
                release.wait(10)

        step = threading.Thread(target=controller_step)
        step.start()
        assert holding.wait(10)
        threading.Timer(0.3, release.set).start()  # commit while the switch waits
        deployments.set_disabled(store, claims(deployed), True, actor="ops", reason="incident")
        step.join(10)
        with store.read() as conn:
            dep = deployments.get_deployment(conn, "claims")
        assert dep is not None
        assert dep.disabled
        assert dep.canary_weight == 0.5
    finally:
        store.dispose()


async def test_kill_switch(deployed: Settings, admin: dict[str, str]) -> None:
    async with running(deployed) as client:
        r = await client.post(
            "/v1/services/claims/disable", json={"reason": "bad data upstream"}, headers=admin
        )
        assert r.status_code == 200, r.text
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 503
        assert r.json()["type"].endswith("disabled")
        assert "bad data upstream" in r.json()["detail"]
        stored = (await client.get(f"/v1/inferences/{r.json()['id']}")).json()
        assert (stored["status"], stored["problem"]) == (503, "disabled")
        assert (await client.get("/v1/services/claims")).json()["disabled"] is True
        r = await client.post(
            "/v1/services/claims/disable", json={"reason": "again"}, headers=admin
        )
        assert r.status_code == 409
        assert (await client.post("/v1/services/claims/enable", headers=admin)).status_code == 200
        assert (await client.post(PREDICT, json={"inputs": GOOD})).status_code == 200
        actions = [h["action"] for h in await history(client)]
        assert actions[-2:] == ["disable", "enable"]


async def test_rollback_under_load_fails_no_request(
    deployed: Settings, admin: dict[str, str]
) -> None:
    register_and_deploy(deployed, "fixture_models:claims_v2")
    async with running(deployed) as client:

        async def one(i: int) -> httpx.Response:
            return await client.post(PREDICT, json={"inputs": {**GOOD, "amount": i}})

        load = [asyncio.create_task(one(i)) for i in range(300)]
        await asyncio.sleep(0)
        r = await client.post(
            "/v1/services/claims/rollback", json={"reason": "v2 misroutes"}, headers=admin
        )
        assert r.status_code == 200, r.text
        more = [asyncio.create_task(one(i)) for i in range(300)]
        responses = await asyncio.gather(*load, *more)
        assert Counter(r.status_code for r in responses) == Counter({200: 600})
        versions_seen = Counter(r.json()["version"] for r in responses)
        assert set(versions_seen) <= {1, 2}
        # Every answer has its record, naming the version that served it.
        answered = {r.json()["id"]: r.json()["version"] for r in responses}
        store = open_store(deployed)
        with store.read() as conn:
            recorded = dict(
                conn.execute(
                    sa.select(audit_log.c.id, audit_log.c.version).where(
                        audit_log.c.id.in_(list(answered))
                    )
                ).all()
            )
        store.dispose()
        assert recorded == answered
        assert (await client.post(PREDICT, json={"inputs": GOOD})).json()["version"] == 1
        last = (await history(client))[-1]
        assert (last["action"], last["version"], last["rolled_back"]) == ("rollback", 1, 2)
        assert last["reason"] == "v2 misroutes"


def production(settings: Settings) -> tuple[int | None, int | None]:
    """The split's production version and where a rollback would go now."""
    store = open_store(settings)
    with store.read() as conn:
        dep = deployments.get_deployment(conn, "claims")
    store.dispose()
    assert dep is not None
    return dep.production_version, dep.previous_version


def rollback(settings: Settings, to: int | None = None, service: Any = None) -> None:
    store = open_store(settings)
    try:
        deployments.rollback(store, service or claims(settings), actor="ops", to=to)
    finally:
        store.dispose()


def rollback_records(settings: Settings) -> list[tuple[int, int, int | None]]:
    """Each rollback's (new production, version rolled back, canary it aborted)."""
    store = open_store(settings)
    with store.read() as conn:
        found = [h for h in read_history(conn, "claims") if h["action"] == "rollback"]
    store.dispose()
    return [(h["version"], h["rolled_back"], h["aborted_canary"]) for h in found]


def test_rollback_walks_back_through_the_production_history(deployed: Settings) -> None:
    for ref in ("fixture_models:claims_v2", "fixture_models:slow"):
        deploy(deployed, register_and_approve(deployed, ref))
    assert production(deployed) == (3, 2)
    rollback(deployed)
    assert production(deployed) == (2, 1)
    rollback(deployed)  # again: further back, not forward to 3
    assert production(deployed) == (1, None)
    with pytest.raises(ConflictError, match="no earlier production version than 1"):
        rollback(deployed)
    assert production(deployed) == (1, None)  # a refused rollback changes nothing
    assert rollback_records(deployed) == [(2, 3, None), (1, 2, None)]
    # Deploying again starts from where production is: 1, then 3.
    deploy(deployed, 3)
    assert production(deployed) == (3, 1)
    rollback(deployed)
    assert production(deployed) == (1, None)


def test_rollback_twice_does_not_toggle_back(deployed: Settings) -> None:
    deploy(deployed, register_and_approve(deployed, "fixture_models:claims_v2"))
    rollback(deployed)
    assert production(deployed) == (1, None)
    with pytest.raises(ConflictError, match="no earlier production version"):
        rollback(deployed)
    # A version deployed twice is in the history twice: rollback walks back in order.
    deploy(deployed, 2)
    deploy(deployed, 1)
    deploy(deployed, 2)
    assert production(deployed) == (2, 1)
    rollback(deployed)
    assert production(deployed) == (1, 2)
    rollback(deployed)
    assert production(deployed) == (2, 1)
    rollback(deployed)
    assert production(deployed) == (1, None)


def test_rollback_to_an_earlier_version(deployed: Settings) -> None:
    for ref in ("fixture_models:claims_v2", "fixture_models:slow", "fixture_models:flaky"):
        deploy(deployed, register_and_approve(deployed, ref))
    assert production(deployed) == (4, 3)
    with pytest.raises(ConflictError, match="version 4 is already in production"):
        rollback(deployed, to=4)
    with pytest.raises(UnknownVersionError, match="no version 9"):
        rollback(deployed, to=9)
    rollback(deployed, to=2)  # 4 and 3 are popped
    assert production(deployed) == (2, 1)
    assert rollback_records(deployed) == [(2, 4, None)]
    with pytest.raises(ConflictError, match=r"version 3 is not an earlier production version"):
        rollback(deployed, to=3)  # it was, but it was rolled back: forward is deploy
    rollback(deployed, to=1)
    assert production(deployed) == (1, None)
    with pytest.raises(ConflictError, match=r"version 2 is not .* \(there is none\)"):
        rollback(deployed, to=2)
    store = open_store(deployed)
    v5 = versions.register(store, claims(deployed), "fixture_models:claims", actor="carol")
    store.dispose()
    with pytest.raises(ConflictError, match="version 5 is not an earlier production version"):
        rollback(deployed, to=v5.number)  # never in production
    assert production(deployed) == (1, None)


def test_rollback_to_needs_the_version_still_approved(deployed: Settings) -> None:
    for ref in ("fixture_models:claims_v2", "fixture_models:slow"):
        deploy(deployed, register_and_approve(deployed, ref))
    svc = claims(deployed)
    stricter = replace(svc, policy=replace(svc.policy, approvals=Approvals(required=2)))
    with pytest.raises(NotApprovedError, match="version 1 has 1 of 2 approval"):
        rollback(deployed, to=1, service=stricter)
    assert production(deployed) == (3, 2)
    # The plain rollback is the emergency lever: it asks for no approval.
    rollback(deployed, service=stricter)
    assert production(deployed) == (2, 1)


def test_rollback_aborts_the_canary(deployed: Settings) -> None:
    deploy(deployed, register_and_approve(deployed, "fixture_models:claims_v2"))
    canary = register_and_approve(deployed, "fixture_models:slow")
    store = open_store(deployed)
    try:
        commands.start(store, claims(deployed), canary, actor="ops")
        dep = deployments.rollback(store, claims(deployed), actor="ops", reason="v2 is worse")
        assert (dep.production_version, dep.previous_version) == (1, None)
        assert (dep.canary_version, dep.canary_weight) == (None, 0.0)
        with store.read() as conn:
            assert active_rollout(conn, "claims") is None
    finally:
        store.dispose()
    assert rollback_records(deployed) == [(1, 2, canary)]


def test_a_canary_rolled_back_by_the_controller_is_no_step_back(store: Store) -> None:
    # Promoted by the controller: production 2 over 1. Then canary 3 fails and the
    # controller rolls it back (a "rollback" record naming production 2): a person's
    # rollback after that still goes from 2 to 1.
    w = rollouts.setup(store)
    start = rollouts.start
    start(store, w.svc, 2, actor="alice", now_us=rollouts.T0)
    for k in range(2):
        rollouts.healthy(store, rollouts.T0 + k * rollouts.MIN)
        rollouts.tick(store, w.spec, rollouts.T0 + (k + 1) * rollouts.MIN)
    assert rollouts.split(store) == (2, None, 0.0, 1)
    v3 = versions.register(store, w.svc, "fixture_models:slow", actor="dev")
    approvals.approve(store, w.svc, v3.number, by="someone-else", override_gates=True, reason="t")
    t = rollouts.T0 + 10 * rollouts.MIN
    start(store, w.svc, v3.number, actor="alice", now_us=t)
    for k in range(2):
        rollouts.traffic(store, v3.number, t + k * rollouts.MIN, 40, errors=20)
        rollouts.traffic(store, 2, t + k * rollouts.MIN, 40)
        rollouts.tick(store, w.spec, t + (k + 1) * rollouts.MIN)
    [automatic] = rollouts.audit(store, "rollback")
    assert (automatic["version"], automatic["rolled_back"]) == (2, v3.number)
    assert rollouts.split(store) == (2, None, 0.0, 1)
    with store.read() as conn:
        assert production_versions(conn, "claims") == [1, 2]
    dep = deployments.rollback(store, w.svc, actor="ops")
    assert (dep.production_version, dep.previous_version) == (1, None)


def test_production_history_replays_rollbacks_recorded_as_toggles(store: Store) -> None:
    # Before rollbacks walked back, a second rollback went forward again: deploy 1,
    # deploy 7, rollback (to 1), rollback (to 7). Replayed, that is production 7 over 1.
    with store.write() as conn:
        log.append(
            store,
            conn,
            [
                log.action(action, actor="ops", service="claims", version=v)
                for action, v in (("deploy", 1), ("deploy", 7), ("rollback", 1), ("rollback", 7))
            ]
            + [log.action("deploy", actor="ops", service="other", version=3)],
        )
        assert production_versions(conn, "claims") == [1, 7]
        assert production_versions(conn, "nothing") == []


async def test_shadow_sees_copies_and_answers_nobody(
    deployed: Settings, admin: dict[str, str]
) -> None:
    store = open_store(deployed)
    v = versions.register(store, claims(deployed), "fixture_models:claims_v2", actor="carol")
    store.dispose()  # unapproved: shadow needs no approval
    async with running(deployed) as client:
        r = await client.post(
            "/v1/services/claims/shadow", json={"version": v.number}, headers=admin
        )
        assert r.status_code == 200, r.text
        answers = [await client.post(PREDICT, json={"inputs": GOOD}) for _ in range(5)]
        assert {a.json()["version"] for a in answers} == {1}
        assert {a.json()["prediction"] for a in answers} == {"routine"}
        await asyncio.sleep(0.2)  # shadow copies are recorded after the answer
    store = open_store(deployed)
    with store.read() as conn:
        shadows = conn.execute(
            sa.select(audit_log.c.version, audit_log.c.status).where(
                audit_log.c.action == "shadow", audit_log.c.kind == "inference"
            )
        ).all()
    store.dispose()
    assert len(shadows) == 5
    assert {tuple(s) for s in shadows} == {(v.number, 200)}


# -- routing ------------------------------------------------------------------------


async def test_sticky_routing_through_the_gateway(deployed: Settings) -> None:
    number = register_and_approve(deployed, "fixture_models:claims_v2")
    store = open_store(deployed)
    commands.start(store, claims(deployed), number, actor="ops")
    with store.write() as conn:  # hold the canary at 50% for this test
        from prodgate.store.tables import deployments as dt

        conn.execute(dt.update().values(canary_weight=0.5))
        store.bump_generation(conn)
    store.dispose()
    async with running(deployed) as client:
        seen: dict[str, set[int]] = {}
        for key in [f"customer-{i}" for i in range(40)]:
            for _ in range(3):
                r = await client.post(PREDICT, json={"inputs": GOOD, "routing_key": key})
                seen.setdefault(key, set()).add(r.json()["version"])
            r = await client.post(PREDICT, json={"inputs": GOOD}, headers={"X-Routing-Key": key})
            seen[key].add(r.json()["version"])
            stored = (await client.get(f"/v1/inferences/{r.json()['id']}")).json()
            assert stored["version"] == r.json()["version"]
        assert all(len(v) == 1 for v in seen.values()), seen
        shares = Counter(next(iter(v)) for v in seen.values())
        assert set(shares) == {1, number}  # both versions serve some keys


# -- feedback -----------------------------------------------------------------------


async def test_feedback(deployed: Settings, admin: dict[str, str]) -> None:
    async with running(deployed) as client:
        rid = (await client.post(PREDICT, json={"inputs": GOOD})).json()["id"]
        url = f"/v1/inferences/{rid}/feedback"
        r = await client.post(url, json={"label": "teapot"})
        assert r.status_code == 422
        assert r.json()["errors"][0]["path"] == "/label"
        r = await client.post(url, json={"label": "routine", "source": "crm\u0000"})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["path"] == "/source"
        for when in (1e20, -5, 1e300, "0001-01-01T00:00:00-23:59", "1969-12-31T23:59:59Z"):
            # before 1970 or beyond what a store keeps: the caller's mistake
            r = await client.post(url, json={"label": "routine", "observed_at": when})
            assert r.status_code == 422, r.text
            assert r.json()["errors"][0]["path"] == "/observed_at"
        r = await client.post(
            url,
            json={
                "label": "adjuster",
                "source": "claims-system",
                "observed_at": "2026-11-20T10:00:00Z",
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["truth"] == "adjuster"
        assert (await client.post(url, json={"label": "routine"})).status_code == 409
        r = await client.post("/v1/inferences/nope/feedback", json={"label": "routine"})
        assert r.status_code == 404
        bad = (await client.post(PREDICT, json={"inputs": {}})).json()["id"]
        assert (
            await client.post(f"/v1/inferences/{bad}/feedback", json={"label": "routine"})
        ).status_code == 404
        r = await client.post(url, content=b"nope", headers={"content-type": "application/json"})
        assert r.status_code == 400
        r = await client.post(url, content=b"label=routine", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        assert r.headers["content-type"] == "application/problem+json"
        report = (await client.get("/v1/services/claims/metrics?window=1h", headers=admin)).json()
        v1 = report["versions"][0]
        assert v1["operations"]["labelled"] == 1
        assert v1["quality"]["metrics"]["accuracy"] == 0.0  # it said routine; truth adjuster
        r = await client.get("/v1/services/claims/metrics?window=soon", headers=admin)
        assert r.status_code == 400
