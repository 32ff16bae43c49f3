"""The enrich stage through a real app: features looked up by entity, batched, and the
view's policy for stale and missing entities, on both stores and both online stores."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import fixture_models
from features_support import load, write
from gateway_support import register_and_deploy, running
from prodgate.audit import log
from prodgate.settings import Settings
from prodgate.store.engine import open_store

pytestmark = pytest.mark.anyio

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["store", "redis"])
def served(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The policy-reading service deployed, its view loaded into the store or Redis."""
    if request.param == "redis":
        settings = settings.with_(redis_url=REDIS, redis_prefix=f"t{uuid.uuid4().hex[:8]}:")
    write(settings)
    register_and_deploy(settings, "fixture_models:by_policy")
    loaded = load(settings)
    assert loaded.target == request.param
    assert loaded.entities == 4
    assert loaded.source_rows == 5
    return settings


async def test_features_join_the_row_the_model_sees_and_its_record(served: Settings) -> None:
    fixture_models.SEEN.clear()
    async with running(served) as client:
        r = await client.post(
            "/v1/services/claims/predict", json={"inputs": {"amount": 1000, "policy_id": "P4"}}
        )
        assert r.status_code == 200, r.text
        # prior_claims 3 raises P(adjuster) from 0.1 to 0.4: the model saw the feature.
        assert r.json()["probabilities"]["adjuster"] == pytest.approx(0.4)
        seen = fixture_models.SEEN[-1]
        assert seen == {
            "amount": 1000,
            "policy_id": "P4",
            "policy_age_years": 5,
            "prior_claims": 3,
            "customer_age": 33,
        }
        record = (await client.get(f"/v1/inferences/{r.json()['id']}")).json()
    payload = record  # the payload's fields are the record's
    assert payload["input"] == seen  # replayable: what the model saw
    meta = payload["features"]["policy"]
    assert meta["entity"] == "P4"
    assert meta["status"] == "fresh"
    assert isinstance(meta["event_us"], int)
    assert "defaulted" not in meta


async def test_the_newest_value_is_served(served: Settings) -> None:
    fixture_models.SEEN.clear()
    async with running(served) as client:
        r = await client.post(
            "/v1/services/claims/predict", json={"inputs": {"amount": 10, "policy_id": "P1"}}
        )
        assert r.status_code == 200, r.text
    assert fixture_models.SEEN[-1]["policy_age_years"] == 3  # not the older row's 2
    assert fixture_models.SEEN[-1]["customer_age"] == 41


async def test_stale_and_missing_entities_follow_the_policy(served: Settings) -> None:
    async with running(served) as client:
        # P2 is 40 days old (ttl 30d): policy_age_years has no default, so refused.
        r = await client.post(
            "/v1/services/claims/predict",
            json={
                "instances": [{"amount": 5, "policy_id": "P4"}, {"amount": 5, "policy_id": "P2"}]
            },
        )
        assert r.status_code == 422, r.text
        problem = r.json()
        assert problem["type"].endswith("feature-unavailable")
        assert problem["errors"] == [
            {
                "path": "/instances/1/policy_id",
                "message": "the values of policy_id 'P2' in feature view 'policy' are older "
                "than its ttl, and policy_age_years has no default",
            }
        ]
        r = await client.post(
            "/v1/services/claims/predict", json={"inputs": {"amount": 5, "policy_id": "P9"}}
        )
        assert r.status_code == 422
        assert "'P9' is not in feature view 'policy'" in r.json()["errors"][0]["message"]
        metrics = (await client.get("/metrics")).text
    store = open_store(served)
    try:
        with store.read() as conn:
            tail = log.tail(conn, limit=5, service="claims")
    finally:
        store.dispose()
    assert (
        'prodgate_feature_lookups_total{service="claims",status="stale",view="policy"} 1.0'
        in metrics
    )
    assert (
        'prodgate_feature_lookups_total{service="claims",status="missing",view="policy"} 1.0'
        in metrics
    )
    assert (
        'prodgate_feature_lookups_total{service="claims",status="fresh",view="policy"} 1.0'
        in metrics
    )
    refusals = [r for r in tail if r.get("status") == 422]
    assert len(refusals) == 2, tail  # each refusal recorded, with why
    assert all(r["problem"] == "feature-unavailable" for r in refusals), refusals


