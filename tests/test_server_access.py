"""Who may call which route: the matrix over the app's own route table, and the
behaviours around it (auth off, public services, revocation reaching a running
gateway, records and counts of refusals, actors taken from keys)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute

from gateway_support import GOOD, SPEC, bearer, make_key, running, write_spec
from prodgate.audit import log
from prodgate.identity import keys
from prodgate.identity.scopes import PER_SERVICE
from prodgate.server.access import Access, Guarded
from prodgate.server.app import access_table, create_app
from prodgate.settings import Settings
from prodgate.store.engine import open_store

pytestmark = pytest.mark.anyio

PREDICT = "/v1/services/claims/predict"
PROBLEM = "application/problem+json"
#: A key that grants nothing any route asks for but "any key".
USELESS_SCOPE = "feedback:idle"


def _concrete(path: str, record_id: str) -> str:
    return path.format(service="claims", version=1, action="pause", id=record_id)


def _right_scope(access: Access) -> str:
    kind = access.kinds[0] if access.kinds else "audit:read"
    return f"{kind}:claims" if kind in PER_SERVICE else kind


def _routes(table: list[BaseRoute]) -> list[tuple[str, str, Access]]:
    return sorted((path, method, a) for (path, method), a in access_table(table).items())


def test_every_route_declares_its_access(sqlite_settings: Settings) -> None:
    write_spec(sqlite_settings)
    app = create_app(sqlite_settings)
    assert all(isinstance(r, Guarded) for r in app.routes)
    assert len(_routes(app.routes)) >= 20
    # A route added without a declaration is refused when the app is built.
    from starlette.routing import Route

    async def endpoint(request: Any) -> Any:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="declares no access"):
        access_table([*app.routes, Route("/v1/new", endpoint)])


async def _record_id(client: httpx.AsyncClient) -> str:
    r = await client.post(PREDICT, json={"inputs": GOOD})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


async def test_the_auth_matrix_over_the_route_table(deployed: Settings) -> None:
    settings = deployed.with_(controller=False)
    store = open_store(settings)
    revoked = make_key(settings, "revoked", "admin")
    keys.revoke(store, "revoked", actor="tester")
    expired = keys.create(
        store, "expired", scopes=["admin"], actor="tester", expires_in_s=0.001
    ).token
    store.dispose()
    wrong = make_key(settings, "useless", USELESS_SCOPE)
    by_scope: dict[str, str] = {}
    tokens = {
        "none": None,
        "malformed": "Basic dXNlcjpwYXNz",
        "wrong": "pg_0123456789ab_not-a-real-secret",
        "revoked": revoked,
        "expired": expired,
        "wrong scope": wrong,
    }
    async with running(settings) as admin:
        record_id = await _record_id(admin)
        for path, method, access in _routes(admin.app.routes):  # type: ignore[attr-defined]
            scope = _right_scope(access)
            if scope not in by_scope:
                by_scope[scope] = make_key(settings, f"key-{scope}", scope)
            await admin.app.state.gateway.refresh()  # type: ignore[attr-defined]
            url = _concrete(path, record_id)
            cases = {**tokens, "right scope": by_scope[scope]}
            for case, token in cases.items():
                headers = {"Authorization": token if case == "malformed" else f"Bearer {token}"}
                r = await admin.request(
                    method, url, headers=headers if token else {"Authorization": ""}
                )
                where = (method, path, case, r.status_code, r.text[:200])
                if access.public or case == "right scope":
                    assert r.status_code not in (401, 403), where
                elif case == "wrong scope":
                    if access.kinds:
                        assert r.status_code == 403, where
                        assert "insufficient_scope" in r.headers["www-authenticate"], where
                    else:  # any working key
                        assert r.status_code not in (401, 403), where
                else:
                    assert r.status_code == 401, where
                    assert r.headers["www-authenticate"].startswith("Bearer"), where
                if r.status_code in (401, 403):
                    assert r.headers["content-type"] == PROBLEM, where
                    assert r.json()["status"] == r.status_code, where


async def test_refusals_are_recorded_and_counted_without_the_key(deployed: Settings) -> None:
    revoked = make_key(deployed, "gone", "predict:claims")
    store = open_store(deployed)
    keys.revoke(store, "gone", actor="tester")
    async with running(deployed, token=None) as client:
        assert (await client.post(PREDICT, json={"inputs": GOOD})).status_code == 401
        r = await client.post(PREDICT, json={"inputs": GOOD}, headers=bearer(revoked))
        assert r.status_code == 401
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        assert "revoked" in r.json()["detail"]
        metrics = (await client.get("/metrics")).text
    assert 'prodgate_auth_denied_total{reason="missing"} 1.0' in metrics
    assert 'prodgate_auth_denied_total{reason="revoked"} 1.0' in metrics
    with store.read() as conn:
        denied = [r for r in log.tail(conn, 50) if r["action"] == "access_denied"]
    store.dispose()
    assert sorted(r["reason"] for r in denied) == ["missing", "revoked"]
    secret = revoked.split("_", 2)[2]
    assert all(secret not in str(r) for r in denied)
    [by_key] = [r for r in denied if r["reason"] == "revoked"]
    assert by_key["actor"] == revoked.split("_")[1]  # the key id
    assert by_key["status"] == 401
    assert by_key["service"] == "claims"


async def test_a_revoked_key_is_refused_within_a_second(deployed: Settings) -> None:
    token = make_key(deployed, "app", "predict:claims")
    async with running(deployed.with_(refresh_interval=0.5), token=token) as client:
        assert (await client.post(PREDICT, json={"inputs": GOOD})).status_code == 200
        store = open_store(deployed)
        keys.revoke(store, "app", actor="tester")  # another process would do the same
        store.dispose()
        revoked_at = time.monotonic()
        while (await client.post(PREDICT, json={"inputs": GOOD})).status_code == 200:
            assert time.monotonic() - revoked_at < 1.0
            await asyncio.sleep(0.02)


async def test_answers_record_who_asked(deployed: Settings) -> None:
    token = make_key(deployed, "triage-bot", "predict:claims", owner="alice", agent=True)
    async with running(deployed, token=token) as client:
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 200
        refused = await client.post(PREDICT, json={"inputs": {"amount": -1}})
        assert refused.status_code == 422
    store = open_store(deployed)
    with store.read() as conn:
        answered = log.get(conn, r.json()["id"])
        rejected = log.get(conn, refused.json()["id"])
    store.dispose()
    key_id = token.split("_")[1]
    for record in (answered, rejected):
        assert record is not None
        assert record["actor"] == "triage-bot"
        assert record["key"] == key_id


async def test_a_public_service_needs_no_key_but_checks_one_given(deployed: Settings) -> None:
    write_spec(
        deployed,
        SPEC.replace("    kind: classifier\n", "    kind: classifier\n    public: true\n", 1),
    )
    async with running(deployed, token=None) as client:
        assert (await client.post(PREDICT, json={"inputs": GOOD})).status_code == 200
        r = await client.post(PREDICT, json={"inputs": GOOD}, headers=bearer("pg_0123456789ab_x"))
        assert r.status_code == 401  # a key given is a key checked
        assert (await client.get("/v1/inferences/x")).status_code == 401  # only predict is open


async def test_auth_off_opens_the_data_plane_but_not_the_admin_api(deployed: Settings) -> None:
    async with running(deployed.with_(auth="off", admin_token=""), token=None) as client:
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 200
        assert (await client.get(f"/v1/inferences/{r.json()['id']}")).status_code == 200
        assert (await client.get("/v1/services/claims/history")).status_code == 401


async def test_feedback_scope_is_checked_on_the_record_service(deployed: Settings) -> None:
    predictor = make_key(deployed, "app", "predict:claims")
    other = make_key(deployed, "other", "feedback:idle")
    mine = make_key(deployed, "labeller", "feedback:claims")
    async with running(deployed, token=predictor) as client:
        record_id = (await client.post(PREDICT, json={"inputs": GOOD})).json()["id"]
        url = f"/v1/inferences/{record_id}/feedback"
        r = await client.post(url, json={"label": "routine"}, headers=bearer(other))
        assert r.status_code == 403, r.text
        assert "feedback:claims" in r.json()["detail"]
        r = await client.post(url, json={"label": "routine"}, headers=bearer(mine))
        assert r.status_code == 201, r.text
