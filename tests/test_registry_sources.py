"""What register is given: MLflow 3 run and experiment folders, and MLflow URIs, against
a real local MLflow tracking store (mlflow-skinny, file backend)."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from prodgate import spec as spec_module
from prodgate.cli.main import cli
from prodgate.exceptions import ArtifactError
from prodgate.registry import versions
from prodgate.settings import Settings
from prodgate.store.engine import Store

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
        required: [x0, x1]
        properties:
          x0: {type: number, minimum: -100, maximum: 100}
          x1: {type: number, minimum: -100, maximum: 100}
"""


@dataclass(frozen=True)
class Tracking:
    uri: str
    experiment: Path  # mlruns/<experiment id>
    runs: list[str]  # run ids, one model each
    model_dirs: list[Path]  # where MLflow 3 put each run's model


def _mlflow_env(mp: pytest.MonkeyPatch, uri: str) -> None:
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    # MLflow 3 keeps the file backend for existing users behind this switch.
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Tracking:
    """Two runs, each logging a model with mlflow.sklearn.log_model, and the first
    registered as model 'scores' version 1."""
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("tracking")
    uri = (root / "mlruns").as_uri()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    y = np.where(x[:, 0] > 0, "yes", "no")
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        _mlflow_env(mp, uri)
        # mlflow warns about its own type hints and its file backend; not ours to judge.
        warnings.simplefilter("ignore")
        import mlflow
        import mlflow.sklearn

        runs, model_ids = [], []
        for c in (1.0, 0.1):
            with mlflow.start_run() as run:
                info = mlflow.sklearn.log_model(
                    LogisticRegression(C=c).fit(x, y),
                    name="model",
                    pip_requirements=["scikit-learn"],
                )
            runs.append(run.info.run_id)
            model_ids.append(info.model_id)
        mlflow.register_model(f"runs:/{runs[0]}/model", "scores")
        experiment = root / "mlruns" / run.info.experiment_id
    return Tracking(
        uri, experiment, runs, [experiment / "models" / m / "artifacts" for m in model_ids]
    )


@pytest.fixture
def scores(settings: Settings) -> spec_module.ServiceSpec:
    Path(settings.config).write_text(SPEC)
    return spec_module.load(settings.config).service("scores")


def test_mlflow3_keeps_the_model_beside_the_run(tracking: Tracking) -> None:
    run_folder = tracking.experiment / tracking.runs[0]
    assert not list(run_folder.rglob("MLmodel"))
    assert (tracking.model_dirs[0] / "MLmodel").is_file()


def test_a_run_folder_registers_the_model_it_logged(
    store: Store, scores: spec_module.ServiceSpec, tracking: Tracking
) -> None:
    version = versions.register(
        store, scores, str(tracking.experiment / tracking.runs[1]), actor="dev"
    )
    assert version.flavor == "mlflow"
    assert version.source == str(tracking.model_dirs[1].resolve())
    # The model's own folder (models/<id>) holds it one level down.
    again = versions.register(store, scores, str(tracking.model_dirs[1].parent), actor="dev")
    assert again.sha256 == version.sha256


def test_an_mlflow2_run_folder_holds_its_model(
    store: Store, scores: spec_module.ServiceSpec, tracking: Tracking, tmp_path: Path
) -> None:
    import shutil

    run = tmp_path / "mlruns" / "0" / "abc123"
    shutil.copytree(tracking.model_dirs[0], run / "artifacts" / "model")
    version = versions.register(store, scores, str(run), actor="dev")
    assert version.source == str((run / "artifacts" / "model").resolve())


def test_a_folder_with_several_models_lists_them(
    store: Store, scores: spec_module.ServiceSpec, tracking: Tracking
) -> None:
    with pytest.raises(ArtifactError) as info:
        versions.register(store, scores, str(tracking.experiment), actor="dev")
    message = info.value.detail
    assert message.startswith(f"{tracking.experiment} holds 2 MLflow models (")
    for folder in tracking.model_dirs:
        assert str(folder) in message
    assert message.endswith("register one of them")


@pytest.mark.parametrize("which", ["models:/scores/1", "runs:/{run}/model"])
def test_mlflow_uris_are_downloaded_and_recorded_as_the_source(
    store: Store,
    scores: spec_module.ServiceSpec,
    tracking: Tracking,
    monkeypatch: pytest.MonkeyPatch,
    which: str,
) -> None:
    _mlflow_env(monkeypatch, tracking.uri)
    uri = which.format(run=tracking.runs[0])
    version = versions.register(store, scores, uri, actor="dev")
    assert version.flavor == "mlflow"
    assert version.source == uri
    assert version.artifact.endswith("/model")
    stored = Path(version.verified_location(store.settings.artifacts_path))
    assert (stored / "MLmodel").is_file()


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"PRODGATE_USER": "alice", "PRODGATE_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(
        cli, ["--home", settings.home, "--config", settings.config, *args], env=env
    )
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_cli_registers_a_uri_and_says_where_from(
    sqlite_settings: Settings, tracking: Tracking, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path(sqlite_settings.config).write_text(SPEC)
    _mlflow_env(monkeypatch, tracking.uri)
    code, out = _cli(sqlite_settings, "register", "scores", "models:/scores/1")
    assert code == 0, out
    assert "registered scores version 1 (mlflow" in out
    assert "from models:/scores/1" in out
    code, out = _cli(sqlite_settings, "register", "scores", "models:/absent/3")
    assert code == 2
    assert out.startswith("prodgate: error: models:/absent/3: MLflow could not download it")
    assert len(out.strip().splitlines()) == 1


def test_a_uri_without_mlflow_installed_says_how_to_install_it(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path(sqlite_settings.config).write_text(SPEC)
    # As if mlflow were not installed: importing it fails.
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.artifacts", None)
    code, out = _cli(sqlite_settings, "register", "scores", "runs:/0123/model")
    assert code == 2
    assert out.strip().splitlines() == [
        "prodgate: error: runs:/0123/model is an MLflow URI; reading it needs mlflow: "
        "pip install 'prodgate[mlflow]'"
    ]
