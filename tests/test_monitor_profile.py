"""Reference profiles and current statistics: exact counts, every source, merging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prodgate.exceptions import UsageError
from prodgate.monitor import sources
from prodgate.monitor.columns import (
    CategoricalCurrent,
    CategoricalReference,
    NumericCurrent,
    NumericReference,
)
from prodgate.monitor.profile import (
    Current,
    Profile,
    against,
    merge,
    profile,
    profile_column,
)


def _bins(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[e_i, e_i+1) counts, the last bin closed: the contract, by plain searchsorted."""
    inside = x[(x >= edges[0]) & (x <= edges[-1])]
    idx = np.minimum(np.searchsorted(edges, inside, side="right") - 1, len(edges) - 2)
    return np.bincount(idx, minlength=len(edges) - 1)


def _numeric(p: Profile, name: str) -> NumericReference:
    col = p.column(name)
    assert isinstance(col, NumericReference)
    return col


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 50_000
    amount = rng.lognormal(5, 1.2, n)
    amount[rng.random(n) < 0.03] = np.nan
    return pd.DataFrame(
        {
            "amount": amount,
            "age": rng.integers(18, 90, n),
            "children": rng.integers(0, 4, n),
            "flag": rng.random(n) < 0.3,
            "kind": rng.choice(["auto", "home", "life"], n, p=[0.5, 0.3, 0.2]),
        }
    )


def test_numeric_bins_are_exact_counts_on_sorted_distinct_edges(frame: pd.DataFrame) -> None:
    p = profile(frame)
    amount = _numeric(p, "amount")
    x = frame["amount"].dropna().to_numpy()
    assert amount.rows == len(frame)
    assert amount.nulls == frame["amount"].isna().sum()
    assert amount.edges[0] == x.min()
    assert amount.edges[-1] == x.max()
    assert np.all(np.diff(amount.edges) > 0)
    assert 100 < len(amount.edges) <= 1001
    assert amount.counts.sum() == len(x)
    assert np.array_equal(amount.counts, _bins(x, amount.edges))
    assert amount.mean == pytest.approx(x.mean())
    assert amount.std == pytest.approx(x.std())  # population std, as Evidently divides by
    for q, v in amount.quantiles.items():
        assert v == pytest.approx(np.quantile(x, float(q)), rel=1e-3)
    assert amount.values is None
    age = _numeric(p, "age")
    assert age.dtype == "integer"
    assert age.values is None  # 72 distinct values
    assert np.array_equal(age.counts, _bins(frame["age"].to_numpy(float), age.edges))


def test_few_values_are_counted_exactly(frame: pd.DataFrame) -> None:
    p = profile(frame)
    children = _numeric(p, "children")
    assert children.values == {
        str(k): int(v) for k, v in frame["children"].value_counts().sort_index().items()
    }
    assert list(children.edges) == [0, 1, 2, 3]
    flag = _numeric(p, "flag")
    assert flag.dtype == "boolean"
    assert flag.values == {"0": int((~frame["flag"]).sum()), "1": int(frame["flag"].sum())}


def test_a_small_reference_keeps_every_value() -> None:
    x = np.random.default_rng(1).normal(size=700)
    col = profile_column("x", x)
    assert isinstance(col, NumericReference)
    assert col.values is not None
    assert sum(col.values.values()) == 700
    assert np.array_equal(col.edges, np.unique(x))


def test_categories_top_and_other() -> None:
    rng = np.random.default_rng(2)
    names = np.array([f"c{i:03d}" for i in range(300)])
    data = names[np.minimum(rng.geometric(0.02, 20_000), 299)]
    data = np.where(rng.random(20_000) < 0.1, None, data)
    p = profile(pa.table({"c": pa.array(data.tolist())}))
    col = p.column("c")
    assert isinstance(col, CategoricalReference)
    assert col.nulls == sum(v is None for v in data)
    assert len(col.counts) == 100
    truth = pd.Series([v for v in data if v is not None]).value_counts()
    assert col.counts == {k: int(truth[k]) for k in col.counts}
    assert set(col.counts) == set(truth.index[:100]) or min(col.counts.values()) == truth.iloc[99]
    assert col.other == int(truth.sum()) - sum(col.counts.values())


def test_json_round_trip(frame: pd.DataFrame) -> None:
    p = profile(frame)
    again = Profile.from_json(p.to_json())
    assert again.to_json() == p.to_json()
    assert p.to_json()["format"] == 1
    cur = against(p, frame.iloc[:1000])
    assert Current.from_json(cur.to_json()).to_json() == cur.to_json()


def test_against_the_reference_itself_gives_its_counts(frame: pd.DataFrame) -> None:
    p = profile(frame)
    cur = against(p, frame)
    for ref in p.columns:
        col = cur.column(ref.name)
        assert col is not None
        assert col.rows == ref.rows
        assert col.nulls == ref.nulls
        if isinstance(ref, NumericReference):
            assert isinstance(col, NumericCurrent)
            assert np.array_equal(col.counts, ref.counts)
            assert col.under == col.over == 0
            assert (col.values or None) == ref.values
        else:
            assert isinstance(col, CategoricalCurrent)
            assert col.counts == ref.counts