async def test_defaults_stand_in_and_are_recorded(served: Settings) -> None:
    # Only the features with defaults: a stale or missing entity then answers.
    write(served, features="policy.prior_claims, policy.customer_age")
    fixture_models.SEEN.clear()
    async with running(served) as client:
        answers = []
        for key in ("P2", "P9", "P3"):
            r = await client.post(
                "/v1/services/claims/predict", json={"inputs": {"amount": 10, "policy_id": key}}
            )
            assert r.status_code == 200, r.text
            answers.append((await client.get(f"/v1/inferences/{r.json()['id']}")).json())
        metrics = (await client.get("/metrics")).text
    stale, missing, nulled = answers
    assert stale["input"]["prior_claims"] == 0
    assert stale["input"]["customer_age"] is None
    assert stale["features"]["policy"]["status"] == "stale"
    assert stale["features"]["policy"]["defaulted"] == ["prior_claims", "customer_age"]
    assert missing["features"]["policy"] == {
        "entity": "P9",
        "status": "missing",
        "event_us": None,
        "defaulted": ["prior_claims", "customer_age"],
    }
    # P3's customer_age is null in the source: a value its type allows, not a default.
    assert nulled["features"]["policy"]["status"] == "fresh"
    assert "defaulted" not in nulled["features"]["policy"]
    assert nulled["input"]["customer_age"] is None
    assert (
        'prodgate_feature_defaults_total{feature="prior_claims",service="claims",view="policy"} 2.0'
        in metrics
    )


async def test_a_caller_may_not_send_a_feature(served: Settings) -> None:
    async with running(served) as client:
        r = await client.post(
            "/v1/services/claims/predict",
            json={"inputs": {"amount": 5, "policy_id": "P4", "prior_claims": 0}},
        )
    assert r.status_code == 422
    assert r.json()["type"].endswith("contract-violation")


async def test_concurrent_requests_share_one_lookup(served: Settings) -> None:
    fixture_models.SEEN.clear()
    async with running(served) as client:
        keys = [f"P{1 + i % 4}" for i in range(40)]
        replies = await asyncio.gather(
            *(
                client.post(
                    "/v1/services/claims/predict", json={"inputs": {"amount": i, "policy_id": k}}
                )
                for i, k in enumerate(keys)
            )
        )
        metrics = (await client.get("/metrics")).text
    # P2 is stale and policy_age_years has no default: those requests alone are refused,
    # the rest of their batches answered; the model never saw a P2 row.
    statuses = [r.status_code for r in replies]
    assert statuses == [422 if k == "P2" else 200 for k in keys]
    assert {row["policy_id"] for row in fixture_models.SEEN} == {"P1", "P3", "P4"}

    def value(name: str) -> float:
        (line,) = [x for x in metrics.splitlines() if x.startswith(name)]
        return float(line.rsplit(" ", 1)[1])

    assert value("prodgate_feature_lookup_batch_size_sum") == 40  # every row looked up once
    assert value("prodgate_feature_lookup_batch_size_count") < 40 / 4  # batched


async def test_an_online_store_that_does_not_answer_is_a_503_recorded(
    sqlite_settings: Settings,
) -> None:
    settings = sqlite_settings.with_(redis_url="redis://127.0.0.1:6390/0")  # nothing listens
    write(settings)
    register_and_deploy(settings, "fixture_models:by_policy")
    async with running(settings) as client:
        r = await client.post(
            "/v1/services/claims/predict", json={"inputs": {"amount": 5, "policy_id": "P4"}}
        )
    assert r.status_code == 503, r.text
    assert r.json()["type"].endswith("feature-store")
    store = open_store(settings)
    try:
        with store.read() as conn:
            (record,) = [x for x in log.tail(conn, 5, service="claims") if x["action"] == "predict"]
    finally:
        store.dispose()
    assert record["status"] == 503
    assert record["problem"] == "feature-store"


async def test_windows_count_each_views_freshness_for_monitoring(served: Settings) -> None:
    from prodgate import spec as spec_module
    from prodgate.monitor.report import flatten, monitor_report

    write(served, features="policy.prior_claims, policy.customer_age")
    async with running(served) as client:
        for key in ("P1", "P2", "P3", "P4", "P9"):
            r = await client.post(
                "/v1/services/claims/predict", json={"inputs": {"amount": 10, "policy_id": key}}
            )
            assert r.status_code == 200, r.text
    # The gateway's close flushed the windows.
    spec = spec_module.load(served.config)
    store = open_store(served)
    try:
        report = monitor_report(store, spec, "claims", 3600)
    finally:
        store.dispose()
    (entry,) = report["versions"]
    assert entry["features"]["policy"] == {
        "fresh": 3,
        "stale": 1,
        "missing": 1,
        "rows": 5,
        "stale_rate": 0.2,
        "missing_rate": 0.2,
    }
    figures = flatten(report)
    assert figures["stale_rate(policy)"] == 0.2
    assert figures["missing_rate(policy)"] == 0.2
    # The entity key is not a monitored column; the features are.
    columns = [c["column"] for c in entry["columns"]]
    assert "policy_id" not in columns
    # ... and `prodgate monitor` says so.
    from click.testing import CliRunner

    from prodgate.cli.main import cli

    shown = CliRunner().invoke(
        cli,
        ["--home", served.home, "--config", served.config, "monitor", "claims", "--window", "1h"],
        env={"PRODGATE_DATABASE_URL": served.database_url},
    )
    assert shown.exit_code == 0, shown.output
    assert "feature view policy: 5 rows, stale 20.0%, missing 20.0%" in shown.output
