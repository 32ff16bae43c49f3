"""A feature view read from Feast's online store answers as prodgate's own store does.

Feast pins pandas<3 and prodgate's dev environment has pandas 3, so Feast runs from an
environment of its own, ``.venv-feast`` at the repository's root (``make test`` builds
it; so does the first test here that needs it, once, under a file lock). The test
writes a policies Parquet file and a Feast repository (SQLite online store, file
offline store) around it, runs ``feast apply`` and ``feast materialize`` with Feast's
own CLI, then reads the same keys through :func:`prodgate.features.feast.feast_online`
(in Feast's environment) and through prodgate's own store (here), and compares.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from prodgate.exceptions import UsageError
from prodgate.features.lookup import MISSING, STALE, resolve
from prodgate.features.online import Found, StoreOnline
from prodgate.features.sources import TS, latest, read_source
from prodgate.settings import Settings
from prodgate.spec.features import ViewUse, build_views
from prodgate.store.engine import open_store

ROOT = Path(__file__).resolve().parents[1]
#: Building the environment (once) may take minutes; the tests themselves, seconds.
pytestmark = pytest.mark.timeout(1200)
FEAST_VENV = ROOT / ".venv-feast"
READY = FEAST_VENV / ".ready"
#: A cold build downloads Feast and its dependencies (a couple of minutes at most).
BUILD_TIMEOUT = 900

#: Whole seconds: Feast's SQLite online store keeps event times as whole seconds.
NOW = datetime.now(UTC).replace(microsecond=0)
TTL_DAYS = 30
POLICY_FEATURES: dict[str, Any] = {
    "policy_age_years": {"type": "integer", "minimum": 0},
    "prior_claims": {"type": "integer", "minimum": 0, "default": 0},
    "premium": {"type": "number"},
    "region": {"type": ["string", "null"], "default": "unknown"},
    "customer_age": {"type": ["integer", "null"], "default": None},
}
AGENT_FEATURES: dict[str, Any] = {"rating": {"type": "number", "default": 3.0}}

FEAST_DEFINITIONS = f"""
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

policy = Entity(name="policy", join_keys=["policy_id"], value_type=ValueType.INT64)
agent = Entity(name="agent", join_keys=["agent_id"], value_type=ValueType.STRING)

policy_stats = FeatureView(
    name="policy_stats",
    entities=[policy],
    ttl=timedelta(days={TTL_DAYS}),
    schema=[
        Field(name="policy_age_years", dtype=Int64),
        Field(name="prior_claims", dtype=Int64),
        Field(name="premium", dtype=Float64),
        Field(name="region", dtype=String),
        Field(name="customer_age", dtype=Int64),
    ],
    source=FileSource(path="data/policies.parquet", timestamp_field="event_timestamp"),
)

agents = FeatureView(
    name="agents",
    entities=[agent],
    ttl=timedelta(days={TTL_DAYS}),
    schema=[Field(name="rating", dtype=Float64)],
    source=FileSource(path="data/agents.parquet", timestamp_field="event_timestamp"),
)
"""

FEATURE_STORE_YAML = """
project: prodgate_test
provider: local
registry: data/registry.db
online_store:
  type: sqlite
  path: data/online.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""

