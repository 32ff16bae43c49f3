"""Point-in-time joins: each event gets the values its entity had at its time, never later."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prodgate import spec as spec_module
from prodgate.exceptions import UsageError
from prodgate.features.lookup import resolve
from prodgate.features.offline import Joined, join
from prodgate.features.online import Found, entity_key
from prodgate.features.sources import TS, read_source
from prodgate.spec import ServiceSpec

SERVICE = """\
services:
  claims:
    owner: {name: Claims Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        required: [amount, policy_id]
        properties:
          amount: {type: number, minimum: 0}
          policy_id: {type: string}
    features: [policy.*]
"""


def view(source: str, ttl: str | None = "30d") -> str:
    return f"""\
features:
  policy:
    entity: policy_id
    source: {source}
{f"    ttl: {ttl}" if ttl else ""}
    features:
      policy_age_years: {{type: integer, minimum: 0}}
      prior_claims: {{type: integer, minimum: 0, default: 0}}
      customer_age: {{type: [integer, "null"], default: null}}
"""


def service(
    tmp_path: Path, source: str = "{path: policies.csv, timestamp: updated_at}", **kw: Any
) -> ServiceSpec:
    path = tmp_path / "prodgate.yaml"
    path.write_text(view(source, **kw) + SERVICE)
    return spec_module.load(path).service("claims")


def policies(tmp_path: Path, rows: list[tuple[Any, ...]], name: str = "policies.csv") -> Path:
    frame = pd.DataFrame(
        rows,
        columns=["policy_id", "updated_at", "policy_age_years", "prior_claims", "customer_age"],
    )
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True, format="ISO8601")
        frame.to_parquet(path)
    return path


def events(*rows: tuple[str | None, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "policy_id": [r[0] for r in rows],
            "amount": [100.0 * (i + 1) for i in range(len(rows))],
            "at": [r[1] for r in rows],
        }
    )


def run(tmp_path: Path, svc: ServiceSpec, frame: pd.DataFrame, url: str | None = None) -> Joined:
    return join(frame, svc, tmp_path, url, "at")


@pytest.mark.parametrize("name", ["policies.csv", "policies.parquet"])
def test_a_value_written_after_the_event_is_never_in_its_row(tmp_path: Path, name: str) -> None:
    policies(
        tmp_path,
        [
            ("p1", "2024-03-01T09:00:00Z", 3, 1, 40),  # before the event
            ("p1", "2024-03-01T11:59:59Z", 4, 2, 41),  # just before: the one
            ("p1", "2024-03-01T12:00:00.000001Z", 99, 99, 99),  # a microsecond after
            ("p1", "2024-06-01T00:00:00Z", 98, 98, 98),  # long after
            ("p2", "2024-03-01T12:00:00Z", 7, 0, 30),  # at the event's very time: counts
        ],
        name,
    )
    svc = service(tmp_path, f"{{path: {name}, timestamp: updated_at}}")
    out = run(
        tmp_path, svc, events(("p1", "2024-03-01T12:00:00Z"), ("p2", "2024-03-01T12:00:00Z"))
    ).frame
    rows = out.to_dict("records")
    assert (rows[0]["policy_age_years"], rows[0]["prior_claims"], rows[0]["customer_age"]) == (
        4,
        2,
        41,
    )
    assert (rows[1]["policy_age_years"], rows[1]["prior_claims"], rows[1]["customer_age"]) == (
        7,
        0,
        30,
    )
    for column in ("policy_age_years", "prior_claims", "customer_age"):
        assert not out[column].isin([98, 99]).any()
    # The same entity later on sees the later value: the join is per event, not per entity.
    later = run(tmp_path, svc, events(("p1", "2024-06-02T00:00:00Z"))).frame
    assert later.loc[0, "policy_age_years"] == 98


def test_an_event_before_any_value_is_missing(tmp_path: Path) -> None:
    policies(tmp_path, [("p1", "2024-03-01T00:00:00Z", 3, 1, 40)])
    svc = service(tmp_path)
    joined = run(
        tmp_path, svc, events(("p1", "2024-02-28T00:00:00Z"), ("p1", "2024-03-02T00:00:00Z"))
    )
    # Without a value at its time, policy_age_years (no default) drops the first row.
    assert joined.counts == {"policy": {"fresh": 1, "stale": 0, "missing": 1}}
    assert (joined.rows_in, joined.rows_out, joined.dropped) == (2, 1, 1)
    assert joined.refused == {"policy_age_years": 1}
    assert joined.frame["amount"].tolist() == [200.0]


def test_staleness_is_judged_at_the_events_time(tmp_path: Path) -> None:
    policies(tmp_path, [("p1", "2024-01-01T00:00:00Z", 3, 1, 40)])
    svc = service(tmp_path)  # ttl 30d
    joined = run(
        tmp_path,
        svc,
        events(
            ("p1", "2024-01-31T00:00:00Z"),  # exactly 30 days: still fresh
            ("p1", "2024-01-31T00:00:01Z"),  # a second more: stale
        ),
    )
    assert joined.counts["policy"] == {"fresh": 1, "stale": 1, "missing": 0}
    # The stale row's policy_age_years has no default: dropped, as serving would refuse it.
    assert joined.rows_out == 1
    assert joined.frame.loc[0, "policy_age_years"] == 3
    assert joined.refused == {"policy_age_years": 1}


def test_stale_and_missing_take_defaults_when_every_feature_has_one(tmp_path: Path) -> None:
    policies(tmp_path, [("p1", "2024-01-01T00:00:00Z", 3, 5, 40)])
    path = tmp_path / "prodgate.yaml"
    path.write_text(
        view("{path: policies.csv, timestamp: updated_at}").replace(
            "policy_age_years: {type: integer, minimum: 0}",
            "policy_age_years: {type: integer, minimum: 0, default: -1}",
        )
        + SERVICE
    )
    svc = spec_module.load(path).service("claims")
    joined = run(
        tmp_path,
        svc,
        events(
            ("p1", "2024-01-02T00:00:00Z"),  # fresh
            ("p1", "2024-05-01T00:00:00Z"),  # stale
            ("p9", "2024-01-02T00:00:00Z"),  # missing
            (None, "2024-01-02T00:00:00Z"),  # no key: missing
        ),
    )
    assert joined.dropped == 0
    assert joined.counts["policy"] == {"fresh": 1, "stale": 1, "missing": 2}
    assert joined.frame["policy_age_years"].tolist() == [3, -1, -1, -1]
    assert joined.frame["prior_claims"].tolist() == [5, 0, 0, 0]
    assert joined.frame["customer_age"].tolist()[0] == 40
    assert joined.frame["customer_age"].isna().tolist() == [False, True, True, True]
    assert joined.defaulted == {"policy_age_years": 3, "prior_claims": 3, "customer_age": 3}


def test_missing_entity_with_a_default_is_kept_without_one_dropped(tmp_path: Path) -> None:
    policies(tmp_path, [("p1", "2024-01-01T00:00:00Z", 3, 1, 40)])
    svc = service(tmp_path)
    joined = run(tmp_path, svc, events(("p1", "2024-01-02"), ("nobody", "2024-01-02")))
    assert joined.rows_out == 1
    assert joined.dropped == 1
    assert joined.frame["policy_id"].tolist() == ["p1"]
    assert joined.refused == {"policy_age_years": 1}
    # prior_claims and customer_age have defaults: only kept rows count as defaulted.
    assert joined.defaulted == {}


def test_nulls_in_the_source_follow_the_policy(tmp_path: Path) -> None:
    policies(
        tmp_path,
        [
            ("p1", "2024-01-01T00:00:00Z", 3, None, None),  # nulls, read by pandas as NaN
            ("p2", "2024-01-01T00:00:00Z", None, 2, 50),
        ],
    )
    svc = service(tmp_path)
    joined = run(tmp_path, svc, events(("p1", "2024-01-02"), ("p2", "2024-01-02")))
    # p1: prior_claims null -> its default 0; customer_age allows null -> kept as null
    # (not defaulted). p2: policy_age_years null, no default -> dropped.
    assert joined.frame["policy_id"].tolist() == ["p1"]
    assert joined.frame["prior_claims"].tolist() == [0]
    assert joined.frame["customer_age"].isna().all()
    assert joined.defaulted == {"prior_claims": 1}
    assert joined.refused == {"policy_age_years": 1}


def test_sql_query_source_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "features.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE policy_history (policy_id TEXT, updated_at TEXT, age INTEGER, "
            "claims INTEGER, customer_age INTEGER)"
        )
        conn.executemany(
            "INSERT INTO policy_history VALUES (?, ?, ?, ?, ?)",
            [
                ("p1", "2024-01-01T00:00:00Z", 3, 1, 40),
                ("p1", "2024-01-10T00:00:00Z", 4, 2, 41),
                ("p1", "2024-01-20T00:00:00Z", 5, 3, 42),
            ],
        )
    query = (
        "SELECT policy_id, updated_at, age AS policy_age_years, claims AS prior_claims, "
        "customer_age FROM policy_history"
    )
    source = f'{{query: "{query}", timestamp: updated_at}}'
    svc = service(tmp_path, source)
    # Against the store's URL (the source has none of its own).
    joined = run(tmp_path, svc, events(("p1", "2024-01-15")), url=f"sqlite:///{db}")
    assert joined.frame.loc[0, "policy_age_years"] == 4
    assert joined.frame.loc[0, "prior_claims"] == 2
    # And with a url of its own.
    svc = service(tmp_path, f'{{query: "{query}", url: "sqlite:///{db}", timestamp: updated_at}}')
    assert run(tmp_path, svc, events(("p1", "2024-01-25"))).frame.loc[0, "customer_age"] == 42


def test_entity_keys_are_text_on_both_sides(tmp_path: Path) -> None:
    # Integer ids in the source, floats (a CSV column with a gap) in the events.
    pd.DataFrame(
        {
            "policy_id": [17, 18],
            "updated_at": ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"],
            "policy_age_years": [3, 4],
            "prior_claims": [1, 1],
            "customer_age": [40, 41],
        }
    ).to_csv(tmp_path / "policies.csv", index=False)
    svc = service(tmp_path)
    frame = pd.DataFrame(
        {"policy_id": [17.0, np.nan, 18.0], "amount": [1.0, 2.0, 3.0], "at": ["2024-01-15"] * 3}
    )
    joined = run(tmp_path, svc, frame)
    assert joined.frame["policy_age_years"].tolist() == [3, 4]
    assert joined.counts["policy"]["missing"] == 1


def test_the_join_is_the_policy_on_the_latest_row_at_each_time(tmp_path: Path) -> None:
    """A mixed sample (ties, exact times, stale, missing, nulls) against a brute-force
    search and :func:`resolve` row by row."""
    rng = np.random.default_rng(7)
    n = 400
    base = pd.Timestamp("2024-01-01", tz="UTC")
    source = pd.DataFrame(
        {
            "policy_id": [f"p{i}" for i in rng.integers(0, 30, n)],
            # whole days, so that ties (same entity, same time) happen
            "updated_at": [base + pd.Timedelta(days=int(d)) for d in rng.integers(0, 120, n)],
            "policy_age_years": rng.integers(0, 50, n),
            "prior_claims": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 9, n)),
            "customer_age": np.where(rng.random(n) < 0.2, np.nan, rng.integers(18, 90, n)),
        }
    )
    source.to_parquet(tmp_path / "policies.parquet")
    svc = service(tmp_path, "{path: policies.parquet, timestamp: updated_at}", ttl="20d")
    m = 600
    frame = pd.DataFrame(
        {
            "policy_id": [f"p{i}" for i in rng.integers(0, 34, m)],
            "amount": rng.random(m),
            "at": [base + pd.Timedelta(days=int(d)) for d in rng.integers(-5, 140, m)],
        }
    )
    joined = run(tmp_path, svc, frame)

    use = svc.features.uses[0]
    read = read_source(use.view, tmp_path)
    expected: list[dict[str, Any]] = []
    statuses = {"fresh": 0, "stale": 0, "missing": 0}
    for row in frame.itertuples():
        at_us = int(row.at.value // 1000)
        key = entity_key(row.policy_id)
        mine = read[(read["policy_id"] == key) & (read[TS] <= at_us)]
        found = None
        if len(mine):
            best = mine[mine[TS] == mine[TS].max()].iloc[-1]  # the last of a tie
            values = {k: None if pd.isna(best[k]) else int(best[k]) for k in use.names}
            found = Found(values, int(best[TS]))
        resolved = resolve(use, found, at_us)
        statuses[resolved.status] += 1
        if not resolved.refused:
            expected.append({"amount": row.amount, **resolved.values})
    assert joined.counts["policy"] == statuses
    assert 0 < joined.rows_out == len(expected) < m
    assert min(statuses.values()) > 0
    got = joined.frame[["amount", *use.names]].astype(object)
    got = got.where(got.notna(), None).to_dict("records")
    assert got == expected


def test_mistakes_are_usage_errors(tmp_path: Path) -> None:
    policies(tmp_path, [("p1", "2024-01-01T00:00:00Z", 3, 1, 40)])
    svc = service(tmp_path)
    frame = events(("p1", "2024-01-02"))
    with pytest.raises(UsageError, match="no column 'when'"):
        join(frame, svc, tmp_path, None, "when")
    with pytest.raises(UsageError, match="already has customer_age"):
        run(tmp_path, svc, frame.assign(customer_age=3))
    with pytest.raises(UsageError, match="lacks the entity key"):
        run(tmp_path, svc, frame.drop(columns=["policy_id"]))
    with pytest.raises(UsageError, match="not a timestamp"):
        run(tmp_path, svc, frame.assign(at=["yesterday"]))
    with pytest.raises(UsageError, match=r"every one of the 1 rows .* policy_age_years \(1 rows\)"):
        run(tmp_path, svc, events(("nobody", "2024-01-02")))


def test_feast_views_are_feasts_to_join(tmp_path: Path) -> None:
    svc = service(tmp_path, "{feast: feature_repo}")
    with pytest.raises(UsageError, match="get_historical_features"):
        run(tmp_path, svc, events(("p1", "2024-01-02")))
