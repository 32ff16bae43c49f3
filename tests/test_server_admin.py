"""The admin API's routes: declared once, served and documented from that declaration."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
from starlette.routing import Route

from gateway_support import GOOD, bearer, make_key, running, write_spec
from prodgate.server.admin import ROUTES, AdminRoute
from prodgate.server.app import access_table, create_app
from prodgate.settings import Settings

pytestmark = pytest.mark.anyio

TOKEN = "admin-routes-token"
#: A value of the wrong JSON type for each type a body field may have.
WRONG: dict[type, Any] = {str: 1, bool: "yes", int: "one"}
WITH_BODY = [r for r in ROUTES if r.body is not None]


@pytest.fixture
def deployed(deployed: Settings) -> Settings:
    """Version 1 deployed, the admin API open, no rollout controller."""
    return deployed.with_(admin_token=TOKEN, controller=False)


@pytest.fixture
def admin(deployed: Settings) -> dict[str, str]:
    """The key of ops-alice, who governs claims."""
    return bearer(make_key(deployed, "ops-alice-laptop", "admin:claims", owner="ops-alice"))


def url(route: AdminRoute) -> str:
    return route.full_path.format(service="claims", version=1, action="pause")


def test_each_route_is_served_and_documented_from_its_one_declaration(
    sqlite_settings: Settings,
) -> None:
    write_spec(sqlite_settings)
    app = create_app(sqlite_settings)
    served = {
        r.path: r.methods or set()
        for r in app.routes
        if isinstance(r, Route) and r.path.startswith("/v1/services/{service}/")
    }
    # One Starlette route per path, so a 405 can list all of its methods.
    paths = [r.path for r in app.routes if isinstance(r, Route)]
    assert len(paths) == len(set(paths))
    declared: dict[str, set[str]] = {}
    for route in ROUTES:
        declared.setdefault(route.full_path, set()).add(route.method)
    assert {p: m - {"HEAD"} for p, m in served.items() if p in declared} == declared
    assert set(declared) <= set(served)

    from prodgate.server import openapi

    doc = openapi.build(app.state.spec, access_table(app.routes))
    documented = {
        (path, method.upper())
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if "admin" in op.get("tags", [])
    }
    assert documented == {(r.full_path, r.method) for r in ROUTES}
    for route in ROUTES:
        op = doc["paths"][route.full_path][route.method.lower()]
        assert op["security"] == [{"key": []}]
        assert str(route.status) in op["responses"]
        if route.body is None:
            assert "requestBody" not in op
            continue
        media = op["requestBody"]["content"]["application/json"]
        assert media["schema"] == route.body_schema
        assert op["requestBody"]["required"] == route.body_required
        check = jsonschema_rs.validator_for(media["schema"])
        for example in media["examples"].values():
            assert check.is_valid(example["value"]), (route.full_path, example)


async def test_a_405_lists_every_method_of_its_path(
    deployed: Settings, admin: dict[str, str]
) -> None:
    async with running(deployed) as client:
        for method in ("DELETE", "PUT", "OPTIONS"):
            r = await client.request(method, "/v1/services/claims/rollout", headers=admin)
            assert r.status_code == 405, r.text
            assert r.headers["content-type"] == "application/problem+json"
            allowed = {m.strip() for m in r.headers["allow"].split(",")}
            assert allowed == {"GET", "HEAD", "POST"}
        r = await client.post("/v1/services/claims/history", headers=admin)
        assert r.status_code == 405
        assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD"}
        # Each method of the merged path still reaches its own handler.
        r = await client.get("/v1/services/claims/rollout", headers=admin)
        assert (r.status_code, r.json()["type"]) == (404, "urn:prodgate:problem:no-rollout")
        r = await client.post("/v1/services/claims/rollout", json={"version": 1}, headers=admin)
        assert r.status_code == 409, r.text  # version 1 is production already
        r = await client.head("/v1/services/claims/rollout", headers=admin)
        assert r.status_code == 404


@pytest.mark.parametrize("route", WITH_BODY, ids=[f"{r.method} {r.path}" for r in WITH_BODY])
async def test_a_body_is_checked_against_the_schema_the_document_publishes(
    deployed: Settings, route: AdminRoute, admin: dict[str, str]
) -> None:
    fields = route.body or ()
    wrong = {f.name: WRONG[f.kind] for f in fields} | {"colour": "red"}
    async with running(deployed) as client:
        doc = (await client.get("/openapi.json")).json()
        published = doc["paths"][route.full_path]["post"]["requestBody"]["content"]
        check = jsonschema_rs.validator_for(published["application/json"]["schema"])
        assert not check.is_valid(wrong)
        r = await client.post(url(route), json=wrong, headers=admin)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        errors = r.json()["errors"]
        assert {e["path"] for e in errors} == {f"/{f.name}" for f in fields} | {"/colour"}
        assert {e["message"] for e in errors if e["path"] == "/colour"} == {"unknown field"}
        # Every required field missing is named; a body that is not an object is a 422.
        required = {f"/{f.name}" for f in fields if f.required}
        r = await client.post(url(route), json={}, headers=admin)
        if required:
            assert r.status_code == 422, r.text
            assert {e["path"] for e in r.json()["errors"]} == required
            assert not check.is_valid({})
        else:
            assert r.status_code != 422, r.text
            assert check.is_valid({})
        r = await client.post(url(route), json=[1], headers=admin)
        assert r.status_code == 422, r.text
        assert [e["path"] for e in r.json()["errors"]] == [""]


async def test_null_is_left_out_except_where_it_is_a_value(
    deployed: Settings, admin: dict[str, str]
) -> None:
    async with running(deployed) as client:
        post = client.post
        r = await post("/v1/services/claims/disable", json={"reason": None}, headers=admin)
        assert r.status_code == 422, r.text  # a required reason
        assert [e["path"] for e in r.json()["errors"]] == ["/reason"]
        r = await post("/v1/services/claims/enable", json={"reason": None}, headers=admin)
        assert r.status_code == 409, r.text  # past the body: the service is not disabled
        r = await post("/v1/services/claims/shadow", json={"version": 1}, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["deployment"]["shadow"] == 1
        r = await post("/v1/services/claims/shadow", json={"version": None}, headers=admin)
        assert r.status_code == 200, r.text  # null stops the shadow
        assert r.json()["deployment"]["shadow"] is None
        r = await post("/v1/services/claims/shadow", json={}, headers=admin)
        assert r.status_code == 422, r.text
        # JSON Schema counts 1.0 as an integer, and so does the server.
        r = await post("/v1/services/claims/shadow", json={"version": 1.0}, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["deployment"]["shadow"] == 1
        assert (await post("/v1/services/claims/predict", json={"inputs": GOOD})).status_code == 200


@pytest.mark.parametrize("route", WITH_BODY, ids=[f"{r.method} {r.path}" for r in WITH_BODY])
async def test_text_with_nul_is_a_422_on_every_store(
    deployed: Settings, route: AdminRoute, admin: dict[str, str]
) -> None:
    # PostgreSQL text refuses NUL: the store would answer 503 for the caller's mistake.
    texts = [f for f in route.body or () if f.kind is str]
    if not texts:
        pytest.skip("no text field")
    body: dict[str, Any] = {f.name: "a\x00b" for f in texts}
    body |= {f.name: 1 for f in route.body or () if f.kind is int and f.required}
    if route.path == "/versions/{version}/approve":
        body["override_gates"] = True
    async with running(deployed) as client:
        r = await client.post(url(route), json=body, headers=admin)
        assert r.status_code == 422, r.text
        assert {e["path"] for e in r.json()["errors"]} == {f"/{f.name}" for f in texts}


@pytest.mark.parametrize("version", ["0", "x", "1.0", "\u0663", "9" * 5000, "2147483648"])
async def test_a_version_in_the_path_is_a_number_from_1_to_2_31(
    deployed: Settings, version: str, admin: dict[str, str]
) -> None:
    async with running(deployed) as client:
        r = await client.post(
            f"/v1/services/claims/versions/{version}/approve", json={}, headers=admin
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["path"] == "/version"


async def test_the_caller_is_checked_before_anything_else(
    deployed: Settings, admin: dict[str, str]
) -> None:
    async with running(deployed, token=None) as client:
        for route in ROUTES:
            r = await client.request(route.method, url(route).replace("claims", "nope"))
            assert r.status_code == 401, (route.full_path, r.text)
            # A key for claims only may not learn what else there is; one for every
            # service hears the service does not exist.
            r = await client.request(
                route.method, url(route).replace("claims", "nope"), headers=admin
            )
            assert r.status_code == 403, (route.full_path, r.text)
            r = await client.request(
                route.method, url(route).replace("claims", "nope"), headers=bearer(TOKEN)
            )
            assert r.status_code == 404, (route.full_path, r.text)
            assert r.json()["type"].endswith("unknown-service")


async def test_rollback_to_and_the_origin_of_admin_actions(
    deployed: Settings, admin: dict[str, str]
) -> None:
    from gateway_support import deploy, register_and_approve

    for _ in range(2):  # versions 2 and 3 in production, in turn
        deploy(deployed, register_and_approve(deployed, "fixture_models:claims_v2"))
    async with running(deployed) as client:
        r = await client.post(
            "/v1/services/claims/rollback",
            json={"to": 1, "reason": "back to the pilot"},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        assert r.json()["deployment"]["production"] == 1
        again = await client.post("/v1/services/claims/rollback", json={"to": 3}, headers=admin)
        assert again.status_code == 409  # 3 was production after 1: deploy it instead
        history = (await client.get("/v1/services/claims/history", headers=admin)).json()
        [rollback] = [h for h in history["history"] if h["action"] == "rollback"]
        assert (rollback["actor"], rollback["version"], rollback["rolled_back"]) == (
            "ops-alice",
            1,
            3,
        )
        # The admin API records where an action came from: its channel and address.
        key_id = admin["Authorization"].split("_")[1]
        assert rollback["origin"] == {"channel": "admin-api", "address": "127.0.0.1", "key": key_id}