#: Run in Feast's environment: feast_online's answers for each ask, as JSON.
LOOKUP = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from prodgate.exceptions import UsageError
    from prodgate.features.feast import feast_online
    from prodgate.spec.features import build_views

    def answer(ask):
        view = build_views({ask["name"]: ask["view"]})[ask["name"]]
        try:
            online = feast_online(view, Path(ask["base"]))
            if ask.get("write"):
                online.write(view, [])
            found = asyncio.run(online.lookup(view, ask["keys"]))
        except UsageError as exc:
            return {"usage_error": str(exc)}
        return [None if f is None else [f.values, f.event_us] for f in found]

    print(json.dumps([answer(ask) for ask in json.load(sys.stdin)]))
    """
)


def feast_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(ROOT / "src")  # this tree's prodgate, whatever pip installed
    env["FEAST_USAGE"] = "False"  # no usage telemetry (no network here)
    return env


@pytest.fixture(scope="session")
def feast_venv() -> Path:
    """``.venv-feast`` with ``prodgate[feast]``, built once (a lock keeps parallel
    sessions from building it twice)."""
    if READY.exists():
        return FEAST_VENV
    with open(ROOT / ".venv-feast.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not READY.exists():
            for cmd in (
                [sys.executable, "-m", "venv", str(FEAST_VENV)],
                [str(FEAST_VENV / "bin" / "pip"), "install", "-q", "-e", f"{ROOT}[feast]"],
            ):
                done = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT, cwd=ROOT
                )
                if done.returncode != 0:
                    pytest.fail(f"building {FEAST_VENV} failed: {' '.join(cmd)}\n{done.stderr}")
            READY.touch()
    return FEAST_VENV


def feast_cli(venv: Path, repo: Path, *args: str) -> None:
    done = subprocess.run(
        [str(venv / "bin" / "feast"), *args],
        cwd=repo,
        env=feast_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"feast {' '.join(args)}: {done.stdout}\n{done.stderr}"


def write_sources(data: Path) -> None:
    """Policies: 1 has two rows (the newer counts), 2 is older than the ttl, 3 has
    nulls; agents are keyed by text."""
    data.mkdir(parents=True, exist_ok=True)
    days = timedelta(days=1)
    pd.DataFrame(
        {
            "policy_id": pd.array([1, 2, 3, 4, 1], dtype="int64"),
            "event_timestamp": pd.to_datetime(
                [NOW - 5 * days, NOW - (TTL_DAYS + 10) * days, NOW - days, NOW, NOW - 2 * days],
                utc=True,
            ),
            "policy_age_years": pd.array([99, 7, 1, 2, 3], dtype="int64"),
            "prior_claims": pd.array([9, 4, 0, 3, 1], dtype="int64"),
            "premium": [1.0, 880.25, 0.1, 3.0, 1200.5],
            "region": ["old", "south", None, "east", "north"],
            "customer_age": pd.array([50, None, None, 33, 40], dtype="Int64"),
        }
    ).to_parquet(data / "policies.parquet", index=False)
    pd.DataFrame(
        {
            "agent_id": ["a-1", "a-2", "17"],
            "event_timestamp": pd.to_datetime([NOW - days, NOW - 40 * days, NOW], utc=True),
            "rating": [4.5, 2.0, 1.25],
        }
    ).to_parquet(data / "agents.parquet", index=False)


@pytest.fixture(scope="module")
def feast_repo(feast_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Feast repository over the sources, applied and materialised by Feast's CLI."""
    repo = tmp_path_factory.mktemp("feast") / "repo"
    write_sources(repo / "data")
    (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    (repo / "definitions.py").write_text(FEAST_DEFINITIONS)
    feast_cli(feast_venv, repo, "apply")
    # The whole history, so an entity older than the ttl is in the store (stale), as
    # prodgate's own materialisation has it (Feast's materialize-incremental would start
    # at now - ttl on its first run and leave it out: missing).
    end = (NOW + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    feast_cli(feast_venv, repo, "materialize", "1970-01-01T00:00:00", end)
    return repo


def view_spec(source: dict[str, Any], entity: str, features: dict[str, Any]) -> dict[str, Any]:
    return {"entity": entity, "ttl": f"{TTL_DAYS}d", "source": source, "features": features}


def ask(
    name: str, spec: dict[str, Any], base: Path, keys: list[str], write: bool = False
) -> dict[str, Any]:
    return {"name": name, "view": spec, "base": str(base), "keys": keys, "write": write}


def feast_lookups(venv: Path, *asks: dict[str, Any]) -> list[Any]:
    """feast_online's answers to *asks*, in one process of Feast's environment."""
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", LOOKUP],
        input=json.dumps(asks),
        env=feast_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def feast_lookup(
    venv: Path, name: str, spec: dict[str, Any], base: Path, keys: list[str], write: bool = False
) -> Any:
    return feast_lookups(venv, ask(name, spec, base, keys, write))[0]


def own_lookup(
    settings: Settings, name: str, spec: dict[str, Any], base: Path, keys: list[str]
) -> list[Found | None]:
    """The same view materialised into prodgate's own store from the same file, read."""
    view = build_views({name: spec})[name]
    newest = latest(read_source(view, base), view.entity)
    rows = []
    for rec in newest.to_dict("records"):
        values = {n: None if pd.isna(rec[n]) else rec[n] for n in view.features}
        values = {n: v.item() if hasattr(v, "item") else v for n, v in values.items()}
        rows.append((rec[view.entity], values, int(rec[TS])))
    store = open_store(settings)
    try:
        online = StoreOnline(store)
        assert online.write(view, rows) == len(rows)
        return asyncio.run(online.lookup(view, keys))
    finally:
        store.dispose()


def as_found(raw: list[Any]) -> list[Found | None]:
    return [None if r is None else Found(r[0], r[1]) for r in raw]


def test_feast_answers_as_prodgates_own_store(
    feast_venv: Path, feast_repo: Path, sqlite_settings: Settings
) -> None:
    base = feast_repo.parent
    keys = ["1", "2", "3", "4", "999", "not-a-number", "1"]
    feast_spec = view_spec({"feast": "repo", "view": "policy_stats"}, "policy_id", POLICY_FEATURES)
    own_spec = view_spec({"path": "repo/data/policies.parquet"}, "policy_id", POLICY_FEATURES)

    from_feast = as_found(feast_lookup(feast_venv, "policy", feast_spec, base, keys))
    own = own_lookup(sqlite_settings, "policy", own_spec, base, keys)

    assert from_feast == own
    # The newer of policy 1's rows, its event time to the microsecond, nulls as nulls.
    assert from_feast[0] == Found(
        {
            "policy_age_years": 3,
            "prior_claims": 1,
            "premium": 1200.5,
            "region": "north",
            "customer_age": 40,
        },
        int((NOW - timedelta(days=2)).timestamp()) * 1_000_000,
    )
    assert from_feast[2] is not None
    assert from_feast[2].values["region"] is None
    assert from_feast[4] is None
    assert from_feast[5] is None

    # The view's policy then reads both alike: policy 2 is stale (ttl), 999 missing.
    use = ViewUse(build_views({"policy": own_spec})["policy"], tuple(POLICY_FEATURES))
    at = int(NOW.timestamp() * 1_000_000)
    judged = [resolve(use, f, at) for f in from_feast]
    assert judged == [resolve(use, f, at) for f in own]
    assert judged[1].status == STALE
    assert judged[1].refused == ("policy_age_years", "premium")
    assert judged[1].values["region"] == "unknown"
    assert judged[4].status == MISSING
    assert judged[2].values["region"] is None  # a null where null is allowed is a value


def test_a_text_entity_key_reads_as_text(
    feast_venv: Path, feast_repo: Path, sqlite_settings: Settings
) -> None:
    base = feast_repo.parent
    keys = ["a-1", "17", "a-2", "a-9"]
    feast_spec = view_spec({"feast": "repo"}, "agent_id", AGENT_FEATURES)  # view: its name
    own_spec = view_spec({"path": "repo/data/agents.parquet"}, "agent_id", AGENT_FEATURES)

    from_feast = as_found(feast_lookup(feast_venv, "agents", feast_spec, base, keys))

    assert from_feast == own_lookup(sqlite_settings, "agents", own_spec, base, keys)
    assert [f.values["rating"] if f else None for f in from_feast] == [4.5, 1.25, 2.0, None]


def test_a_view_feast_does_not_have_is_named(feast_venv: Path, feast_repo: Path) -> None:
    def policy(repo: str, entity: str = "policy_id", **more: Any) -> dict[str, Any]:
        spec = view_spec({"feast": repo, **more}, entity, POLICY_FEATURES)
        return ask("policy", spec, feast_repo.parent, [])

    extra = {**POLICY_FEATURES, "claims_last_year": {"type": "integer"}}
    no_feature = ask(
        "policy", view_spec({"feast": "repo"}, "policy_id", extra), feast_repo.parent, []
    )
    no_feature["view"]["source"]["view"] = "policy_stats"
    wrote = policy("repo", view="policy_stats")
    wrote["write"] = True
    no_view, no_feature, other_key, not_a_repo, wrote = feast_lookups(
        feast_venv,
        policy("repo", view="policies"),
        no_feature,
        policy("repo", "pid", view="policy_stats"),
        policy("repo/data"),
        wrote,
    )
    assert "no feature view 'policies'" in no_view["usage_error"]
    assert "agents, policy_stats" in no_view["usage_error"]
    assert "no feature 'claims_last_year'" in no_feature["usage_error"]
    assert "keyed by 'policy_id'" in other_key["usage_error"]
    assert "not a Feast repository" in not_a_repo["usage_error"]
    # prodgate does not load Feast's store: Feast does.
    assert "feast materialize" in wrote["usage_error"]


def test_without_feast_installed_the_error_says_how(tmp_path: Path) -> None:
    try:
        import feast  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - prodgate's dev environment has no Feast
        pytest.skip("Feast is installed in this environment")
    from prodgate.features.feast import feast_online

    view = build_views({"policy": view_spec({"feast": "repo"}, "policy_id", POLICY_FEATURES)})
    with pytest.raises(UsageError, match=r"pip install 'prodgate\[feast\]'"):
        feast_online(view["policy"], tmp_path)


SERVED_SPEC = """\
version: 1
features:
  policy:
    entity: policy_id
    source: {source}
    ttl: {ttl}d
    features:
      policy_age_years: {{type: integer, minimum: 0}}
      prior_claims: {{type: integer, minimum: 0, default: 0}}
      region: {{type: [string, "null"], default: unknown}}
      customer_age: {{type: [integer, "null"], default: null}}
services:
{services}"""

SERVICE = """\
  {name}:
    owner: {{name: Claims Ops, contact: ops@example.com}}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        additionalProperties: false
        required: [amount, policy_id]
        properties:
          amount: {{type: number, minimum: 0}}
          policy_id: {{type: integer}}
    features: [{features}]
    batching: {{max_batch_size: 16, max_wait_ms: 2}}
"""

#: ``strict`` reads a feature without a default (a stale or missing policy is refused);
#: ``lenient`` only features with defaults (it takes them).
SERVICES = {
    "strict": "policy.policy_age_years, policy.prior_claims, policy.region",
    "lenient": "policy.prior_claims, policy.region, policy.customer_age",
}

#: (service, body): fresh, two at once (one with nulls), stale, missing, not a number.
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("strict", {"inputs": {"amount": 1000, "policy_id": 1}}),
    ("strict", {"instances": [{"amount": 50, "policy_id": 4}, {"amount": 9, "policy_id": 3}]}),
    ("strict", {"inputs": {"amount": 1000, "policy_id": 2}}),
    ("strict", {"inputs": {"amount": 1000, "policy_id": 999}}),
    ("lenient", {"inputs": {"amount": 1000, "policy_id": 1}}),
    ("lenient", {"inputs": {"amount": 1000, "policy_id": 2}}),
    ("lenient", {"inputs": {"amount": 1000, "policy_id": 999}}),
    ("lenient", {"instances": [{"amount": 5, "policy_id": 3}, {"amount": 5, "policy_id": 4}]}),
]
#: What differs between two servers answering the same request.
VOLATILE = {"id", "latency_ms"}
#: What a record keeps of the decision (not its place in the log, its time, its hashes).
RECORD_FIELDS = ("service", "version", "status", "decision", "confidence", "problem", "errors")
RECORD_FIELDS += ("input", "features", "output")


def served_side(folder: Path, source: str) -> Settings:
    """A spec reading the policy view from *source*, both services' versions deployed."""
    from prodgate import spec as spec_module
    from prodgate.registry import approvals, versions
    from prodgate.rollout import split as deployments

    folder.mkdir(parents=True)
    services = "".join(SERVICE.format(name=n, features=f) for n, f in SERVICES.items())
    config = folder / "prodgate.yaml"
    config.write_text(SERVED_SPEC.format(source=source, ttl=TTL_DAYS, services=services))
    settings = Settings.load(
        {"home": str(folder / "home"), "config": str(config), "user": "tester"}, env={}
    )
    spec = spec_module.load(config)
    store = open_store(settings)
    try:
        for name in SERVICES:
            service = spec.service(name)
            number = versions.register(store, service, "fixture_models:by_policy", actor="t").number
            approvals.approve(
                store, service, number, by="approver", override_gates=True, reason="test"
            )
            deployments.deploy(store, service, number, actor="t")
    finally:
        store.dispose()
    return settings


def answers(base: str) -> list[tuple[int, Any, list[dict[str, Any]]]]:
    """Each request's status, its answer and the records it left (less what differs
    between servers: ids, times)."""
    import httpx

    def steady(answer: dict[str, Any]) -> dict[str, Any]:
        if "predictions" in answer:
            return {"predictions": [steady(p) for p in answer["predictions"]]}
        return {k: v for k, v in answer.items() if k not in VOLATILE}

    out = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for service, body in REQUESTS:
            r = client.post(f"/v1/services/{service}/predict", json=body)
            answer = r.json()
            ids = [p["id"] for p in answer["predictions"]] if "predictions" in answer else []
            ids = ids or [answer["id"]]
            records = [client.get(f"/v1/inferences/{i}").json() for i in ids]
            kept = [{k: rec[k] for k in RECORD_FIELDS if k in rec} for rec in records]
            out.append((r.status_code, steady(answer), kept))
    return out


def test_a_service_served_from_feast_answers_as_with_prodgates_own_store(
    feast_venv: Path, feast_repo: Path, tmp_path: Path
) -> None:
    """Two real gateways, one reading the view from Feast (in Feast's environment), one
    from prodgate's store loaded by ``prodgate features materialize`` from the same file:
    the same answers, the same features in each record."""
    from server_process import serving

    data = feast_repo / "data" / "policies.parquet"
    own = served_side(tmp_path / "own", f"{{path: {data}, timestamp: event_timestamp}}")
    from_feast = served_side(tmp_path / "feast", f"{{feast: {feast_repo}, view: policy_stats}}")
    cli = [sys.executable, "-m", "prodgate.cli.main", "--home", own.home, "--config", own.config]
    loaded = subprocess.run(
        [*cli, "features", "materialize", "policy"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr

    with serving(own) as (_, base):
        expected = answers(base)
    env = {"FEAST_USAGE": "False", "PYTHONPATH": str(ROOT / "src")}
    with serving(from_feast, env_extra=env, python=str(feast_venv / "bin" / "python")) as (
        _,
        base,
    ):
        got = answers(base)

    assert got == expected
    assert [code for code, _, _ in got] == [200, 200, 422, 422, 200, 200, 200, 200]
    # What both agree on is what the view's policy says, read from Feast:
    fresh = got[0][2][0]
    assert fresh["input"] == {
        "amount": 1000,
        "policy_id": 1,
        "policy_age_years": 3,  # the newer of policy 1's rows
        "prior_claims": 1,
        "region": "north",
    }
    assert fresh["features"]["policy"] == {
        "entity": "1",
        "status": "fresh",
        "event_us": int((NOW - timedelta(days=2)).timestamp()) * 1_000_000,
    }
    assert got[2][1]["errors"][0]["path"] == "/inputs/policy_id"
    assert "older than its ttl" in got[2][1]["errors"][0]["message"]
    assert "is not in feature view" in got[3][1]["errors"][0]["message"]
    stale, missing = got[5][2][0], got[6][2][0]
    defaults = {"prior_claims": 0, "region": "unknown", "customer_age": None}
    assert stale["input"] == {"amount": 1000, "policy_id": 2, **defaults}
    assert stale["features"]["policy"]["status"] == "stale"
    assert stale["features"]["policy"]["defaulted"] == list(defaults)
    assert missing["input"] == {"amount": 1000, "policy_id": 999, **defaults}
    assert missing["features"]["policy"] == {
        "entity": "999",
        "status": "missing",
        "event_us": None,
        "defaulted": list(defaults),
    }
    nulls = got[7][2][0]["input"]
    assert nulls["region"] is None  # a null where null is allowed: a value, not a default
    assert nulls["customer_age"] is None
