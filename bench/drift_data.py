"""The data of the drift benchmark: a reference and a current Parquet file, seeded.

Twenty column recipes, each a (reference, current) pair of distributions with a known
drift by design, so that a verdict can be judged against what was built:

- **stable**: the same distribution on both sides (sampling noise only);
- **drifted**: clearly past the threshold of the method Evidently picks (normed
  Wasserstein distance >= 0.1 for numeric columns, Jensen-Shannon distance >= 0.1
  for categorical columns and numeric ones with at most 5 values, at more than
  1,000 reference rows);
- **near**: within about 10% of that threshold, on one side or the other (the
  population value is in the recipe's note), where an approximate statistic can
  flip a verdict.

Fifteen numeric recipes of varied shapes (normal, log-normal, zero-inflated,
Student-t and Pareto tails with infinite variance, exponential, uniform, bimodal,
Poisson counts, a 1-5 rating, a 0/1 flag, nulls) and five categorical ones of
cardinality 2, 3, 7 (one category new in the current data), 50 and 400. With more
than twenty columns the recipes repeat, each copy with its own seed (``_2``,
``_3``, ... after the name). Strings are written as plain Parquet strings (not
dictionary-typed), numeric columns as float64 or int64, nulls as Parquet nulls.

The files are cached under ``bench/.data/`` by their parameters (rows, columns,
seed, recipe version), so a second run reuses them.

``python bench/drift_data.py exact REFERENCE CURRENT --numeric ... --categorical ...``
prints the verdicts Evidently 0.7's defaults give, computed exactly with SciPy on the
raw columns (nulls dropped), in the shape of ``prodgate drift compare --json``: the
benchmark's stand-in for prodgate before its command existed, and with ``--exact`` a
third opinion that tells a statistic's approximation from a difference of rule.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

#: Bump when a recipe changes: the cache is keyed on it.
VERSION = 2
DATA_DIR = Path(__file__).resolve().parent / ".data"
ROW_GROUP = 256 * 1024

Pair = tuple[pa.Array, pa.Array]
Maker = Callable[[np.random.Generator, int, int], Pair]


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str  # "numeric" | "categorical"
    design: str  # "stable" | "drifted" | "near"
    note: str  # the shape and the statistic by design
    make: Maker


def _floats(a: np.ndarray, nulls: float = 0.0, rng: np.random.Generator | None = None) -> pa.Array:
    mask = rng.random(a.size) < nulls if rng is not None and nulls else None
    return pa.array(a.astype(np.float64), mask=mask)


def _ints(a: np.ndarray) -> pa.Array:
    return pa.array(a.astype(np.int64))


def _strings(
    rng: np.random.Generator, names: list[str], p: np.ndarray, n: int, nulls: float = 0.0
) -> pa.Array:
    codes = rng.choice(len(names), size=n, p=p / p.sum()).astype(np.int32)
    mask = rng.random(n) < nulls if nulls else None
    arr = pa.DictionaryArray.from_arrays(pa.array(codes, mask=mask), pa.array(names))
    return arr.cast(pa.string())


def _float_pair(
    draw: Callable[[np.random.Generator, int, bool], np.ndarray],
    nulls: tuple[float, float] = (0.0, 0.0),
) -> Maker:
    def make(rng: np.random.Generator, n_ref: int, n_cur: int) -> Pair:
        return (
            _floats(draw(rng, n_ref, False), nulls[0], rng),
            _floats(draw(rng, n_cur, True), nulls[1], rng),
        )

    return make


def _int_pair(draw: Callable[[np.random.Generator, int, bool], np.ndarray]) -> Maker:
    def make(rng: np.random.Generator, n_ref: int, n_cur: int) -> Pair:
        return _ints(draw(rng, n_ref, False)), _ints(draw(rng, n_cur, True))

    return make


def _cat_pair(names: list[str], ref: np.ndarray, cur: np.ndarray, nulls: float = 0.0) -> Maker:
    def make(rng: np.random.Generator, n_ref: int, n_cur: int) -> Pair:
        return _strings(rng, names, ref, n_ref, nulls), _strings(rng, names, cur, n_cur, nulls)

    return make


def _bimodal(rng: np.random.Generator, n: int, cur: bool) -> np.ndarray:
    w = 0.5 if cur else 0.3
    return np.where(rng.random(n) < w, rng.normal(5.0, 1.0, n), rng.normal(0.0, 1.0, n))


def _zero_inflated(rng: np.random.Generator, n: int, cur: bool) -> np.ndarray:
    return np.where(rng.random(n) < 0.6, 0.0, rng.lognormal(4.0, 1.0, n))


def _rating(rng: np.random.Generator, n: int, cur: bool) -> np.ndarray:
    p = [0.12, 0.18, 0.25, 0.27, 0.18] if cur else [0.05, 0.10, 0.20, 0.35, 0.30]
    return rng.choice(np.arange(1, 6), size=n, p=p)


_CLAIMS = ["auto", "home", "health", "travel", "pet", "life", "cyber"]
_CLAIMS_REF = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05, 0.0])
_CLAIMS_CUR = np.append(_CLAIMS_REF[:6] * 0.92, 0.08)
_REGIONS = [f"region-{i:02d}" for i in range(50)]
_REGION_P = 1.0 / np.arange(1, 51) ** 0.8
_MERCHANTS = [f"m{i:04d}" for i in range(400)]
_MERCHANT_P = 1.0 / np.arange(1, 401) ** 1.1
_MERCHANT_P = _MERCHANT_P / _MERCHANT_P.sum()

RECIPES: list[Recipe] = [
    Recipe(
        "num_normal_stable",
        "numeric",
        "stable",
        "N(100, 15)",
        _float_pair(lambda r, n, c: r.normal(100.0, 15.0, n)),
    ),
    Recipe(
        "num_normal_shift",
        "numeric",
        "drifted",
        "N(0, 1) -> N(0.5, 1): W 0.5",
        _float_pair(lambda r, n, c: r.normal(0.5 if c else 0.0, 1.0, n)),
    ),
    Recipe(
        "num_zero_inflated",
        "numeric",
        "stable",
        "60% zeros, else lognormal(4, 1)",
        _float_pair(_zero_inflated),
    ),
    Recipe(
        "num_amount_inflated",
        "numeric",
        "drifted",
        "lognormal(3, 0.8) -> x1.25: W 0.26",
        _float_pair(lambda r, n, c: r.lognormal(3.0, 0.8, n) * (1.25 if c else 1.0)),
    ),
    Recipe(
        "num_t3_heavy",
        "numeric",
        "stable",
        "Student t, 3 d.f., x10 (heavy tails)",
        _float_pair(lambda r, n, c: r.standard_t(3.0, n) * 10.0),
    ),
    Recipe(
        "num_pareto_heavy",
        "numeric",
        "stable",
        "Pareto a=1.5 (infinite variance)",
        _float_pair(lambda r, n, c: r.pareto(1.5, n) + 1.0),
    ),
    Recipe(
        "num_exp_near_below",
        "numeric",
        "near",
        "Exp(10) -> Exp(10.85): W 0.092 in this sample",
        _float_pair(lambda r, n, c: r.exponential(10.85 if c else 10.0, n)),
    ),
    Recipe(
        "num_exp_near_above",
        "numeric",
        "near",
        "Exp(10) -> Exp(10.99): W 0.108 in this sample",
        _float_pair(lambda r, n, c: r.exponential(10.99 if c else 10.0, n)),
    ),
    Recipe(
        "num_uniform_widened",
        "numeric",
        "drifted",
        "U(0, 100) -> U(0, 110) (out of range): W 0.17",
        _float_pair(lambda r, n, c: r.uniform(0.0, 110.0 if c else 100.0, n)),
    ),
    Recipe(
        "num_bimodal_shift",
        "numeric",
        "drifted",
        "N(0,1)/N(5,1) mixture 70/30 -> 50/50: W 0.4",
        _float_pair(_bimodal),
    ),
    Recipe(
        "num_nulls_jump",
        "numeric",
        "stable",
        "N(40, 12), nulls 2% -> 15%",
        _float_pair(lambda r, n, c: r.normal(40.0, 12.0, n), nulls=(0.02, 0.15)),
    ),
    Recipe(
        "int_poisson_stable",
        "numeric",
        "stable",
        "Poisson(3), integers",
        _int_pair(lambda r, n, c: r.poisson(3.0, n)),
    ),
    Recipe(
        "int_poisson_near",
        "numeric",
        "near",
        "Poisson(4) -> Poisson(4.216), integers: W 0.106 in this sample",
        _int_pair(lambda r, n, c: r.poisson(4.216 if c else 4.0, n)),
    ),
    Recipe(
        "int_rating_1to5",
        "numeric",
        "drifted",
        "integers 1-5 (5 values: JS), shifted: JS 0.16",
        _int_pair(_rating),
    ),
    Recipe(
        "int_flag_01",
        "numeric",
        "stable",
        "0/1 flag, P(1) 0.3 -> 0.31: JS 0.008",
        _int_pair(lambda r, n, c: (r.random(n) < (0.31 if c else 0.3)).astype(np.int64)),
    ),
    Recipe(
        "cat_binary",
        "categorical",
        "stable",
        "2 values, 70/30 -> 69/31: JS 0.008",
        _cat_pair(["yes", "no"], np.array([0.7, 0.3]), np.array([0.69, 0.31])),
    ),
    Recipe(
        "cat_channel_near",
        "categorical",
        "near",
        "3 values, 60/30/10 -> 51.3/30/18.7: JS 0.092",
        _cat_pair(
            ["web", "app", "branch"], np.array([0.6, 0.3, 0.1]), np.array([0.513, 0.3, 0.187])
        ),
    ),
    Recipe(
        "cat_claim_type_new",
        "categorical",
        "drifted",
        "6 values + 'cyber' new in current (8%): JS 0.17",
        _cat_pair(_CLAIMS, _CLAIMS_REF, _CLAIMS_CUR),
    ),
    Recipe(
        "cat_region",
        "categorical",
        "stable",
        "50 values, Zipf 0.8, 1% nulls",
        _cat_pair(_REGIONS, _REGION_P, _REGION_P, nulls=0.01),
    ),
    Recipe(
        "cat_merchant_400",
        "categorical",
        "drifted",
        "400 values, Zipf 1.1 -> 25% from the reversed ranks: JS 0.25",
        _cat_pair(_MERCHANTS, _MERCHANT_P, 0.75 * _MERCHANT_P + 0.25 * _MERCHANT_P[::-1]),
    ),
]


@dataclass(frozen=True)
class Column:
    """One column of a generated data set: its recipe and its name there."""

    name: str
    recipe: Recipe

    @property
    def kind(self) -> str:
        return self.recipe.kind

    @property
    def design(self) -> str:
        return self.recipe.design


def columns(count: int) -> list[Column]:
    """*count* columns: the recipes in turn, copies after the first round suffixed."""
    out = []
    for i in range(count):
        recipe = RECIPES[i % len(RECIPES)]
        copy = i // len(RECIPES)
        out.append(Column(recipe.name if copy == 0 else f"{recipe.name}_{copy + 1}", recipe))
    return out


@dataclass(frozen=True)
class DataSet:
    reference: Path
    current: Path
    columns: list[Column]
    reference_rows: int
    current_rows: int
    generated_s: float  # 0.0 when it came from the cache

    @property
    def numeric(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "categorical"]

    def describe(self) -> str:
        return (
            f"{self.reference_rows:,} x {len(self.columns)} reference against "
            f"{self.current_rows:,} current ({len(self.numeric)} numeric, "
            f"{len(self.categorical)} categorical)"
        )


def dataset(
    reference_rows: int, current_rows: int, count: int, seed: int = 7, root: Path = DATA_DIR
) -> DataSet:
    """The data set of these sizes, from the cache or generated (then cached)."""
    cols = columns(count)
    folder = root / f"drift-v{VERSION}-r{reference_rows}-c{current_rows}-n{count}-s{seed}"
    ref, cur = folder / "reference.parquet", folder / "current.parquet"
    if ref.exists() and cur.exists():
        return DataSet(ref, cur, cols, reference_rows, current_rows, 0.0)
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# data the benchmarks generate (seeded, cached)\n*\n")
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ref_cols: dict[str, pa.Array] = {}
    cur_cols: dict[str, pa.Array] = {}
    for i, col in enumerate(cols):
        rng = np.random.default_rng([seed, i])
        ref_cols[col.name], cur_cols[col.name] = col.recipe.make(rng, reference_rows, current_rows)
    for path, data in ((ref, ref_cols), (cur, cur_cols)):
        tmp = path.with_suffix(".tmp")
        pq.write_table(pa.table(data), tmp, row_group_size=ROW_GROUP, compression="snappy")
        tmp.rename(path)
    return DataSet(ref, cur, cols, reference_rows, current_rows, time.monotonic() - started)


def warm(paths: list[Path]) -> None:
    """Read the files once so that both sides find them in the page cache."""
    for path in paths:
        with open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass


def size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


# -- the exact verdicts: Evidently's rules on the raw columns, with SciPy ----------------------


def exact_statistic(ref: Any, cur: Any, kind: str) -> dict[str, Any]:
    """One column as Evidently 0.7's defaults judge it (``get_default_stattest`` and the
    stattests it picks), on the raw values without nulls."""
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    values = np.unique(np.concatenate([ref, cur]))
    n_values = len(values)
    if len(ref) <= 1000:
        if kind == "numeric" and n_values > 5:
            stat = float(stats.ks_2samp(ref, cur).pvalue)
            return {"method": "ks", "statistic": stat, "threshold": 0.05, "drifted": stat <= 0.05}
        method = "chisquare" if n_values > 2 else "z"
        ref_counts = np.array([np.sum(ref == v) for v in values], dtype=float)
        cur_counts = np.array([np.sum(cur == v) for v in values], dtype=float)
        if method == "chisquare":
            expected = ref_counts * len(cur) / len(ref)
            stat = float(stats.chisquare(cur_counts, expected).pvalue)
        elif n_values == 1:
            stat = 1.0
        else:
            p1, p2 = 1 - ref_counts[0] / len(ref), 1 - cur_counts[0] / len(cur)
            pooled = (p1 * len(ref) + p2 * len(cur)) / (len(ref) + len(cur))
            z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / len(ref) + 1 / len(cur)))
            stat = float(2 * (1 - stats.norm.cdf(abs(z))))
        return {"method": method, "statistic": stat, "threshold": 0.05, "drifted": stat < 0.05}
    if kind == "numeric" and n_values > 5:
        norm = max(float(np.std(ref)), 0.001)
        stat = float(stats.wasserstein_distance(ref, cur) / norm)
        return {
            "method": "wasserstein",
            "statistic": stat,
            "threshold": 0.1,
            "drifted": stat >= 0.1,
        }
    if kind == "numeric" and len(np.unique(ref)) > 20:
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        p = np.histogram(ref, bins)[0] / len(ref)
        q = np.histogram(cur, bins)[0] / len(cur)
    else:
        ref_v, ref_n = np.unique(ref, return_counts=True)
        cur_v, cur_n = np.unique(cur, return_counts=True)
        p = np.zeros(n_values)
        q = np.zeros(n_values)
        p[np.searchsorted(values, ref_v)] = ref_n / len(ref)
        q[np.searchsorted(values, cur_v)] = cur_n / len(cur)
    stat = float(jensenshannon(p, q))
    return {"method": "jensenshannon", "statistic": stat, "threshold": 0.1, "drifted": stat >= 0.1}


def exact_side(argv: Sequence[str]) -> int:
    """Print the exact verdicts of two Parquet files as ``drift compare --json`` does."""
    p = argparse.ArgumentParser(prog="drift_data.py exact")
    p.add_argument("reference")
    p.add_argument("current")
    p.add_argument("--numeric", default="")
    p.add_argument("--categorical", default="")
    p.add_argument("--share", type=float, default=0.5)
    args = p.parse_args(argv)
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    kinds = {c: "numeric" for c in args.numeric.split(",") if c}
    kinds |= {c: "categorical" for c in args.categorical.split(",") if c}
    ref_file, cur_file = pq.ParquetFile(args.reference), pq.ParquetFile(args.current)
    columns = []
    for name, kind in kinds.items():
        pair = []
        for f in (ref_file, cur_file):
            col = f.read([name]).column(0)
            col = pc.drop_null(col.cast("float64") if kind == "numeric" else col)
            arr = col.to_numpy()
            pair.append(arr[np.isfinite(arr)] if kind == "numeric" else arr.astype(str))
        columns.append({"column": name, **exact_statistic(pair[0], pair[1], kind)})
    share = sum(c["drifted"] for c in columns) / max(1, len(columns))
    out = {"columns": columns, "share_drifted": share, "dataset_drift": share >= args.share}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["exact"]:
        sys.exit("usage: drift_data.py exact REFERENCE CURRENT --numeric A,B --categorical C")
    sys.exit(exact_side(sys.argv[2:]))
