"""Data quality figures: null-rate jumps, values out of range, new categories, type
changes and contract violations, each flagged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prodgate.monitor.profile import Current, against, merge, profile
from prodgate.monitor.quality import quality

rng = np.random.default_rng(5)


@pytest.fixture
def reference() -> pd.DataFrame:
    n = 20_000
    age = rng.integers(18, 80, n).astype(float)
    age[rng.random(n) < 0.02] = np.nan
    return pd.DataFrame(
        {
            "age": age,
            "amount": rng.gamma(2, 500, n),
            "kind": rng.choice(["auto", "home", "life"], n),
        }
    )


def test_a_clean_sample_raises_no_flag(reference: pd.DataFrame) -> None:
    p = profile(reference)
    report = quality(p, against(p, reference.sample(5000, random_state=1)))
    assert report.flagged == []
    age = report.column("age")
    assert age is not None
    assert age.null_rate == pytest.approx(age.null_rate_reference, abs=0.01)


def test_a_null_rate_jump_is_flagged(reference: pd.DataFrame) -> None:
    p = profile(reference)
    current = reference.iloc[:4000].copy()
    current.loc[current.index[:600], "age"] = np.nan  # 2% -> ~17%
    age = quality(p, against(p, current)).column("age")
    assert age is not None
    assert age.null_rate == pytest.approx(current["age"].isna().mean())
    assert age.null_rate_change == pytest.approx(
        current["age"].isna().mean() - reference["age"].isna().mean()
    )
    assert age.flags == ["null_rate"]


def test_values_out_of_range_are_flagged(reference: pd.DataFrame) -> None:
    p = profile(reference)
    current = reference.iloc[:4000].copy()
    current.loc[current.index[:200], "amount"] = reference["amount"].max() * 3
    current.loc[current.index[200:240], "amount"] = -1.0
    amount = quality(p, against(p, current)).column("amount")
    assert amount is not None
    assert amount.out_of_range == pytest.approx(240 / 4000)
    assert amount.flags == ["out_of_range"]


def test_new_categories_are_named(reference: pd.DataFrame) -> None:
    p = profile(reference)
    current = reference.iloc[:2000].copy()
    current.loc[current.index[:100], "kind"] = "boat"
    current.loc[current.index[100:105], "kind"] = "pet"
    report = quality(p, against(p, current))
    kind = report.column("kind")
    assert kind is not None
    assert kind.new_categories == ["boat", "pet"]
    assert kind.new_category_share == pytest.approx(105 / 2000)
    assert kind.new_categories_certain is True
    assert kind.flags == ["new_categories"]
    assert report.figures()["new_categories(kind)"] == pytest.approx(105 / 2000)


def test_a_type_change_is_flagged(reference: pd.DataFrame, tmp_path: Path) -> None:
    p = profile(reference)
    current = reference.iloc[:1000].astype({"age": object}).copy()
    current.loc[current.index[:50], "age"] = "unknown"
    path = tmp_path / "cur.csv"
    current.to_csv(path, index=False)
    age = quality(p, against(p, path)).column("age")
    assert age is not None
    assert age.invalid == 50
    assert "type_change" in age.flags
    frame_age = quality(p, against(p, current)).column("age")
    assert frame_age is not None
    assert frame_age.invalid == 50


def test_window_violations_and_rate(reference: pd.DataFrame) -> None:
    p = profile(reference)
    a = against(p, reference.iloc[:100])
    a.extra = {"violations": {"age": 3}, "requests": 110, "refused": 10}
    b = Current(0, [], extra={"violations": {"age": 1, "kind": 2}, "requests": 90, "refused": 5})
    report = quality(p, merge(a, b))
    assert report.violations == {"age": 4, "kind": 2}
    assert report.violation_rate == pytest.approx(15 / 200)
    age = report.column("age")
    assert age is not None
    assert (age.violations, age.flags) == (4, ["violations"])
    d = report.as_dict()
    assert d["violation_rate"] == pytest.approx(0.075)
    assert {c["column"] for c in d["columns"]} == {"age", "amount", "kind"}
