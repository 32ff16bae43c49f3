"""The review API over HTTP, on both stores: scope, identity, problems, the record."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from typing import Any, ClassVar

import pytest

from gateway_support import GOOD, bearer, make_key, register_and_deploy, running, write_spec
from prodgate.settings import Settings
from prodgate.store.engine import open_store
from review_support import REVIEW_SPEC, actions, add_item

pytestmark = pytest.mark.anyio

ITEMS = "/v1/review/items"


@pytest.fixture
def reviewed(settings: Settings) -> Settings:
    """The review spec with version 1 of claims deployed (registered by tester)."""
    write_spec(settings, REVIEW_SPEC)
    register_and_deploy(settings)
    return settings


def item(settings: Settings, **kwargs: object) -> str:
    store = open_store(settings)
    try:
        return add_item(store, **kwargs)  # type: ignore[arg-type]
    finally:
        store.dispose()


async def test_a_reviewer_lists_claims_and_decides_as_their_key(reviewed: Settings) -> None:
    first = item(reviewed)
    token = make_key(reviewed, "alice", "review")
    async with running(reviewed) as client:
        listed = (await client.get(ITEMS, params={"service": "claims"})).json()
        assert [i["id"] for i in listed["items"]] == [first]
        got = await client.post(
            "/v1/review/next", json={"service": "claims"}, headers=bearer(token)
        )
        assert got.status_code == 200, got.text
        assert got.json()["item"]["id"] == first
        assert got.json()["item"]["lease"]["claimed_by"] == "alice"
        shown = (await client.get(f"{ITEMS}/{first}")).json()
        assert shown["input"]["category"] == "auto"
        decided = await client.post(
            f"{ITEMS}/{first}/decision",
            json={"label": "adjuster", "note": "two claims", "reviewer": "mallory"},
            headers=bearer(token),
        )
        assert decided.status_code == 422  # no name from the body
        decided = await client.post(
            f"{ITEMS}/{first}/decision",
            json={"label": "adjuster", "note": "two claims"},
            headers=bearer(token),
        )
        assert decided.status_code == 200, decided.text
        body = decided.json()
        assert (body["reviewer"], body["state"], body["final"]) == ("alice", "decided", "adjuster")
        assert body["override"] is True
        record = (await client.get(f"/v1/inferences/{first}")).json()
        review = record["review"]
        assert (review["state"], review["final"], review["override"]) == (
            "decided",
            "adjuster",
            True,
        )
        assert review["reasons"] == ["sampled"]
        assert review["decided_at"].endswith("Z")
        none = await client.post("/v1/review/next", json={"service": "claims"})
        assert none.json() == {"item": None}
    store = open_store(reviewed)
    try:
        (claim,) = actions(store, "review_claim")
        assert claim["actor"] == "alice"
        assert claim["origin"]["channel"] == "admin-api"
    finally:
        store.dispose()


async def test_a_key_without_the_review_scope_is_refused(reviewed: Settings) -> None:
    first = item(reviewed)
    app_key = make_key(reviewed, "app", "predict:claims", "admin:claims")
    async with running(reviewed, token=app_key) as client:
        for method, path, body in [
            ("GET", ITEMS, None),
            ("GET", f"{ITEMS}/{first}", None),
            ("POST", f"{ITEMS}/{first}/claim", {}),
            ("POST", f"{ITEMS}/{first}/decision", {"label": "routine"}),
            ("POST", f"{ITEMS}/{first}/skip", {}),
            ("POST", "/v1/review/next", {"service": "claims"}),
        ]:
            r = await client.request(method, path, json=body)
            assert r.status_code == 403, (path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["type"] == "urn:prodgate:problem:insufficient-scope"
        r = await client.get(ITEMS, headers={"Authorization": ""})
        assert r.status_code == 401


async def test_the_review_routes_need_a_key_even_with_auth_off(reviewed: Settings) -> None:
    async with running(reviewed.with_(auth="off"), token=None) as client:
        assert (await client.get(ITEMS)).status_code == 401


async def test_an_agents_owner_is_kept_apart_from_the_requests_they_made(
    reviewed: Settings,
) -> None:
    first = item(reviewed)
    agent = make_key(reviewed, "review-bot", "review", owner="tester", agent=True)
    async with running(reviewed, token=agent) as client:
        r = await client.post(f"{ITEMS}/{first}/claim")
        assert r.status_code == 409
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"] == "urn:prodgate:problem:review-refused"
        assert "owned by tester" in problem["detail"]
        assert "separation of duties" in problem["detail"]


async def test_mistakes_get_problems_not_server_errors(reviewed: Settings) -> None:
    first = item(reviewed, reviewers=2)
    async with running(reviewed) as client:
        cases = [
            ("GET", ITEMS, {"params": {"state": "closed"}}, 400),
            ("GET", ITEMS, {"params": {"limit": "0"}}, 400),
            ("GET", ITEMS, {"params": {"limit": "many"}}, 400),
            ("GET", ITEMS, {"params": {"colour": "red"}}, 400),
            ("GET", ITEMS, {"params": {"service": "nope"}}, 404),
            ("GET", f"{ITEMS}/nope", {}, 404),
            ("POST", f"{ITEMS}/nope/claim", {}, 404),
            ("POST", f"{ITEMS}/{first}/decision", {"json": {"label": "maybe"}}, 422),
            ("POST", f"{ITEMS}/{first}/decision", {"json": ["routine"]}, 422),
            ("POST", f"{ITEMS}/{first}/decision", {"json": {"note": "x"}}, 422),
            (
                "POST",
                f"{ITEMS}/{first}/decision",
                {"content": b"{", "headers": {"content-type": "application/json"}},
                400,
            ),
            (
                "POST",
                f"{ITEMS}/{first}/decision",
                {"content": b"label=x", "headers": {"content-type": "text/plain"}},
                415,
            ),
            ("POST", f"{ITEMS}/{first}/claim", {"json": {"by": "mallory"}}, 422),
            ("POST", "/v1/review/next", {"json": {}}, 422),
            ("POST", "/v1/review/next", {"json": {"service": "nope"}}, 404),
        ]
        for method, path, kwargs, status in cases:
            r = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
            assert r.status_code == status, (path, kwargs, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            problem = r.json()
            assert problem["status"] == status
            assert problem["detail"]
        ok = await client.post(f"{ITEMS}/{first}/decision", json={"label": "routine"})
        assert ok.status_code == 200
        twice = await client.post(f"{ITEMS}/{first}/decision", json={"label": "routine"})
        assert twice.status_code == 409
        assert twice.json()["type"] == "urn:prodgate:problem:review-refused"


async def test_the_document_lists_the_review_routes(reviewed: Settings) -> None:
    async with running(reviewed) as client:
        doc = (await client.get("/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths[ITEMS]) == {"get"}
    for suffix in ("claim", "decision", "skip"):
        op = paths[f"{ITEMS}/{{id}}/{suffix}"]["post"]
        assert "Scopes: review." in op["description"]
        assert {"401", "403", "404", "409", "422"} <= set(op["responses"])
    assert "post" in paths["/v1/review/next"]


async def test_a_decision_through_the_gateway_is_reviewed_end_to_end(settings: Settings) -> None:
    write_spec(settings, REVIEW_SPEC.replace("      reviewers: 1\n", "      sample: 1\n", 1))
    register_and_deploy(settings)
    token = make_key(settings, "alice", "review")
    async with running(settings) as client:
        answer = await client.post("/v1/services/claims/predict", json={"inputs": GOOD})
        assert answer.status_code == 200, answer.text
        inference = answer.json()["id"]
        got = await client.post(
            "/v1/review/next", json={"service": "claims"}, headers=bearer(token)
        )
        assert got.json()["item"]["id"] == inference
        model = got.json()["item"]["prediction"]
        truth = "adjuster" if model == "routine" else "routine"
        decided = await client.post(
            f"{ITEMS}/{inference}/decision", json={"label": truth}, headers=bearer(token)
        )
        assert decided.status_code == 200, decided.text
        review = (await client.get(f"/v1/inferences/{inference}")).json()["review"]
        assert (review["state"], review["final"], review["override"]) == ("decided", truth, True)
        assert "sampled" in review["reasons"]


class _Flaky(http.server.BaseHTTPRequestHandler):
    """A receiver that fails its first delivery and takes the next."""

    bodies: ClassVar[list[bytes]] = []
    calls: ClassVar[int] = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).calls += 1
        if type(self).calls == 1:
            self.send_response(503)
        else:
            type(self).bodies.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def test_the_webhook_is_queued_and_retried_not_awaited(settings: Settings) -> None:
    """Over the API a decision answers at once (``queued``); the server delivers the
    event with retries: a receiver that fails once gets it on the next try."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    _Flaky.bodies, _Flaky.calls = [], 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        write_spec(
            settings,
            REVIEW_SPEC.replace(
                "      deadline: 1h\n", f"      deadline: 1h\n      webhook: {url}\n"
            ),
        )
        register_and_deploy(settings)
        first = item(settings)
        token = make_key(settings, "alice", "review")
        async with running(settings) as client:
            started = time.monotonic()
            decided = await client.post(
                f"{ITEMS}/{first}/decision", json={"label": "adjuster"}, headers=bearer(token)
            )
            assert decided.status_code == 200, decided.text
            assert decided.json()["webhook"] == "queued"
            assert time.monotonic() - started < 1.0  # the retry's backoff is not waited for
            for _ in range(100):
                if _Flaky.bodies:
                    break
                await asyncio.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
    assert _Flaky.calls == 2
    (event,) = [json.loads(b) for b in _Flaky.bodies]
    assert (event["event"], event["id"], event["final"]) == ("review.decided", first, "adjuster")
