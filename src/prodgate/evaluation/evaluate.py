"""Evaluate a registered version on a labelled data file, and compare two versions.

:func:`evaluate_version` loads the version's model exactly as the gateway would, runs
it over the file in chunks, decides escalation with the service's threshold, scores
the decisions (:func:`~prodgate.evaluation.scoring.score`) and stores the result with
its audit record in one transaction. Approval reads the newest stored evaluation.
:func:`compare` scores two versions on the same rows and stores nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from prodgate.audit import log
from prodgate.contract import Contract
from prodgate.evaluation.drift import data_drift
from prodgate.evaluation.gates import lookup
from prodgate.evaluation.scoring import plain, score, truth_labels
from prodgate.exceptions import ArtifactError, ProdgateError, UsageError
from prodgate.registry import artifacts
from prodgate.registry.fingerprint import data_fingerprint, read_table
from prodgate.registry.versions import Version, get_version
from prodgate.runtime.base import ModelInfo, Prediction
from prodgate.runtime.loader import load_model
from prodgate.spec import CLASSIFIER_METRICS, REGRESSOR_METRICS, ServiceSpec
from prodgate.spec.gates import LLM_METRICS
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import evaluations

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from prodgate.evaluation.prompts import Limits, Step

#: Rows per call to the model.
CHUNK = 1_000

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StoredEvaluation:
    """A stored evaluation: its id, the scored result and the data's fingerprint."""

    id: int
    result: dict[str, Any]
    fingerprint: dict[str, Any]
    label_column: str = ""


@dataclass(frozen=True)
class Dataset:
    """A labelled data file read for evaluation."""

    frame: pd.DataFrame
    rows: list[dict[str, Any]]  # the model's input fields only, plain Python values
    truth: list[Any]
    label_column: str
    fingerprint: dict[str, Any]
    #: How the service's features were joined onto the data (point-in-time), when they
    #: were: :meth:`prodgate.features.offline.Joined.summary`, with ``at``.
    features: dict[str, Any] | None = None


@dataclass(frozen=True)
class FeatureJoin:
    """How to add a service's features to data that has only their entity keys: as of
    each row's time in column *at* (:func:`prodgate.features.offline.join`), file
    sources relative to *base* (the spec's folder)."""

    at: str
    base: Path


def pick_label_column(columns: Sequence[str], fields: Sequence[str], given: str | None) -> str:
    """The label column: *given*; else one named ``label``; else the only column that
    is not an input field. A :class:`UsageError` lists the candidates otherwise."""
    if given is not None:
        if given not in columns:
            raise UsageError(f"no column {given!r} in the data; it has: {', '.join(columns)}")
        if given in fields:
            raise UsageError(f"{given!r} is an input field of the service, not a label column")
        return given
    if "label" in columns and "label" not in fields:
        return "label"
    others = [c for c in columns if c not in fields]
    if len(others) == 1:
        return others[0]
    if not others:
        raise UsageError("the data has no column besides the input fields to take the truth from")
    raise UsageError(f"which column holds the truth? pass --label, one of: {', '.join(others)}")


def _is_integer_field(prop: Any) -> bool:
    types = prop.get("type") if isinstance(prop, dict) else None
    types = types if isinstance(types, list) else [types]
    return "integer" in types and "number" not in types


def input_rows(frame: pd.DataFrame, service: ServiceSpec) -> list[dict[str, Any]]:
    """The rows as the model sees them: the model's input fields only (the contract's,
    then the features), plain Python values, missing as None, whole floats in integer
    fields as ints."""
    properties = service.model_contract.get("properties", {})
    fields = [f for f in service.feature_names if f in frame.columns]
    if not fields:
        return [{} for _ in range(len(frame))]
    columns: dict[str, list[Any]] = {}
    for name in fields:
        series = frame[name]
        values = series.tolist()
        for i in np.flatnonzero(series.isna().to_numpy()):
            values[i] = None
        if _is_integer_field(properties[name]) and pd.api.types.is_float_dtype(series.dtype):
            values = [v if v is None or not float(v).is_integer() else int(v) for v in values]
        columns[name] = values
    return [dict(zip(fields, cells, strict=True)) for cells in zip(*columns.values(), strict=True)]


