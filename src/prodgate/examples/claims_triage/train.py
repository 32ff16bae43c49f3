"""Train the claims-triage model and save it as a skops file.

The model is a scikit-learn :class:`~sklearn.pipeline.Pipeline`: a
:class:`~sklearn.compose.ColumnTransformer` that one-hot encodes ``claim_type`` and
``region`` (unknown categories are ignored, so a ``cyber`` claim still gets an answer)
and passes the numeric and boolean columns through, then a small
:class:`~sklearn.ensemble.HistGradientBoostingClassifier`, which takes the missing
``customer_age`` (NaN) as it is. It is fitted on a DataFrame, so it knows its
``feature_names_in_``.

Everything in the pipeline is scikit-learn, so the skops file holds only types from
sklearn, numpy and builtins: the serving side loads it trusting just those.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from prodgate.examples.claims_triage.generate import FEATURES, LABEL

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

CATEGORICAL: list[str] = ["claim_type", "region"]
PASSTHROUGH: list[str] = [c for c in FEATURES if c not in CATEGORICAL]

#: Module roots the serving side trusts when loading a skops file.
TRUSTED_ROOTS: frozenset[str] = frozenset({"sklearn", "numpy", "scipy", "builtins", "collections"})


#: Booster settings: the shallow baseline, and a deeper model that can learn the
#: high-value claims' three-way rule.
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {"max_iter": 100, "learning_rate": 0.2, "max_depth": 3, "max_leaf_nodes": 8},
    "deep": {"max_iter": 200, "learning_rate": 0.1, "max_depth": None, "max_leaf_nodes": 31},
}


def train(df: pd.DataFrame, *, seed: int = 0, variant: str = "baseline") -> Pipeline:
    """Fit the claims-triage pipeline on *df* (the :data:`FEATURES` columns and the label).

    A few seconds at most for 20,000 rows. *seed* fixes the booster's randomness;
    *variant* picks the booster's size (see :data:`VARIANTS`).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    missing = [c for c in [*FEATURES, LABEL] if c not in df.columns]
    if missing:
        raise ValueError(f"training data lacks column(s): {', '.join(missing)}")
    features = ColumnTransformer(
        [
            (
                "categories",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=float),
                CATEGORICAL,
            ),
            ("values", "passthrough", PASSTHROUGH),
        ],
        verbose_feature_names_out=False,
    )
    booster = HistGradientBoostingClassifier(
        **VARIANTS[variant], early_stopping=False, random_state=seed
    )
    model = Pipeline([("features", features), ("classifier", booster)])
    model.fit(df[FEATURES], df[LABEL].to_numpy())
    return model


def save(model: Pipeline, path: Path) -> None:
    """Write *model* to *path* as a skops file (``skops.io.dump``)."""
    import skops.io

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    skops.io.dump(model, tmp)
    tmp.replace(path)


def untrusted_types(path: Path) -> list[str]:
    """The types ``skops.io.get_untrusted_types`` lists for the skops file at *path*."""
    import skops.io

    return sorted(skops.io.get_untrusted_types(file=path))


def untrusted_outside_allowlist(path: Path) -> list[str]:
    """The untrusted types at *path* whose module root is not in :data:`TRUSTED_ROOTS`."""
    return [t for t in untrusted_types(path) if t.split(".", 1)[0] not in TRUSTED_ROOTS]


def _main() -> None:  # pragma: no cover - a quick measurement by hand
    from prodgate.examples.claims_triage.generate import generate

    started = time.perf_counter()
    df = generate(20_000, seed=7)
    generated = time.perf_counter()
    train(df)
    print(f"generate: {generated - started:.3f}s  train: {time.perf_counter() - generated:.3f}s")


if __name__ == "__main__":  # pragma: no cover
    _main()
