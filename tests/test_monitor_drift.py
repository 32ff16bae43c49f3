"""Drift tests against scipy on the raw data, with Evidently 0.7's choice of method.

Where the reference keeps every value (at most 1000 values, or at most 20 distinct) the
statistics must equal scipy's on the raw data; otherwise (binned) the normed Wasserstein
distance must be within a thousandth of it, far inside any threshold's margin.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats
from scipy.spatial import distance

from prodgate.exceptions import UsageError
from prodgate.monitor.compare import compare
from prodgate.monitor.drift import DriftReport, drift
from prodgate.monitor.profile import against, profile

rng = np.random.default_rng(11)


def run(ref: object, cur: object, **kwargs: object) -> DriftReport:
    r, c = pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})
    p = profile(r, categorical=kwargs.pop("categorical", ()))  # type: ignore[arg-type]
    return drift(p, against(p, c), **kwargs)  # type: ignore[arg-type]


def counts(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(r.tolist()) | set(c.tolist()))
    rv, cv = pd.Series(r).value_counts(), pd.Series(c).value_counts()
    return (
        np.array([rv.get(k, 0) for k in keys], float),
        np.array([cv.get(k, 0) for k in keys], float),
    )


def evidently_psi(r: np.ndarray, c: np.ndarray) -> float:
    rc, cc = counts(r, c)
    rp, cp = rc / len(r), cc / len(c)
    for a in (rp, cp):
        low = a[a != 0].min()
        a[a == 0] = low / 1e6 if low <= 1e-4 else 1e-4
    return float(np.sum((rp - cp) * np.log(rp / cp)))


@pytest.mark.parametrize(
    ("nr", "nc", "shift"),
    [(500, 300, 0.0), (800, 400, 0.25), (1000, 9000, 0.05), (300, 20_000, 0.1)],
)
def test_ks_equals_scipy_on_small_references(nr: int, nc: int, shift: float) -> None:
    r, c = rng.normal(size=nr), rng.normal(shift, 1, nc)
    col = run(r, c).columns[0]
    assert col.method == "ks"
    want = stats.ks_2samp(r, c).pvalue
    assert col.statistic == pytest.approx(want, rel=1e-9, abs=1e-300)
    assert col.p_value == col.statistic
    assert col.drifted is bool(want <= 0.05)


def test_ks_with_ties_and_values_out_of_range() -> None:
    r = rng.integers(0, 30, 900).astype(float)
    c = np.concatenate([rng.integers(5, 40, 600), [-3.0, 100.0]])
    col = run(r, c).columns[0]
    assert col.method == "ks"
    assert col.statistic == pytest.approx(stats.ks_2samp(r, c).pvalue, rel=1e-9)


def test_chisquare_and_z_on_small_references() -> None:
    cats = np.array(["a", "b", "c", "d"])
    r, c = cats[rng.integers(0, 4, 600)], cats[rng.integers(0, 3, 300)]
    col = run(r, c).columns[0]
    rc, cc = counts(r, c)
    assert col.method == "chisquare"
    assert col.statistic == pytest.approx(stats.chisquare(cc, rc * len(c) / len(r)).pvalue)
    # A category the reference never saw: an infinite statistic, p = 0.
    col = run(r, np.append(c, "new")).columns[0]
    assert (col.statistic, col.drifted) == (0.0, True)
    # Two values: the two-proportion z-test, as Evidently computes it.
    r2, c2 = (
        np.array(["y", "n"])[rng.integers(0, 2, 700)],
        np.array(["y", "n"])[(rng.random(500) < 0.6).astype(int)],
    )
    col = run(r2, c2).columns[0]
    n1, n2 = len(r2), len(c2)
    p1, p2 = np.mean(r2 != "n"), np.mean(c2 != "n")
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    assert col.method == "z"
    assert col.statistic == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))))
    assert run(np.full(100, "a"), np.full(50, "a")).columns[0].statistic == 1.0


def test_numeric_with_few_values_is_tested_as_categories() -> None:
    r, c = rng.integers(0, 4, 900).astype(float), rng.integers(0, 4, 500).astype(float)
    col = run(r, c).columns[0]
    rc, cc = counts(r, c)
    assert col.method == "chisquare"
    assert col.statistic == pytest.approx(stats.chisquare(cc, rc * len(c) / len(r)).pvalue)
    # A value the reference never had: p = 0 (scipy divides by a zero expectation).
    col = run(r, np.append(c, 4.0)).columns[0]
    assert (col.method, col.statistic, col.drifted) == ("chisquare", 0.0, True)
    big_r, big_c = rng.integers(0, 4, 50_000).astype(float), rng.integers(0, 5, 8000).astype(float)
    col = run(big_r, big_c).columns[0]
    rc, cc = counts(big_r, big_c)
    assert col.method == "jensenshannon"
    assert col.statistic == pytest.approx(distance.jensenshannon(rc / rc.sum(), cc / cc.sum()))
    assert col.psi == pytest.approx(evidently_psi(big_r, big_c))


def test_jensenshannon_and_psi_on_large_categorical() -> None:
    cats = np.array(["auto", "home", "life", "travel", "pet"])
    r = cats[rng.choice(5, 40_000, p=[0.4, 0.3, 0.1, 0.1, 0.1])]
    c = cats[rng.choice(5, 10_000, p=[0.3, 0.3, 0.2, 0.1, 0.1])]
    col = run(r, c).columns[0]
    rc, cc = counts(r, c)
    assert col.method == "jensenshannon"
    assert col.statistic == pytest.approx(distance.jensenshannon(rc / rc.sum(), cc / cc.sum()))
    assert col.drifted is bool(col.statistic >= 0.1)
    assert col.psi == pytest.approx(evidently_psi(r, c))


@pytest.mark.parametrize(
    ("ref", "cur"),
    [
        (rng.normal(size=200_000), rng.normal(0.1, 1, 50_000)),
        (rng.normal(size=200_000), rng.normal(0, 1.12, 50_000)),
        (rng.lognormal(1, 1.5, 200_000), rng.lognormal(1.08, 1.5, 50_000)),
        (rng.integers(0, 12, 200_000).astype(float), rng.integers(0, 13, 50_000).astype(float)),
    ],
)
def test_wasserstein_matches_scipy_on_large_references(ref: np.ndarray, cur: np.ndarray) -> None:
    col = run(ref, cur).columns[0]
    want = stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
    assert col.method == "wasserstein"
    assert col.statistic == pytest.approx(want, rel=2e-3, abs=1e-4)
    assert col.drifted is bool(want >= 0.1)


def test_a_batch_comparison_bins_values_past_the_reference_range(tmp_path: Path) -> None:
    ref = rng.exponential(size=200_000)
    cur = np.append(rng.exponential(size=49_000), np.full(1000, 30.0))
    pq.write_table(pa.table({"x": ref}), tmp_path / "ref.parquet")
    pq.write_table(pa.table({"x": cur}), tmp_path / "cur.parquet")
    col = compare(tmp_path / "ref.parquet", tmp_path / "cur.parquet").drift.columns[0]
    want = stats.wasserstein_distance(ref, cur) / np.std(ref)
    # 2% of the values sit at one point past the reference's max, spread over a bin
    assert col.statistic == pytest.approx(want, rel=5e-3)


def test_nulls_are_left_out_as_evidently_drops_them() -> None:
    r = rng.normal(size=1500)
    r[:600] = np.nan  # 900 values left: a small reference, so KS
    c = np.append(rng.normal(size=300), [np.nan, np.inf])
    col = run(r, c).columns[0]
    assert (col.method, col.reference_values, col.current_values) == ("ks", 900, 300)
    assert col.statistic == pytest.approx(
        stats.ks_2samp(r[~np.isnan(r)], c[np.isfinite(c)]).pvalue, rel=1e-9
    )


def test_overrides_share_and_errors() -> None:
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=5000),
            "b": rng.normal(size=5000),
            "k": np.array(["x", "y"])[rng.integers(0, 2, 5000)],
        }
    )
    moved = frame.assign(a=frame["a"] + 1.0, b=frame["b"] + 0.02)
    p = profile(frame)
    cur = against(p, moved)
    report = drift(p, cur)
    assert [c.drifted for c in report.columns] == [True, False, False]
    assert report.share_drifted == pytest.approx(1 / 3)
    assert report.dataset_drift is False
    assert drift(p, cur, share=0.3).dataset_drift is True
    over = drift(p, cur, overrides={"b": {"method": "psi", "threshold": 0.0001}})
    b = over.column("b")
    assert b is not None
    assert (b.method, b.threshold, b.drifted) == ("psi", 0.0001, True)
    assert b.statistic == b.psi
    figures = over.figures()
    assert figures["drift share"] == pytest.approx(2 / 3)
    assert figures["drifted(b)"] == 1.0
    assert figures["drift(b)"] == b.statistic
    d = over.as_dict()
    assert set(d) >= {"columns", "share_drifted", "dataset_drift"}
    assert set(d["columns"][0]) >= {"column", "method", "statistic", "threshold", "drifted", "psi"}
    with pytest.raises(UsageError, match="unknown drift method"):
        drift(p, cur, overrides={"a": {"method": "magic"}})
    with pytest.raises(UsageError, match="numeric columns only"):
        drift(p, cur, overrides={"k": {"method": "ks"}})


def test_a_column_without_current_values_is_not_tested() -> None:
    p = profile(pd.DataFrame({"x": rng.normal(size=2000)}))
    col = drift(p, against(p, pd.DataFrame({"x": [np.nan] * 10}))).columns[0]
    assert (col.method, col.statistic, col.drifted) == (None, None, False)
    assert col.note == "no values in the current data"


def test_a_batch_comparison_sees_every_category(tmp_path: Path) -> None:
    names = np.array([f"zip{i:04d}" for i in range(400)])
    r = names[np.minimum(rng.geometric(0.01, 30_000), 399)]
    c = names[np.minimum(rng.geometric(0.012, 8000), 399)]
    pq.write_table(pa.table({"zip": r.tolist()}), tmp_path / "ref.parquet")
    pq.write_table(pa.table({"zip": c.tolist()}), tmp_path / "cur.parquet")
    col = compare(tmp_path / "ref.parquet", tmp_path / "cur.parquet").drift.columns[0]
    rc, cc = counts(r, c)
    assert col.method == "jensenshannon"
    assert col.statistic == pytest.approx(distance.jensenshannon(rc / rc.sum(), cc / cc.sum()))
    assert col.psi == pytest.approx(evidently_psi(r, c))


def test_a_small_window_of_unchanged_data_is_not_judged_below_min_values() -> None:
    """Evidently's distances ignore the sample size: 100 rows of the reference's own
    distribution read as drifted on several columns. Below min_values a column waits."""
    from prodgate.examples.claims_triage.generate import FEATURES, generate

    ref = profile(generate(20_000, seed=0)[FEATURES], categorical=["claim_type", "region"])
    small = against(ref, generate(100, seed=101)[FEATURES])
    judged = drift(ref, small)
    assert judged.drifted_columns  # the noise the floor is for
    waiting = drift(ref, small, min_values=500)
    assert waiting.drifted_columns == []
    assert waiting.tested == []
    assert all("too few to judge" in (c.note or "") for c in waiting.columns)
    assert "drift share" not in waiting.figures()
    assert not waiting.dataset_drift
    big = against(ref, generate(2_000, seed=102, inflation=3.0)[FEATURES])
    assert drift(ref, big, min_values=500).drifted_columns == ["claim_amount"]
