"""The OpenAPI document: built once per app, and saying what the server does."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
from starlette.routing import Route

from gateway_support import GOOD, register_and_deploy, running, write_spec
from prodgate.server import openapi
from prodgate.server.app import access_table, create_app
from prodgate.settings import Settings

pytestmark = pytest.mark.anyio

PREDICT = "/v1/services/claims/predict"


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A validator of *schema* whose $refs resolve in *doc*'s components."""
    return jsonschema_rs.validator_for({**schema, "components": doc["components"]})


def answer_schema(doc: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    response = doc["paths"][path][method]["responses"][status]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


def request_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["paths"][path]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    return schema


async def test_the_document_is_built_once_per_app(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(sqlite_settings)
    register_and_deploy(sqlite_settings)
    builds: list[object] = []
    build = openapi.build

    def counted(spec: Any, access: Any = None) -> dict[str, Any]:
        builds.append(spec)
        return build(spec, access)

    monkeypatch.setattr(openapi, "build", counted)
    async with running(sqlite_settings) as client:
        assert len(builds) == 1  # when the app was created
        answers = [await client.get("/openapi.json") for _ in range(3)]
        assert len(builds) == 1
        assert {r.status_code for r in answers} == {200}
        assert {r.headers["content-type"] for r in answers} == {"application/json"}
        assert len({r.content for r in answers}) == 1
        app = client.app  # type: ignore[attr-defined]
        assert answers[0].json() == build(app.state.spec, access_table(app.routes))
    async with running(sqlite_settings):
        assert len(builds) == 2  # another app, its own document


async def test_an_answer_matches_exactly_one_branch(deployed: Settings) -> None:
    async with running(deployed) as client:
        doc = (await client.get("/openapi.json")).json()
        ok = validator(doc, answer_schema(doc, PREDICT, "post", "200"))  # oneOf
        decision = validator(doc, {"$ref": "#/components/schemas/Decision"})
        predictions = validator(doc, {"$ref": "#/components/schemas/Predictions"})
        one = (await client.post(PREDICT, json={"inputs": GOOD})).json()
        many = (await client.post(PREDICT, json={"instances": [GOOD, GOOD]})).json()
        assert ok.is_valid(one)
        assert ok.is_valid(many)
        assert (decision.is_valid(one), predictions.is_valid(one)) == (True, False)
        assert (decision.is_valid(many), predictions.is_valid(many)) == (False, True)
        assert not ok.is_valid({"predictions": []} | one)


async def test_a_null_routing_key_is_no_key_for_server_and_document(deployed: Settings) -> None:
    async with running(deployed) as client:
        doc = (await client.get("/openapi.json")).json()
        body = validator(doc, request_schema(doc, PREDICT))
        for key, status in ((None, 200), ("customer-42", 200), (42, 422)):
            payload = {"inputs": GOOD, "routing_key": key}
            r = await client.post(PREDICT, json=payload)
            assert r.status_code == status, r.text
            assert body.is_valid(payload) == (status == 200)
            payload = {"instances": [GOOD], "routing_key": key}
            assert body.is_valid(payload) == (status == 200)


async def test_feedback_documents_every_refusal_it_makes(deployed: Settings) -> None:
    async with running(deployed) as client:
        doc = (await client.get("/openapi.json")).json()
        op = doc["paths"]["/v1/inferences/{id}/feedback"]["post"]
        assert {"201", "400", "404", "409", "413", "415", "422"} <= set(op["responses"])
        for code, answer in op["responses"].items():
            if code != "201":
                assert set(answer["content"]) == {"application/problem+json"}
        assert "Accept-Encoding" in op["responses"]["415"]["headers"]
        body = validator(doc, request_schema(doc, "/v1/inferences/{id}/feedback"))
        media = op["requestBody"]["content"]["application/json"]
        for example in media["examples"].values():
            assert body.is_valid(example["value"])
        assert not body.is_valid({"source": "desk"})  # neither label nor value
        assert not body.is_valid({"label": "routine", "colour": "red"})
        path = "/v1/inferences/0123/feedback"
        r = await client.post(path, json={"label": "routine", "colour": "red"})
        assert r.status_code in (404, 422)


async def test_the_predict_examples_are_the_services_own_and_pass(deployed: Settings) -> None:
    async with running(deployed) as client:
        doc = (await client.get("/openapi.json")).json()
        service = (await client.get("/v1/services/claims")).json()
        media = doc["paths"][PREDICT]["post"]["requestBody"]["content"]["application/json"]
        examples = [e["value"] for e in media["examples"].values()]
        assert service["example"] in examples
        body = validator(doc, media["schema"])
        for example in examples:
            assert body.is_valid(example)
            r = await client.post(PREDICT, json=example)
            assert r.status_code == 200, r.text
        idle = doc["paths"]["/v1/services/idle/predict"]["post"]["requestBody"]
        assert idle["content"]["application/json"]["examples"]


def test_every_route_is_documented_and_every_documented_route_served(
    sqlite_settings: Settings,
) -> None:
    write_spec(sqlite_settings)
    app = create_app(sqlite_settings)
    doc = openapi.build(app.state.spec)
    served: set[tuple[str, str]] = set()
    for route in app.routes:
        assert isinstance(route, Route)
        paths = (
            [route.path.replace("{service}", name) for name in app.state.spec.services]
            if route.path == "/v1/services/{service}/predict"
            else [route.path]
        )
        served |= {(p, m.lower()) for p in paths for m in route.methods or () if m != "HEAD"}
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert documented == served
    for path, item in doc["paths"].items():
        for method, op in item.items():
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == {s[1:-1] for s in path.split("/") if s.startswith("{")}, path
            if method == "post":
                assert op["requestBody"]["content"]["application/json"]["examples"], path
