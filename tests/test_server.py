"""The gateway over HTTP (ASGI transport), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import jsonschema_rs
import pandas as pd
import pytest
import skops.io as sio
from sklearn.dummy import DummyClassifier

import fixture_models
from gateway_support import (
    GOOD,
    SPEC,
    deploy,
    register_and_approve,
    register_and_deploy,
    running,
    write_spec,
)
from prodgate.audit.verify import verify
from prodgate.registry.versions import get_version
from prodgate.settings import Settings
from prodgate.store.engine import open_store
from prodgate.store.tables import artifact_chunks, artifacts

pytestmark = pytest.mark.anyio

PREDICT = "/v1/services/claims/predict"
ROW = ("/inputs/", "/instances/")  # violation paths inside a row


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key.startswith(name + "{"):
            got = ",".join(sorted(key[len(name) + 1 : -1].split(",")))
            if got == want:
                return float(value)
        elif key == name and not labels:
            return float(value)
    return 0.0


async def test_one_row_gets_a_decision(deployed: Settings) -> None:
    async with running(deployed) as client:
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["service"] == "claims"
        assert body["version"] == 1
        assert body["prediction"] == "routine"
        assert body["probabilities"]["adjuster"] == pytest.approx(0.12005)
        assert body["confidence"] == pytest.approx(0.87995)
        assert body["decision"] == "auto"
        assert body["latency_ms"] >= 0
        stored = (await client.get(f"/v1/inferences/{body['id']}")).json()
        assert stored["input"] == GOOD
        assert stored["output"]["prediction"] == "routine"
        assert stored["decision"] == "auto"
        assert stored["status"] == 200


async def test_low_confidence_is_escalated(deployed: Settings) -> None:
    async with running(deployed) as client:
        r = await client.post(PREDICT, json={"inputs": {**GOOD, "amount": 5500}})
        assert r.json()["decision"] == "escalated"
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "prodgate_escalations_total", service="claims", version="1") == 1


async def test_many_rows_each_get_their_own_record(deployed: Settings) -> None:
    rows = [{**GOOD, "amount": a} for a in (100, 9000, 20000)]
    async with running(deployed) as client:
        r = await client.post(PREDICT, json={"instances": rows})
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert [p["prediction"] for p in preds] == ["routine", "adjuster", "adjuster"]
        assert len({p["id"] for p in preds}) == 3
        for row, p in zip(rows, preds, strict=True):
            stored = (await client.get(f"/v1/inferences/{p['id']}")).json()
            assert stored["input"] == row


BAD_INPUTS: list[tuple[str, dict[str, Any], int, str, list[str]]] = [
    # name, request kwargs, status, problem slug, violation paths
    (
        "malformed json",
        {"content": b'{"inputs": {', "headers": {"content-type": "application/json"}},
        400,
        "malformed-json",
        [],
    ),
    (
        "wrong content type",
        {"content": b"amount=3", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        415,
        "unsupported-media-type",
        [],
    ),
    ("no content type", {"content": b"{}"}, 415, "unsupported-media-type", []),
    (
        "wrong types",
        {"json": {"inputs": {**GOOD, "amount": "lots", "count": 1.5}}},
        422,
        "contract-violation",
        ["/inputs/amount", "/inputs/count"],
    ),
    (
        "missing field",
        {"json": {"inputs": {"amount": 3}}},
        422,
        "contract-violation",
        ["/inputs/category"],
    ),
    (
        "unknown field",
        {"json": {"inputs": {**GOOD, "colour": "red"}}},
        422,
        "contract-violation",
        ["/inputs/colour"],
    ),
    (
        "out of range",
        {"json": {"inputs": {**GOOD, "amount": -1}}},
        422,
        "contract-violation",
        ["/inputs/amount"],
    ),
    (
        "bad enum and pattern",
        {"json": {"inputs": {**GOOD, "category": "boat", "code": "ab"}}},
        422,
        "contract-violation",
        ["/inputs/category", "/inputs/code"],
    ),
    (
        "null where not nullable",
        {"json": {"inputs": {**GOOD, "category": None}}},
        422,
        "contract-violation",
        ["/inputs/category"],
    ),
    (
        "every row checked",
        {"json": {"instances": [GOOD, {**GOOD, "amount": -5}, {"amount": 1}]}},
        422,
        "contract-violation",
        ["/instances/1/amount", "/instances/2/category"],
    ),
    ("not an object", {"json": [1, 2]}, 422, "contract-violation", [""]),
    (
        "both shapes",
        {"json": {"inputs": GOOD, "instances": [GOOD]}},
        422,
        "contract-violation",
        [""],
    ),
    ("empty instances", {"json": {"instances": []}}, 422, "contract-violation", ["/instances"]),
    (
        "stray top-level field",
        {"json": {"inputs": GOOD, "extra": 1}},
        422,
        "contract-violation",
        ["/extra"],
    ),
    (
        "too large",
        {
            "content": b'{"inputs": {"note": "' + b"x" * 3000 + b'"}}',
            "headers": {"content-type": "application/json"},
        },
        413,
        "payload-too-large",
        [],
    ),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "status", "slug", "paths"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
async def test_bad_input_gets_a_problem_and_a_record(
    deployed: Settings, name: str, kwargs: dict[str, Any], status: int, slug: str, paths: list[str]
) -> None:
    settings = deployed.with_(max_body_bytes=2048)
    async with running(settings) as client:
        r = await client.post(PREDICT, **kwargs)
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"] == f"urn:prodgate:problem:{slug}"
        assert problem["status"] == status
        assert problem["instance"] == PREDICT
        assert sorted({e["path"] for e in problem.get("errors", [])}) == sorted(paths)
        assert all(e["message"] for e in problem.get("errors", []))
        stored = (await client.get(f"/v1/inferences/{problem['id']}")).json()
        assert stored["status"] == status
        assert stored["decision"] == "rejected"
        assert stored["problem"] == slug
        metrics = (await client.get("/metrics")).text
        assert (
            metric(
                metrics,
                "prodgate_requests_total",
                service="claims",
                # the version is chosen before the rows are checked against the
                # contract (a canary's violation rate counts the requests it would have
                # answered); a body or envelope refused before that names none
                version="1" if paths and all(p.startswith(ROW) for p in paths) else "-",
                status=str(status),
            )
            == 1
        )
        for path in paths:
            field = path.split("/")[-1] if path.count("/") >= 2 else "-"
            # A field the contract does not declare is counted under one label, so
            # callers cannot grow /metrics with names of their own.
            field = "(unknown)" if field == "colour" else field
            if path.startswith("/instances/") or path.startswith("/inputs/"):
                assert (
                    metric(
                        metrics, "prodgate_contract_violations_total", service="claims", field=field
                    )
                    >= 1
                )


@pytest.mark.parametrize("levels", [33, 300, 1000])
async def test_a_deeply_nested_body_is_a_recorded_422(deployed: Settings, levels: int) -> None:
    # Written out by hand: JSON encoders stop short of such depths themselves.
    nested = "[" * (levels - 2) + "1" + "]" * (levels - 2)
    body = '{"inputs": {"category": "auto", "amount": ' + nested + "}}"
    async with running(deployed) as client:
        r = await client.post(
            PREDICT, content=body.encode(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, r.text
        assert "nested deeper than 32 levels" in r.json()["errors"][0]["message"]
        stored = (await client.get(f"/v1/inferences/{r.json()['id']}")).json()
        assert stored["status"] == 422
        assert stored["raw"].startswith('{"inputs"')
        # 32 levels are fine for the door (and this one then breaks the contract).
        shallow: Any = 1.0
        for _ in range(30):
            shallow = [shallow]
        r = await client.post(PREDICT, json={"inputs": {**GOOD, "amount": shallow}})
        assert r.status_code == 422
        assert r.json()["errors"][0]["path"] == "/inputs/amount"


async def test_made_up_field_names_do_not_grow_the_metrics(deployed: Settings) -> None:
    async with running(deployed) as client:
        for i in range(5):
            r = await client.post(PREDICT, json={"inputs": {**GOOD, f"field_{i}": 1}})
            assert r.status_code == 422
            assert r.json()["errors"][0]["path"] == f"/inputs/field_{i}"  # named to the caller
        metrics = (await client.get("/metrics")).text
        assert "field_" not in metrics
        unknown = metric(
            metrics, "prodgate_contract_violations_total", service="claims", field="(unknown)"
        )
        assert unknown == 5


async def test_unknown_service_is_404_recorded_and_counted(deployed: Settings) -> None:
    async with running(deployed) as client:
        r = await client.post("/v1/services/nope/predict", json={"inputs": GOOD})
        assert r.status_code == 404
        problem = r.json()
        assert problem["type"].endswith("unknown-service")
        assert "claims" in problem["detail"]
        stored = (await client.get(f"/v1/inferences/{problem['id']}")).json()
        assert stored["service"] == "nope"
        metrics = (await client.get("/metrics")).text
        assert (
            metric(
                metrics, "prodgate_requests_total", service="(unknown)", version="-", status="404"
            )
            == 1
        )
        # A name no text column takes (NUL) is still a 404 for the caller, and recorded.
        r = await client.post("/v1/services/a%00b/predict", json={"inputs": GOOD})
        assert r.status_code == 404, r.text
        stored = (await client.get(f"/v1/inferences/{r.json()['id']}")).json()
        assert stored["service"] == "a\ufffdb"


async def test_a_record_id_no_record_can_have_is_a_404(deployed: Settings) -> None:
    # NUL is refused by PostgreSQL text: asking the store would answer its 503.
    async with running(deployed) as client:
        r = await client.get("/v1/inferences/a%00b")
        assert r.status_code == 404, r.text
        assert r.json()["type"].endswith("unknown-inference")
        r = await client.post("/v1/inferences/a%00b/feedback", json={"label": "routine"})
        assert r.status_code == 404, r.text


async def test_service_without_deployment_is_503_problem(deployed: Settings) -> None:
    async with running(deployed) as client:
        r = await client.post("/v1/services/idle/predict", json={"inputs": {"x": 1}})
        assert r.status_code == 503
        assert "prodgate deploy idle" in r.json()["detail"]


async def test_unknown_routes_and_methods_are_problems(deployed: Settings) -> None:
    async with running(deployed) as client:
        r = await client.get("/nowhere")
        assert (r.status_code, r.headers["content-type"]) == (404, "application/problem+json")
        r = await client.get(PREDICT)
        assert (r.status_code, r.headers["content-type"]) == (405, "application/problem+json")
        r = await client.get("/v1/inferences/0123")
        assert r.status_code == 404
        r = await client.get("/v1/services/nope")
        assert r.status_code == 404
        assert r.json()["type"].endswith("unknown-service")


async def test_service_description_and_its_example_passes(deployed: Settings) -> None:
    async with running(deployed) as client:
        listing = (await client.get("/v1/services")).json()["services"]
        assert {s["name"]: s["deployed_version"] for s in listing} == {"claims": 1, "idle": None}
        svc = (await client.get("/v1/services/claims")).json()
        assert svc["owner"] == {"name": "Claims Ops", "contact": "ops@example.com"}
        assert svc["contract"]["required"] == ["amount", "category"]
        assert svc["version"]["flavor"] == "callable"
        assert "source" not in svc["version"]  # the registrant's path stays theirs
        r = await client.post(PREDICT, json=svc["example"])
        assert r.status_code == 200, r.text


async def test_health_readiness_openapi(deployed: Settings) -> None:
    async with running(deployed) as client:
        assert (await client.get("/healthz")).json() == {"status": "alive"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["services"] == {"claims": 1}
        doc = (await client.get("/openapi.json")).json()
        assert PREDICT in doc["paths"]
        assert "post" in doc["paths"]["/v1/inferences/{id}/feedback"]
        rollout = doc["paths"]["/v1/services/{service}/rollout"]
        assert set(rollout) == {"get", "post"}
        assert rollout["post"]["security"] == [{"key": []}]
        assert doc["components"]["schemas"]["Input_claims"]["required"] == ["amount", "category"]
        # The documented request body is the one the gateway takes, routing key included.
        post = doc["paths"][PREDICT]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]
        check = jsonschema_rs.validator_for({**body, "components": doc["components"]})
        assert check.is_valid({"inputs": GOOD, "routing_key": "customer-42"})
        assert check.is_valid({"instances": [GOOD, GOOD]})
        assert not check.is_valid({"inputs": GOOD, "extra": 1})
        assert not check.is_valid({"instances": []})
        assert "500" in post["responses"]
        answer = post["responses"]["200"]["content"]["application/json"]["schema"]
        assert {"$ref": "#/components/schemas/Decision"} in answer["oneOf"]


async def test_readyz_is_503_when_a_model_cannot_load(deployed: Settings) -> None:
    number = register_and_approve(deployed, "fixture_models:claims_v2")
    # Make v2 unloadable by pointing its callable at nothing, then deploy it.
    from prodgate.store.tables import versions as vt

    store = open_store(deployed)
    with store.write() as conn:
        conn.execute(
            vt.update().where(vt.c.number == number).values(artifact="fixture_models:gone")
        )
    store.dispose()
    deploy(deployed, number)
    async with running(deployed) as client:
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert "claims" in r.json()["detail"]
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 503


async def test_concurrent_requests_share_batches(deployed: Settings) -> None:
    fixture_models.CALLS.clear()
    amounts = [100.0 * i for i in range(1, 97)]
    async with running(deployed) as client:
        responses = await asyncio.gather(
            *(client.post(PREDICT, json={"inputs": {**GOOD, "amount": a}}) for a in amounts)
        )
        for a, r in zip(amounts, responses, strict=True):
            assert r.status_code == 200
            p = r.json()["probabilities"]["adjuster"]
            assert p == pytest.approx(min(0.99, max(0.01, a / 10_000)))  # its own answer
        assert sum(fixture_models.CALLS) == len(amounts)
        assert len(fixture_models.CALLS) < len(amounts) / 4, fixture_models.CALLS
        assert max(fixture_models.CALLS) <= 32
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "prodgate_batch_size_count", service="claims", version="1") == len(
            fixture_models.CALLS
        )


async def test_model_failure_is_recorded_and_others_unaffected(deployed: Settings) -> None:
    register_and_deploy(deployed, "fixture_models:flaky")
    async with running(deployed) as client:
        bad = await client.post(PREDICT, json={"inputs": {**GOOD, "amount": 13}})
        assert bad.status_code == 500
        assert bad.json()["type"].endswith("model-error")
        stored = (await client.get(f"/v1/inferences/{bad.json()['id']}")).json()
        assert stored["status"] == 500
        ok = await client.post(PREDICT, json={"inputs": GOOD})
        assert ok.status_code == 200


async def test_full_queue_sheds_with_retry_after(deployed: Settings) -> None:
    register_and_deploy(deployed, "fixture_models:slow")
    async with running(deployed.with_(max_queue=4)) as client:
        responses = await asyncio.gather(
            *(client.post(PREDICT, json={"inputs": GOOD}) for _ in range(40))
        )
        codes = [r.status_code for r in responses]
        assert 200 in codes
        shed = [r for r in responses if r.status_code == 503]
        assert shed, codes
        assert shed[0].headers["retry-after"] == "1"
        assert shed[0].json()["type"].endswith("overloaded")
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "prodgate_shed_requests_total", service="claims") == len(shed)


async def test_restart_keeps_records_and_deployment(deployed: Settings) -> None:
    async with running(deployed) as client:
        first = (await client.post(PREDICT, json={"inputs": GOOD})).json()
    async with running(deployed) as client:
        again = await client.get(f"/v1/inferences/{first['id']}")
        assert again.status_code == 200
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.json()["version"] == 1
    store = open_store(deployed)
    verdict = verify(store)
    store.dispose()
    assert verdict.ok, verdict.problem
    assert verdict.checked == 5  # register, approve, deploy, two inferences


async def test_a_new_deployment_is_picked_up_live(deployed: Settings) -> None:
    async with running(deployed) as client:
        assert (await client.post(PREDICT, json={"inputs": GOOD})).json()["version"] == 1
        register_and_deploy(deployed, "fixture_models:claims_v2")
        for _ in range(50):
            r = (await client.post(PREDICT, json={"inputs": GOOD})).json()
            if r["version"] == 2:
                break
            await asyncio.sleep(0.05)
        assert r["version"] == 2
        assert r["prediction"] == "adjuster"
        assert r["probabilities"] is None
        assert r["decision"] == "auto"


async def test_a_failing_row_fails_only_its_own_request_in_a_shared_batch(
    settings: Settings,
) -> None:
    # Eight callers, eight rows per batch and a long wait: they share one model call.
    write_spec(
        settings,
        SPEC.replace("max_batch_size: 32", "max_batch_size: 8").replace(
            "max_wait_ms: 5", "max_wait_ms: 1000"
        ),
    )
    register_and_deploy(settings, "fixture_models:flaky")  # raises on amount 13
    fixture_models.CALLS.clear()
    amounts = [100.0, 200.0, 300.0, 13.0, 400.0, 500.0, 600.0, 700.0]
    async with running(settings) as client:
        responses = await asyncio.gather(
            *(client.post(PREDICT, json={"inputs": {**GOOD, "amount": a}}) for a in amounts)
        )
        for a, r in zip(amounts, responses, strict=True):
            if a == 13.0:
                assert r.status_code == 500, r.text
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["type"].endswith("model-error")
                # The caller reads a generic detail; the model's own words are kept
                # for the operators, in the audit record.
                assert "unlucky" not in r.text
                stored = (await client.get(f"/v1/inferences/{r.json()['id']}")).json()
                assert (stored["status"], stored["version"]) == (500, 1)
                assert stored["error"] == "ValueError: unlucky amount"
            else:
                assert r.status_code == 200, r.text
                assert r.json()["probabilities"]["adjuster"] == pytest.approx(a / 10_000)
        # One shared call of all eight rows failed; then bisection: the half without
        # the bad row answered at once (4), the other half was halved (2 + 2), and so
        # on down to the bad caller alone: 7 calls in all, not 1 + 8.
        assert sorted(fixture_models.CALLS) == [1, 2, 4]  # the calls that succeeded
        metrics = (await client.get("/metrics")).text
        labels = {"service": "claims", "version": "1"}
        assert metric(metrics, "prodgate_batch_size_count", **labels) == 7
        assert metric(metrics, "prodgate_batch_size_sum", **labels) == 8 + 2 * (4 + 2 + 1)


async def test_a_model_failing_on_everything_costs_a_bounded_number_of_calls(
    settings: Settings,
) -> None:
    write_spec(
        settings,
        SPEC.replace("max_batch_size: 32", "max_batch_size: 8").replace(
            "max_wait_ms: 5", "max_wait_ms: 1000"
        ),
    )
    register_and_deploy(settings, "fixture_models:flaky")
    async with running(settings) as client:
        responses = await asyncio.gather(
            *(client.post(PREDICT, json={"inputs": {**GOOD, "amount": 13.0}}) for _ in range(8))
        )
        assert [r.status_code for r in responses] == [500] * 8
        assert all(r.json()["type"].endswith("model-error") for r in responses)
        stored = (await client.get(f"/v1/inferences/{responses[0].json()['id']}")).json()
        assert stored["error"] == "ValueError: unlucky amount"
        metrics = (await client.get("/metrics")).text
        calls = metric(metrics, "prodgate_batch_size_count", service="claims", version="1")
        # The shared call, then at most 2 * bit_length(8) + 2 = 10 more; not 1 + 15.
        assert calls == 1 + 10


async def test_a_new_version_that_cannot_load_leaves_the_old_one_serving(
    deployed: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Version 2 is a real file artifact; after registration it goes from the store and
    # from HOME/artifacts.
    source = tmp_path / "prior.skops"
    frame = pd.DataFrame({"amount": [1.0, 2.0, 3.0]})
    sio.dump(
        DummyClassifier(strategy="prior").fit(frame, ["routine", "adjuster", "adjuster"]), source
    )
    number = register_and_approve(deployed, str(source))
    store = open_store(deployed)
    with store.write() as conn:
        artifact = Path(get_version(conn, "claims", number).location(deployed.artifacts_path))
        conn.execute(artifact_chunks.delete())
        conn.execute(artifacts.delete())
    store.dispose()
    good_bytes = artifact.read_bytes()
    artifact.unlink()

    async with running(deployed) as client:
        gateway = client.app.state.gateway  # type: ignore[attr-defined]
        assert (await client.post(PREDICT, json={"inputs": GOOD})).json()["version"] == 1
        deploy(deployed, number)
        with caplog.at_level(logging.ERROR, logger="prodgate.fleet"):
            for _ in range(3):
                await gateway.refresh()
        assert [r.getMessage() for r in caplog.records if r.name == "prodgate.fleet"] == [
            f"claims v{number} cannot be loaded: version {number}'s artifact is neither in "
            f"the store nor in HOME/artifacts ({artifact}); register it again"
        ]  # once, though every refresh tried again

        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 200, r.text
        assert (r.json()["version"], r.json()["prediction"]) == (1, "routine")
        stored = (await client.get(f"/v1/inferences/{r.json()['id']}")).json()
        assert stored["version"] == 1
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "claims: version 2: version 2's artifact is neither" in ready.json()["detail"]
        assert "version 1 serves until version 2 loads" in ready.json()["detail"]
        view = (await client.get("/v1/services/claims")).json()
        assert view["deployed_version"] == 1

        # Put the file back: a later refresh loads it (and stores it again), and
        # version 2 takes over.
        artifact.write_bytes(good_bytes)
        await gateway.refresh()
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 200, r.text
        assert (r.json()["version"], r.json()["prediction"]) == (2, "adjuster")
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["services"] == {"claims": 2}
