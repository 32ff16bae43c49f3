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

#: Run in Feast's environment: feast_online's answers for keys, as JSON.
LOOKUP = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from prodgate.exceptions import UsageError
    from prodgate.features.feast import feast_online
    from prodgate.spec.features import build_views

    ask = json.load(sys.stdin)
    view = build_views({ask["name"]: ask["view"]})[ask["name"]]
    try:
        online = feast_online(view, Path(ask["base"]))
        if ask.get("write"):
            online.write(view, [])
        found = asyncio.run(online.lookup(view, ask["keys"]))
    except UsageError as exc:
        print(json.dumps({"usage_error": str(exc)}))
        sys.exit(0)
    print(json.dumps([None if f is None else [f.values, f.event_us] for f in found]))
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


def feast_lookup(
    venv: Path, name: str, spec: dict[str, Any], base: Path, keys: list[str], write: bool = False
) -> Any:
    ask = {"name": name, "view": spec, "base": str(base), "keys": keys, "write": write}
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", LOOKUP],
        input=json.dumps(ask),
        env=feast_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


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
        {"policy_age_years": 3, "premium": 1200.5, "region": "north", "customer_age": 40},
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
    base = feast_repo.parent
    wrong_view = view_spec({"feast": "repo", "view": "policies"}, "policy_id", POLICY_FEATURES)
    answer = feast_lookup(feast_venv, "policy", wrong_view, base, ["1"])
    assert "no feature view 'policies'" in answer["usage_error"]
    assert "agents, policy_stats" in answer["usage_error"]

    extra = {**POLICY_FEATURES, "claims_last_year": {"type": "integer"}}
    no_feature = view_spec({"feast": "repo", "view": "policy_stats"}, "policy_id", extra)
    answer = feast_lookup(feast_venv, "policy", no_feature, base, ["1"])
    assert "no feature 'claims_last_year'" in answer["usage_error"]

    other_key = view_spec({"feast": "repo", "view": "policy_stats"}, "pid", POLICY_FEATURES)
    answer = feast_lookup(feast_venv, "policy", other_key, base, ["1"])
    assert "keyed by 'policy_id'" in answer["usage_error"]

    not_a_repo = view_spec({"feast": "repo/data"}, "policy_id", POLICY_FEATURES)
    answer = feast_lookup(feast_venv, "policy", not_a_repo, base, ["1"])
    assert "not a Feast repository" in answer["usage_error"]


def test_prodgate_does_not_load_feasts_store(feast_venv: Path, feast_repo: Path) -> None:
    spec = view_spec({"feast": "repo", "view": "policy_stats"}, "policy_id", POLICY_FEATURES)
    answer = feast_lookup(feast_venv, "policy", spec, feast_repo.parent, [], write=True)
    assert "feast materialize" in answer["usage_error"]


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