def load_dataset(
    service: ServiceSpec,
    data_path: Path | str,
    label_column: str | None,
    *,
    join: FeatureJoin | None = None,
    store_url: str | None = None,
) -> Dataset:
    """Read *data_path*, pick its label column and turn its rows into the model's.

    Data with every feature of a service that reads feature views is used as it is;
    data with none of them gets them joined point-in-time (*join*; *store_url* is what
    a view's ``query`` without a ``url`` runs against), the same values a training set
    built by ``features dataset`` holds, and rows the join drops are not scored."""
    path = Path(data_path)
    fingerprint = data_fingerprint(path)
    frame = read_table(path)
    if len(frame) == 0:
        raise UsageError(f"{path}: the data has no rows")
    columns = [str(c) for c in frame.columns]
    frame.columns = pd.Index(columns)
    frame, features = _join_features(service, path, frame, join, store_url)
    columns = [str(c) for c in frame.columns]
    fields = service.feature_names
    required = service.model_contract.get("required", [])
    absent = [f for f in required if f not in columns]
    if absent:
        raise UsageError(f"{path}: the data lacks required input field(s): {', '.join(absent)}")
    others = [c for c in columns if join is None or c != join.at]  # the time is no label
    label = pick_label_column(others, fields, label_column)
    return Dataset(
        frame=frame,
        rows=input_rows(frame, service),
        truth=frame[label].tolist(),
        label_column=label,
        fingerprint=fingerprint,
        features=features,
    )


