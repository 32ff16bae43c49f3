"""Request bodies: one bounded reader for every route, gzip included (SQLite only:
the subject is HTTP, not the store)."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson
import pytest

from gateway_support import GOOD, register_and_deploy, running, write_spec
from prodgate.settings import Settings

pytestmark = pytest.mark.anyio

PREDICT = "/v1/services/claims/predict"
TOKEN = "body-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}
GZIP = {**JSON, "content-encoding": "gzip"}


@pytest.fixture
def deployed(sqlite_settings: Settings) -> Settings:
    write_spec(sqlite_settings)
    register_and_deploy(sqlite_settings)
    return sqlite_settings.with_(admin_token=TOKEN, controller=False, max_body_bytes=4096)


def bomb(size: int) -> bytes:
    """A small gzip body that inflates to *size* bytes."""
    return gzip.compress(b'{"inputs": {"note": "' + b" " * size + b'"}}', compresslevel=9)


async def test_a_gzip_body_is_read_decompressed(deployed: Settings) -> None:
    async with running(deployed) as client:
        body = orjson.dumps({"inputs": GOOD})
        r = await client.post(PREDICT, content=gzip.compress(body), headers=GZIP)
        assert r.status_code == 200, r.text
        assert r.json()["prediction"] == "routine"
        stored = (await client.get(f"/v1/inferences/{r.json()['id']}")).json()
        assert stored["input"] == GOOD
        # x-gzip is the same coding (RFC 9110, 8.4.1.3); identity is no coding at all.
        r = await client.post(
            PREDICT, content=gzip.compress(body), headers={**JSON, "content-encoding": "x-gzip"}
        )
        assert r.status_code == 200, r.text
        r = await client.post(
            PREDICT, content=body, headers={**JSON, "content-encoding": "identity"}
        )
        assert r.status_code == 200, r.text
        # Concatenated gzip members make one body (RFC 1952, 2.2).
        half = len(body) // 2
        members = gzip.compress(body[:half]) + gzip.compress(body[half:])
        r = await client.post(PREDICT, content=members, headers=GZIP)
        assert r.status_code == 200, r.text


async def test_a_gzip_bomb_is_413_at_the_limit(deployed: Settings) -> None:
    compressed = bomb(50_000_000)  # 50 MB of JSON in about 50 kB, then 4 kB of room
    assert len(compressed) < 100_000
    async with running(deployed.with_(max_body_bytes=100_000)) as client:
        r = await client.post(PREDICT, content=compressed, headers=GZIP)
        assert r.status_code == 413, r.text
        problem = r.json()
        assert problem["type"].endswith("payload-too-large")
        assert "100000 bytes" in problem["detail"]
        stored = (await client.get(f"/v1/inferences/{problem['id']}")).json()
        assert (stored["status"], stored["problem"]) == (413, "payload-too-large")
        # Just under the limit decompressed is fine for the door (then the contract
        # refuses the long note).
        r = await client.post(PREDICT, content=bomb(100_000 - 40), headers=GZIP)
        assert r.status_code == 422, r.text


async def test_the_limit_applies_to_the_body_as_sent_too(deployed: Settings) -> None:
    # Random bytes do not compress: more than the limit as sent is refused at once,
    # whatever it would inflate to.
    noise = gzip.compress(bytes(range(256)) * 40, compresslevel=0)
    assert len(noise) > 4096
    async with running(deployed) as client:
        r = await client.post(PREDICT, content=noise, headers=GZIP)
        assert r.status_code == 413, r.text


@pytest.mark.parametrize("coding", ["br", "deflate", "compress", "gzip, br", "zstd"])
async def test_other_content_codings_are_415_naming_gzip(deployed: Settings, coding: str) -> None:
    async with running(deployed) as client:
        for path, headers in (
            (PREDICT, {}),
            ("/v1/inferences/0123/feedback", {}),
            ("/v1/services/claims/enable", ADMIN),
        ):
            r = await client.post(
                path,
                content=orjson.dumps({"inputs": GOOD}),
                headers={**JSON, **headers, "content-encoding": coding},
            )
            assert r.status_code == 415, (path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["accept-encoding"] == "gzip, identity"
            assert coding in r.json()["detail"]
            assert "gzip" in r.json()["detail"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("not gzip at all", b'{"inputs": {}}'),
        ("truncated", gzip.compress(orjson.dumps({"inputs": GOOD}))[:-12]),
        ("trailing garbage", gzip.compress(orjson.dumps({"inputs": GOOD})) + b"garbage!"),
        ("zlib, not gzip", zlib.compress(orjson.dumps({"inputs": GOOD}))),
    ],
)
async def test_a_broken_gzip_body_is_a_400(deployed: Settings, name: str, content: bytes) -> None:
    async with running(deployed) as client:
        r = await client.post(PREDICT, content=content, headers=GZIP)
        assert r.status_code == 400, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "gzip" in r.json()["detail"]
        assert (await client.get(f"/v1/inferences/{r.json()['id']}")).status_code == 200
        r = await client.post("/v1/services/claims/rollback", content=content, headers=GZIP | ADMIN)
        assert r.status_code == 400, r.text


async def test_feedback_takes_gzip_and_keeps_its_own_smaller_limit(deployed: Settings) -> None:
    async with running(deployed.with_(max_body_bytes=1_000_000)) as client:
        decided = (await client.post(PREDICT, json={"inputs": GOOD})).json()
        path = f"/v1/inferences/{decided['id']}/feedback"
        r = await client.post(path, content=bomb(70_000), headers=GZIP)
        assert r.status_code == 413, r.text  # 64 KiB for feedback, whatever the setting
        r = await client.post(path, content=gzip.compress(b'{"label": "routine"}'), headers=GZIP)
        assert r.status_code == 201, r.text
        assert r.json()["truth"] == "routine"


async def test_admin_bodies_are_bounded_like_every_other(deployed: Settings) -> None:
    # The admin API read whole bodies, however large, before this reader.
    async with running(deployed) as client:
        big = orjson.dumps({"reason": "x" * 5000})
        for content, headers in ((big, JSON), (gzip.compress(big), GZIP)):
            r = await client.post(
                "/v1/services/claims/disable", content=content, headers={**headers, **ADMIN}
            )
            assert r.status_code == 413, r.text
            assert r.json()["type"].endswith("payload-too-large")
        r = await client.post(
            "/v1/services/claims/disable",
            content=gzip.compress(b'{"reason": "bad data upstream"}'),
            headers={**GZIP, **ADMIN},
        )
        assert r.status_code == 200, r.text
        assert (await client.post(PREDICT, json={"inputs": GOOD})).status_code == 503


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 200),  # no type said: taken as JSON
        (JSON, 200),
        ({"content-type": "application/merge-patch+json"}, 200),
        ({"content-type": "text/plain"}, 415),
        ({"content-type": "application/x-www-form-urlencoded"}, 415),
    ],
)
async def test_admin_bodies_say_they_are_json_or_nothing(
    deployed: Settings, headers: dict[str, str], status: int
) -> None:
    async with running(deployed) as client:
        r = await client.post(
            "/v1/services/claims/disable",
            content=b'{"reason": "incident"}',
            headers={**headers, **ADMIN},
        )
        assert r.status_code == status, r.text
        # An empty body needs no type at all.
        r = await client.post("/v1/services/claims/enable", headers=ADMIN)
        assert r.status_code in (200, 409), r.text


async def test_feedback_refusals_are_problems(deployed: Settings) -> None:
    async with running(deployed) as client:
        path = "/v1/inferences/0123/feedback"
        cases: list[tuple[dict[str, Any], int]] = [
            ({"content": b"{", "headers": JSON}, 400),
            ({"content": b'{"label": "routine"}', "headers": {"content-type": "text/csv"}}, 415),
            ({"content": b'{"label": "' + b"x" * 70_000 + b'"}', "headers": JSON}, 413),
            ({"json": {"label": "routine"}}, 404),
        ]
        for kwargs, status in cases:
            r = await client.post(path, **kwargs)
            assert r.status_code == status, r.text
            assert r.headers["content-type"] == "application/problem+json"