def test_against_counts_out_of_range_and_new_values(frame: pd.DataFrame) -> None:
    p = profile(frame)
    other = pd.DataFrame(
        {
            "amount": [-5.0, 1e9, 100.0, None, float("inf")],
            "age": [10, 20, 30, 95, 50],
            "children": [0, 7, 7, 1, 9],
            "flag": [True, False, True, True, None],
            "kind": ["auto", "boat", None, "boat", "home"],
        }
    )
    cur = against(p, other)
    amount = cur.column("amount")
    assert isinstance(amount, NumericCurrent)
    assert (amount.rows, amount.nulls, amount.under, amount.over) == (5, 2, 1, 1)
    assert amount.counts is not None
    assert amount.counts.sum() == 1
    assert (amount.min, amount.max) == (-5.0, 1e9)
    children = cur.column("children")
    assert isinstance(children, NumericCurrent)
    assert children.values == {"0": 1, "1": 1, "2": 0, "3": 0, "7": 2, "9": 1}
    kind = cur.column("kind")
    assert isinstance(kind, CategoricalCurrent)
    assert (kind.nulls, kind.counts) == (1, {"auto": 1, "home": 1, "boat": 2})


def test_text_in_a_numeric_column_is_invalid(tmp_path: Path) -> None:
    p = profile(pd.DataFrame({"x": np.arange(5000, dtype=float)}))
    path = tmp_path / "cur.csv"
    path.write_text("x,y\n1,a\n2.5,a\n,a\nabc,a\n1e3,a\n" + "7,a\n" * 5000 + "n/a,a\n")
    col = against(p, path).column("x")
    assert isinstance(col, NumericCurrent)
    assert col.invalid == 2
    assert col.nulls == 1
    assert col.n == 5003


def test_merge_sums_like_one_pass(frame: pd.DataFrame) -> None:
    p = profile(frame)
    a, b = frame.iloc[:20_000], frame.iloc[20_000:]
    merged = merge(against(p, a), against(p, b))
    whole = against(p, frame)
    assert merged.rows == whole.rows
    for col in whole.columns:
        m = merged.column(col.name)
        assert m is not None
        got, want = m.to_json(), col.to_json()
        if col.kind == "numeric":
            assert got.pop("sum") == pytest.approx(want.pop("sum"))
            assert got.pop("sumsq") == pytest.approx(want.pop("sumsq"))
        assert got == want
    windows = merge(
        Current(
            1,
            [],
            extra={"violations": {"age": 2}, "requests": 5, "calibration_counts": {"a": [1, 2]}},
        ),
        Current(
            1,
            [],
            extra={
                "violations": {"age": 1, "kind": 1},
                "requests": 3,
                "calibration_counts": {"a": [1, 0, 1]},
            },
        ),
    )
    assert windows.extra == {
        "violations": {"age": 3, "kind": 1},
        "requests": 8,
        "calibration_counts": {"a": [2, 2, 1]},
    }


def test_files_and_streaming_give_the_same_profile(
    frame: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parquet = tmp_path / "ref.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet, row_group_size=7000)
    csv = tmp_path / "ref.csv"
    frame.to_csv(csv, index=False)
    want = profile(frame).to_json()
    for p in (profile(parquet), profile(csv)):
        got = p.to_json()
        assert [c["name"] for c in got["columns"]] == [c["name"] for c in want["columns"]]
        for g, w in zip(got["columns"], want["columns"], strict=True):
            if w["kind"] == "numeric" and w["dtype"] == "boolean":
                continue  # a CSV reads True/False as booleans too, but say so only once
            assert g["counts"] == w["counts"], g["name"]
            assert g.get("edges") == w.get("edges"), g["name"]
    # A column over the memory budget is read and converted again on every pass.
    monkeypatch.setattr(sources, "COLUMN_BUDGET", 1000)
    import prodgate.monitor.profile as profile_module

    monkeypatch.setattr(profile_module, "COLUMN_BUDGET", 1000)
    streamed = profile(parquet).to_json()["columns"]
    for g, w in zip(streamed, want["columns"], strict=True):
        assert g["counts"] == w["counts"], g["name"]


def test_fixed_edges_for_a_confidence_column() -> None:
    conf = np.random.default_rng(4).beta(5, 2, 10_000)
    edges = [i / 20 for i in range(21)]
    col = profile_column("confidence", conf, edges=edges)
    assert isinstance(col, NumericReference)
    assert list(col.edges) == edges
    assert np.array_equal(col.counts, _bins(conf, np.array(edges)))


def test_bad_sources_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        profile(tmp_path / "absent.parquet")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(UsageError, match=r"expected a \.parquet or \.csv"):
        profile(tmp_path / "x.json")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(UsageError, match="not a readable Parquet"):
        profile(tmp_path / "bad.parquet")
    with pytest.raises(UsageError, match="no column nope"):
        profile(pd.DataFrame({"a": [1]}), columns=["nope"])