def _join_features(
    service: ServiceSpec,
    path: Path,
    frame: pd.DataFrame,
    join: FeatureJoin | None,
    store_url: str | None,
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """*frame* with the service's features joined when it lacks them (see
    :func:`load_dataset`), and the join's summary (None: no join)."""
    names = service.features.names
    if not names:
        if join is not None:
            raise UsageError(f"--at joins features, and {service.name} reads none")
        return frame, None
    lacking = [n for n in names if n not in frame.columns]
    if not lacking:
        return frame, None  # the data has every feature: used as it is
    if len(lacking) < len(names):
        have = [n for n in names if n in frame.columns]
        raise UsageError(
            f"{path}: the data has some of {service.name}'s features ({', '.join(have)}) "
            f"but not {', '.join(lacking)}: give every feature, or none and --at COLUMN to "
            "join them from their views"
        )
    if join is None:
        raise UsageError(
            f"{path}: the data lacks {service.name}'s features ({', '.join(lacking)}); pass "
            "--at COLUMN (each row's time) to join them from their views point-in-time, "
            "or give data that has them"
        )
    from prodgate.features import offline

    joined = offline.join(frame, service, join.base, store_url, join.at)
    return joined.frame, {"at": join.at, **joined.summary()}


def _predict(
    store: Store, service: ServiceSpec, version: Version, rows: Sequence[Mapping[str, Any]]
) -> list[Prediction]:
    info = ModelInfo(service.kind, service.feature_names, service.labels, version.trusted)
    location = artifacts.materialise(store, version)
    model = load_model(location, version.flavor, info)
    out: list[Prediction] = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        try:
            answers = model.predict(chunk)
        except ProdgateError:
            raise
        except Exception as exc:
            raise ArtifactError(
                f"version {version.number} failed on rows {start}-{start + len(chunk) - 1}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if len(answers) != len(chunk):
            raise ArtifactError(
                f"version {version.number} gave {len(answers)} answers for {len(chunk)} rows"
            )
        out.extend(answers)
    return out


def score_version(
    store: Store,
    service: ServiceSpec,
    version: Version,
    data: Dataset,
    progress: Progress | None = None,
    *,
    calibrate: bool = False,
    predictions: Sequence[Prediction] | None = None,
) -> dict[str, Any]:
    """Run *version* over *data* (or take its *predictions* on it) and score its
    decisions (nothing is stored). With *calibrate*, a classifier's result also holds
    its ``calibration``: what its confidence meant on these rows, for the label-free
    estimate of production windows (:func:`prodgate.monitor.estimate.calibration`).
    The result's ``drift`` is the data's drift from the version's reference profile
    (:func:`prodgate.evaluation.drift.data_drift`), which ``drift.*`` gates read."""
    if predictions is None:
        if progress:
            progress(
                f"scoring {len(data.rows):,} rows with {service.name} version {version.number}..."
            )
        predictions = _predict(store, service, version, data.rows)
    threshold = service.escalation_below
    escalated = [
        threshold is not None and p.confidence is not None and p.confidence < threshold
        for p in predictions
    ]
    result = score(
        service,
        data.frame,
        data.truth,
        [p.value for p in predictions],
        [p.probabilities for p in predictions],
        escalated,
        drift=data_drift(store, service, version.number, data.frame),
    )
    if data.features is not None:
        result["features"] = data.features
    # Rows the gateway would refuse with 422 are scored all the same (they are the data
    # given), but the report says how many there were.
    contract = Contract(service.model_contract)
    result["contract_violations"] = sum(not contract.is_valid(row) for row in data.rows)
    if calibrate and service.kind == "classifier":
        from prodgate.monitor.estimate import calibration

        result["calibration"] = calibration(
            [plain(p.value) for p in predictions],
            [p.confidence for p in predictions],
            truth_labels(data.truth, service),
            service.labels or (),
            business=service.policy.business,
            inputs=data.frame,
        )
    return result


def store_evaluation(
    store: Store,
    service: ServiceSpec,
    version: Version,
    *,
    dataset: Mapping[str, Any],
    label_column: str,
    text: str,
    passed: bool,
    actor: str,
    audit: Mapping[str, Any],
    then: Callable[[Connection, int], object] | None = None,
) -> int:
    """Store one evaluation (the result as JSON *text*) and its ``evaluate`` audit
    record in one transaction; its id. The record holds the data's fingerprint, the
    label column, *audit* (the figures worth keeping in the chain) and the sha256 of
    the stored result. Models and prompt versions alike are stored here, so approval
    reads both the same way. *then* is called in the same transaction with the
    connection and the new evaluation's id (what else the evaluation changes)."""
    with store.write() as conn:
        inserted = conn.execute(
            evaluations.insert().values(
                service=service.name,
                version=version.number,
                dataset=orjson.dumps(dataset).decode(),
                label_column=label_column,
                result=text,
                passed=passed,
                created_by=actor,
                created_at_us=now_us(),
            )
        )
        key = inserted.inserted_primary_key
        assert key is not None  # an INSERT of one row always has one
        evaluation_id = int(key[0])
        record = log.action(
            "evaluate",
            actor=actor,
            service=service.name,
            version=version.number,
            evaluation_id=evaluation_id,
            dataset=dataset,
            label_column=label_column,
            **audit,
            result_sha256=hashlib.sha256(text.encode()).hexdigest(),
        )
        log.append(store, conn, [record])
        if then is not None:
            then(conn, evaluation_id)
    return evaluation_id


def evaluate_version(
    store: Store,
    service: ServiceSpec,
    version_number: int,
    data_path: Path | str,
    label_column: str | None = None,
    *,
    actor: str,
    progress: Progress | None = None,
    limits: Limits | None = None,
    step: Step | None = None,
    join: FeatureJoin | None = None,
) -> StoredEvaluation:
    """Evaluate version *version_number* of *service* on a labelled data file.

    The result (see :func:`~prodgate.evaluation.scoring.score`) is stored in the
    ``evaluations`` table with an ``evaluate`` audit record in the same transaction;
    the record holds the data's fingerprint, the overall figures, every gate's
    verdict and the sha256 of the stored result. *progress* hears what is going on.

    A prompt version (a service of kind ``llm``) is run over a cases file instead,
    with *limits* and told of each case by *step*; *label_column* then names the
    answer's label field (:mod:`~prodgate.evaluation.prompts`).

    Data with only the entity keys of a service's feature views gets their features
    joined point-in-time by *join* (see :func:`load_dataset`); the result's
    ``features`` then says how (fresh, stale, missing, defaults, rows dropped).
    """
    _refuse_join(service, join)
    if service.kind == "llm":
        from prodgate.evaluation.prompts import evaluate_prompt_version

        return evaluate_prompt_version(
            store,
            service,
            version_number,
            data_path,
            label_column,
            actor=actor,
            limits=limits,
            progress=progress,
            step=step,
        )
    _refuse_limits(limits)
    with store.read() as conn:
        version = get_version(conn, service.name, version_number)
    data = load_dataset(service, data_path, label_column, join=join, store_url=store.url)
    if progress:
        progress(f"scoring {len(data.rows):,} rows with {service.name} version {version.number}...")
    predictions = _predict(store, service, version, data.rows)
    result = score_version(
        store, service, version, data, progress, calibrate=True, predictions=predictions
    )
    text = orjson.dumps(result).decode()

    def held_out_outputs(conn: Connection, evaluation_id: int) -> None:
        # A classifier's outputs on held-out rows are the reference production's
        # should be compared with, not its outputs on its own training rows.
        if service.kind == "classifier":
            from prodgate.monitor import profiles

            profiles.replace_outputs(
                store,
                conn,
                service,
                version.number,
                predictions,
                evaluation_id=evaluation_id,
                data=Path(data_path).name,
                actor=actor,
            )

    evaluation_id = store_evaluation(
        store,
        service,
        version,
        dataset=data.fingerprint,
        label_column=data.label_column,
        text=text,
        passed=result["passed"],
        actor=actor,
        audit={
            "rows": result["rows"],
            "metrics": result["metrics"],
            "business": result["business"],
            "escalation_rate": result["escalation_rate"],
            "gates": result["gates"],
            "passed": result["passed"],
        },
        then=held_out_outputs,
    )
    return StoredEvaluation(evaluation_id, result, data.fingerprint, data.label_column)


def _refuse_join(service: ServiceSpec, join: FeatureJoin | None) -> None:
    """A prompt version's cases carry their inputs whole: nothing to join them to."""
    if join is not None and service.kind == "llm":
        raise UsageError(
            "--at joins features onto labelled data; an llm service's cases "
            "carry every input themselves"
        )


def _refuse_limits(limits: Limits | None) -> None:
    """A model runs in-process: a spend cap would be a promise nothing keeps."""
    if limits is not None and limits.max_cost_usd is not None:
        raise UsageError("--max-cost applies to services of kind llm only")


def _entries(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [{**result, "name": "overall"}, *result["cohorts"]]


def compared_metrics(service: ServiceSpec) -> list[str]:
    """The metric names a comparison shows, in order (dotted names as in gates)."""
    if service.kind == "llm":
        return list(LLM_METRICS)
    if service.kind != "classifier":
        return list(REGRESSOR_METRICS)
    names = [*CLASSIFIER_METRICS, "escalation_rate"]
    if service.policy.business is not None:
        names.append("business.cost_per_decision")
    return names


def differences(
    service: ServiceSpec, ra: Mapping[str, Any], rb: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """For overall and every cohort of *ra*, one row per compared metric: ``{"cohort",
    "rows", "metric", "a", "b", "difference"}`` (b - a; None when either is None)."""
    by_name = {e["name"]: e for e in _entries(rb)}
    out = []
    for entry in _entries(ra):
        other = by_name.get(entry["name"], {})
        for metric in compared_metrics(service):
            x, y = lookup(entry, metric), lookup(other, metric)
            out.append(
                {
                    "cohort": entry["name"],
                    "rows": entry["rows"],
                    "metric": metric,
                    "a": x,
                    "b": y,
                    "difference": None if x is None or y is None else y - x,
                }
            )
    return out


def compare(
    store: Store,
    service: ServiceSpec,
    a: int,
    b: int,
    data_path: Path | str,
    label_column: str | None = None,
    *,
    progress: Progress | None = None,
    limits: Limits | None = None,
    step: Step | None = None,
    join: FeatureJoin | None = None,
) -> dict[str, Any]:
    """Score versions *a* and *b* of *service* on the same data (nothing is stored).

    Returns ``{"service", "dataset", "label_column", "a", "b", "differences"}``: each
    version's full result (with its ``version``) and, for overall and every cohort,
    one row per metric ``{"cohort", "rows", "metric", "a", "b", "difference"}``
    (difference is b - a, None when either is not measurable). Prompt versions run
    over the same cases file, with *limits* and *step* as in :func:`evaluate_version`;
    *join* adds features to entity-only data as there.
    """
    _refuse_join(service, join)
    if service.kind == "llm":
        from prodgate.evaluation.prompts import compare_prompt_versions

        ra, rb, cases = compare_prompt_versions(
            store,
            service,
            a,
            b,
            data_path,
            label_column,
            limits=limits,
            progress=progress,
            step=step,
        )
        dataset, label = cases.fingerprint, ra["label_field"] or ""
    else:
        _refuse_limits(limits)
        with store.read() as conn:
            va = get_version(conn, service.name, a)
            vb = get_version(conn, service.name, b)
        data = load_dataset(service, data_path, label_column, join=join, store_url=store.url)
        ra = score_version(store, service, va, data, progress)
        rb = score_version(store, service, vb, data, progress)
        dataset, label = data.fingerprint, data.label_column
    return {
        "service": service.name,
        "dataset": dataset,
        "label_column": label,
        "a": {"version": a, **ra},
        "b": {"version": b, **rb},
        "differences": differences(service, ra, rb),
    }
