"""Trust recorded at registration: skops types by name, pickles whole; honoured when the
version is evaluated and served, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import sqlalchemy as sa
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from custom_estimators import Doubler
from gateway_support import running
from prodgate import spec as spec_module
from prodgate.evaluation import evaluate_version
from prodgate.exceptions import ArtifactError, UsageError
from prodgate.registry import approvals, versions
from prodgate.rollout import split as deployments
from prodgate.runtime.base import ModelInfo, Trust
from prodgate.runtime.loader import load_model
from prodgate.settings import Settings
from prodgate.store.engine import Store
from prodgate.store.tables import versions as versions_table

DOUBLER = "custom_estimators.Doubler"

SPEC = """\
version: 1
services:
  scores:
    owner: {name: Scoring, contact: scoring@example.com}
    kind: classifier
    labels: ["no", "yes"]
    contract:
      input:
        type: object
        additionalProperties: false
        required: [x, y]
        properties:
          x: {type: number, minimum: -100, maximum: 100}
          y: {type: number, minimum: -100, maximum: 100}
"""


def _frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"x": rng.normal(size=120), "y": rng.normal(size=120)})
    return x, np.where(x["x"] + x["y"] > 0, "yes", "no")


def _fitted(*steps: object) -> object:
    x, y = _frame()
    return make_pipeline(*steps, LogisticRegression()).fit(x, y)


@pytest.fixture
def scores(settings: Settings) -> spec_module.ServiceSpec:
    Path(settings.config).write_text(SPEC)
    return spec_module.load(settings.config).service("scores")


@pytest.fixture
def custom_skops(tmp_path: Path) -> Path:
    path = tmp_path / "model.skops"
    sio.dump(_fitted(Doubler()), path)
    return path


def test_a_custom_type_is_refused_naming_the_types_and_the_flag(
    store: Store, scores: spec_module.ServiceSpec, custom_skops: Path
) -> None:
    with pytest.raises(ArtifactError) as info:
        versions.register(store, scores, str(custom_skops), actor="dev")
    assert DOUBLER in info.value.detail
    assert f"--trust-types {DOUBLER}" in info.value.detail
    assert str(custom_skops) in info.value.detail
    # --trust-pickle is for pickles: said so, with the flag that does apply.
    with pytest.raises(UsageError, match=f"does not apply.*--trust-types {DOUBLER}"):
        versions.register(store, scores, str(custom_skops), actor="dev", trust_pickle=True)
    with store.read() as conn:
        assert versions.list_versions(conn, "scores") == []


def test_trusted_types_are_recorded_then_evaluated_and_served(
    settings: Settings,
    store: Store,
    scores: spec_module.ServiceSpec,
    custom_skops: Path,
    tmp_path: Path,
) -> None:
    version = versions.register(
        store, scores, str(custom_skops), actor="dev", trust_types=[DOUBLER]
    )
    with store.read() as conn:
        stored = versions.get_version(conn, "scores", version.number)
    assert stored.trusted == Trust(types=(DOUBLER,))
    assert stored.as_dict()["trusted_types"] == [DOUBLER]
    assert stored.as_dict()["trusted_pickle"] is False

    # Loaded as the gateway's fleet loads a stored version.
    info = ModelInfo(scores.kind, scores.feature_names, scores.labels, trusted=stored.trusted)
    model = load_model(stored.verified_location(settings.artifacts_path), stored.flavor, info)
    assert model.predict([{"x": 2.0, "y": 1.0}])[0].value == "yes"

    x, y = _frame()
    holdout = tmp_path / "holdout.csv"
    x.assign(label=y).to_csv(holdout, index=False)
    evaluation = evaluate_version(store, scores, version.number, holdout, actor="tester")
    assert evaluation.result["metrics"]["accuracy"] > 0.9

    approvals.approve(store, scores, version.number, by="lead", note="ok")
    deployments.deploy(store, scores, version.number, actor="dev")

    async def predict() -> dict[str, object]:
        async with running(settings) as client:
            r = await client.post(
                "/v1/services/scores/predict", json={"inputs": {"x": -2.0, "y": -1.0}}
            )
            assert r.status_code == 200, r.text
            body: dict[str, object] = r.json()
            return body

    import asyncio

    assert asyncio.run(predict())["prediction"] == "no"


def test_only_the_named_types_are_trusted(
    store: Store, scores: spec_module.ServiceSpec, tmp_path: Path
) -> None:
    path = tmp_path / "two.skops"
    sio.dump(_fitted(FunctionTransformer(copy.copy), Doubler()), path)
    with pytest.raises(ArtifactError, match=r"\(copy\.copy\).*--trust-types copy\.copy"):
        versions.register(store, scores, str(path), actor="dev", trust_types=[DOUBLER])
    with pytest.raises(UsageError, match=r"names custom_estimators\.Nope, which .* does not need"):
        versions.register(
            store, scores, str(path), actor="dev", trust_types=[f"{DOUBLER},custom_estimators.Nope"]
        )
    # A stored version that trusts Doubler alone does not load a file naming more.
    info = ModelInfo("classifier", ["x", "y"], trusted=Trust(types=(DOUBLER,)))
    with pytest.raises(ArtifactError, match=r"copy\.copy"):
        load_model(path, "skops", info)


def test_trust_types_all_trusts_what_the_file_names(
    store: Store, scores: spec_module.ServiceSpec, custom_skops: Path
) -> None:
    version = versions.register(store, scores, str(custom_skops), actor="dev", trust_types=["all"])
    assert version.trusted.types == (DOUBLER,)
    with pytest.raises(UsageError, match="stands alone"):
        versions.register(
            store, scores, str(custom_skops), actor="dev", trust_types=["all", DOUBLER]
        )


def test_flags_that_mean_nothing_are_refused(
    store: Store, scores: spec_module.ServiceSpec, tmp_path: Path
) -> None:
    plain = tmp_path / "plain.skops"
    sio.dump(_fitted(), plain)
    with pytest.raises(UsageError, match="names no types outside the skops allow-list"):
        versions.register(store, scores, str(plain), actor="dev", trust_types=[DOUBLER])
    # 'all' of no types is nothing: harmless.
    assert (
        versions.register(store, scores, str(plain), actor="dev", trust_types=["all"]).trusted
        == Trust()
    )
    with pytest.raises(UsageError, match="this callable model is neither"):
        versions.register(
            store, scores, "custom_estimators:Doubler", actor="dev", trust_pickle=True
        )
    import joblib

    pickled = tmp_path / "model.joblib"
    joblib.dump(_fitted(), pickled)
    with pytest.raises(UsageError, match="pass --trust-pickle instead of --trust-types"):
        versions.register(store, scores, str(pickled), actor="dev", trust_types=[DOUBLER])
    version = versions.register(store, scores, str(pickled), actor="dev", trust_pickle=True)
    assert version.trusted == Trust(pickle=True)


@pytest.fixture(scope="module")
def mlflow_sklearn():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
        import mlflow.pyfunc
        import mlflow.sklearn
    return mlflow.sklearn


def test_mlflow_skops_trusted_types_are_honoured(
    store: Store, scores: spec_module.ServiceSpec, tmp_path: Path, mlflow_sklearn
) -> None:
    folder = tmp_path / "mlflow-model"
    mlflow_sklearn.save_model(
        _fitted(Doubler()),
        folder,
        skops_trusted_types=[DOUBLER],
        pip_requirements=["scikit-learn"],
    )
    # The MLmodel alone trusts nothing: the artifact would be vouching for itself.
    with pytest.raises(ArtifactError, match=r"declares in skops_trusted_types.*--trust-types all"):
        versions.register(store, scores, str(folder), actor="dev")
    version = versions.register(store, scores, str(folder), actor="dev", trust_types=["all"])
    assert version.flavor == "mlflow"
    assert version.trusted == Trust(types=(DOUBLER,))

    # A type its MLmodel does not declare is not covered by 'all'.
    mlmodel = folder / "MLmodel"
    data = yaml.safe_load(mlmodel.read_text())
    data["flavors"]["sklearn"]["skops_trusted_types"] = ["custom_estimators.Other"]
    mlmodel.write_text(yaml.safe_dump(data))
    with pytest.raises(ArtifactError, match="does not declare in skops_trusted_types"):
        versions.register(store, scores, str(folder), actor="dev", trust_types=["all"])
    # Named by a person, it is trusted.
    named = versions.register(store, scores, str(folder), actor="dev", trust_types=[DOUBLER])
    assert named.trusted.types == (DOUBLER,)


def test_versions_from_before_trusted_types_keep_their_trust(
    store: Store, scores: spec_module.ServiceSpec, tmp_path: Path
) -> None:
    """A row without trusted_types (registered before the column) reads as it was."""
    plain = tmp_path / "plain.skops"
    sio.dump(_fitted(), plain)
    version = versions.register(store, scores, str(plain), actor="dev")
    with store.write() as conn:
        conn.execute(
            versions_table.update()
            .where(versions_table.c.number == version.number)
            .values(trusted=True, trusted_types=None)
        )
        assert versions.get_version(conn, "scores", version.number).trusted == Trust(pickle=True)
        columns = {c["name"] for c in sa.inspect(conn).get_columns("versions")}
    assert columns == {c.name for c in versions_table.columns}
