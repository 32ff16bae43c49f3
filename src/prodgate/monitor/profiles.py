"""Reference profiles in the store: one per version, saved once, read by every comparison.

The one writer of the ``profiles`` table. A profile is the JSON of
:class:`prodgate.monitor.profile.Profile` (the plan's "reference profile" shape):
computed from the data a version was registered with (``register --data``) or later
(``prodgate profile SERVICE VERSION --data FILE``), replacing the one before. Saving
moves the store's generation, so running gateways bin their next windows on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit import log
from prodgate.exceptions import ArtifactError, ProdgateError, UsageError
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import profiles

if TYPE_CHECKING:
    import pandas as pd

    from prodgate.registry.versions import Version
    from prodgate.runtime.base import Prediction
    from prodgate.spec import ServiceSpec

#: Rows of the data a version's model is run on for the outputs' reference.
MAX_OUTPUT_ROWS = 100_000
#: Rows per model call while profiling the outputs (and per step of the progress bar).
CHUNK = 2_000
#: The confidence histogram's fixed edges (as the gateway's windows count them).
CONFIDENCE_EDGES = [i / 20 for i in range(21)]

Predict = Callable[[Sequence[dict[str, Any]]], Sequence["Prediction"]]
#: Told how many rows of how many were predicted so far.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class StoredProfile:
    """A version's reference profile as stored."""

    service: str
    version: int
    profile: dict[str, Any]
    source: str
    rows: int
    created_by: str
    created_at_us: int

    def summary(self) -> dict[str, Any]:
        """What was stored, without the statistics themselves."""
        return {
            "service": self.service,
            "version": self.version,
            "source": self.source,
            "rows": self.rows,
            "columns": [c.get("name") for c in self.profile.get("columns") or ()],
            "outputs": [c.get("name") for c in self.profile.get("outputs") or ()],
            "created_by": self.created_by,
            "created_at_us": self.created_at_us,
        }


def save(
    store: Store,
    service: str,
    version: int,
    profile: dict[str, Any],
    *,
    source: str,
    actor: str,
    conn: Connection | None = None,
    record: bool = True,
) -> StoredProfile:
    """Store *profile* as *version*'s reference (replacing any), record it in the audit
    log (unless the caller's own record says so: *record* False), and move the
    generation so gateways load it. In *conn*'s transaction if given."""
    created_us = now_us()
    row: dict[str, Any] = {
        "service": service,
        "version": version,
        "profile": orjson.dumps(profile, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
        "source": source,
        "rows": int(profile.get("rows") or 0),
        "created_by": str(actor),
        "created_at_us": created_us,
    }

    def write(c: Connection) -> None:
        c.execute(
            profiles.delete().where(profiles.c.service == service, profiles.c.version == version)
        )
        c.execute(profiles.insert().values(**row))
        if record:
            log.append(
                store,
                c,
                [
                    log.action(
                        "profile",
                        actor=actor,
                        service=service,
                        version=version,
                        source=source,
                        rows=row["rows"],
                    )
                ],
            )
        store.bump_generation(c)

    if conn is not None:
        write(conn)
    else:
        with store.write() as c:
            write(c)
    return StoredProfile(service, version, profile, source, row["rows"], str(actor), created_us)


def replace_outputs(
    store: Store,
    conn: Connection,
    service: ServiceSpec,
    version: int,
    predictions: Sequence[Prediction],
    *,
    evaluation_id: int,
    data: str,
    actor: str,
) -> StoredProfile | None:
    """Make *predictions* (the version's answers to an evaluation's held-out rows) the
    reference of *version*'s outputs, keeping its inputs; None (nothing written) when
    the version has no stored profile. In *conn*'s transaction (the evaluation's own).

    A model is over-confident on the rows it was trained on, so outputs profiled from
    the training data make ``confidence`` look drifted on ordinary traffic; held-out
    rows are what production looks like. Where the outputs came from is kept in the
    profile (``inputs_source``, ``outputs_source``: the evaluation's id, data and
    rows), in ``source`` and in the audit log.

    Windows already counted against the profile stay comparable with it when the
    outputs' bins are the same (the prediction is counted by class, the confidence on
    fixed edges): the profile then keeps its ``created_us``, which the windows name as
    the reference they were binned on. Otherwise (the confidence's exact values,
    kept when it takes few values or the reference is small, are not the same) it
    gets a new one: the gateways bin their next windows on it, and the windows
    counted before are left out of drift against it."""
    from prodgate.monitor.counters import Layout

    row = conn.execute(
        sa.select(profiles).where(profiles.c.service == service.name, profiles.c.version == version)
    ).first()
    if row is None:
        return None
    old = _stored(row)
    profile = dict(old.profile)
    outputs = [c.to_json() for c in output_columns(service, predictions)]
    before = Layout.from_profile(service.kind, profile).outputs
    profile["outputs"] = outputs
    if Layout.from_profile(service.kind, profile).outputs != before:
        profile["created_us"] = now_us()
    inputs = str(profile.get("inputs_source") or old.source)
    profile["inputs_source"] = inputs
    profile["outputs_source"] = {
        "evaluation_id": evaluation_id,
        "data": data,
        "rows": len(predictions),
    }
    source = f"{inputs} (outputs: evaluation {evaluation_id} on {data})"
    created_us = now_us()
    conn.execute(
        profiles.update()
        .where(profiles.c.service == service.name, profiles.c.version == version)
        .values(
            profile=orjson.dumps(profile, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            source=source,
            created_by=str(actor),
            created_at_us=created_us,
        )
    )
    log.append(
        store,
        conn,
        [
            log.action(
                "profile",
                actor=actor,
                service=service.name,
                version=version,
                source=source,
                outputs_from={"evaluation_id": evaluation_id, "data": data},
                rows=len(predictions),
            )
        ],
    )
    store.bump_generation(conn)
    return StoredProfile(service.name, version, profile, source, old.rows, str(actor), created_us)


def load(conn: Connection, service: str, version: int) -> StoredProfile | None:
    """*version*'s reference profile, or None when it has none."""
    row = conn.execute(
        sa.select(profiles).where(profiles.c.service == service, profiles.c.version == version)
    ).first()
    return _stored(row) if row is not None else None


def load_many(conn: Connection, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Any]:
    """The profiles' JSON of the (service, version) pairs in *keys* that have one."""
    wanted = set(keys)
    if not wanted:
        return {}
    services = sorted({s for s, _ in wanted})
    rows = conn.execute(
        sa.select(profiles.c.service, profiles.c.version, profiles.c.profile).where(
            profiles.c.service.in_(services)
        )
    )
    return {
        (r.service, int(r.version)): orjson.loads(r.profile)
        for r in rows
        if (r.service, int(r.version)) in wanted
    }


def _stored(row: Any) -> StoredProfile:
    m = row._mapping
    return StoredProfile(
        service=m["service"],
        version=int(m["version"]),
        profile=orjson.loads(m["profile"]),
        source=m["source"],
        rows=int(m["rows"]),
        created_by=m["created_by"],
        created_at_us=int(m["created_at_us"]),
    )


# -- computing a profile (A's statistics, run on a version's data) ---------------------


def compute(
    service: ServiceSpec,
    data: Path,
    predict: Predict | None,
    *,
    max_output_rows: int = MAX_OUTPUT_ROWS,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The reference profile (JSON) of *data* for *service*: its input fields (the
    model's, those the file has, not entity keys: :func:`profiled_fields`; bounded
    memory however large the file), and the
    outputs of *predict* (the version's model) on up to *max_output_rows* rows of it:
    the predicted class (classifiers) or value (regressors) and the confidence on
    fixed bins. An LLM service's profile has ``prompt_chars`` instead (no model call)."""
    from prodgate.monitor.profile import profile, profile_column

    if not data.is_file():
        raise UsageError(f"{data}: no such data file")
    head = _head(data, max_output_rows)
    fields = profiled_fields(service, head.columns)
    if not fields:
        raise UsageError(
            f"{data}: none of {service.name}'s input fields "
            f"({', '.join(profiled_fields(service))}) is a column of it"
        )
    model_contract = service.model_contract
    categorical = [f for f in fields if _kind(model_contract, f) == "categorical"]
    numeric = [f for f in fields if _kind(model_contract, f) == "numeric"]
    try:
        reference = profile(str(data), columns=fields, categorical=categorical, numeric=numeric)
    except ProdgateError:
        raise
    except Exception as exc:  # a file pandas read but the profiler cannot
        raise UsageError(f"{data}: cannot profile it: {type(exc).__name__}: {exc}") from None
    outputs: list[Any] = []
    if service.kind == "llm":
        lengths = [
            sum(len(v) for v in row.values() if isinstance(v, str)) for row in _rows(head, service)
        ]
        outputs.append(profile_column("prompt_chars", lengths, kind="numeric"))
    elif predict is not None:
        predictions = _predict(predict, _rows(head, service), progress)
        outputs.extend(output_columns(service, predictions))
    reference.outputs = outputs
    return reference.to_json()


def profiled_fields(service: ServiceSpec, columns: Any = None) -> list[str]:
    """The fields a profile holds: the model's inputs (the contract's, then the
    features), those in *columns* when given, but not the feature views' entity keys: an
    id is no distribution, and new ids are what production brings, not drift."""
    keys = set(service.features.entities)
    have = None if columns is None else {str(c) for c in columns}
    return [f for f in service.feature_names if f not in keys and (have is None or f in have)]


def output_columns(service: ServiceSpec, predictions: Sequence[Prediction]) -> list[Any]:
    """The outputs' reference columns of a model's *predictions*: ``prediction`` (the
    class as text for classifiers, the value for regressors) and, when the model gives
    one, ``confidence`` on the fixed edges :data:`CONFIDENCE_EDGES`."""
    from prodgate.monitor.profile import profile_column

    values = [p.value for p in predictions]
    kind = "numeric" if service.kind == "regressor" else "categorical"
    if kind == "categorical":
        values = [None if v is None else str(v) for v in values]
    out: list[Any] = [profile_column("prediction", values, kind=kind)]
    confidences = [p.confidence for p in predictions]
    if any(c is not None for c in confidences):
        out.append(
            profile_column(
                "confidence",
                [float("nan") if c is None else float(c) for c in confidences],
                kind="numeric",
                edges=CONFIDENCE_EDGES,
            )
        )
    return out


def compute_for_version(
    store: Store,
    service: ServiceSpec,
    version: Version,
    data: Path,
    *,
    max_output_rows: int = MAX_OUTPUT_ROWS,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """:func:`compute` with *version*'s stored model (fetched from the store if needed).

    Outputs an evaluation referenced on held-out rows (:func:`replace_outputs`) are
    kept: the file given here is usually training data, where the model is more sure
    of itself than production will ever see it."""
    predict: Predict | None = None
    if service.kind != "llm":
        from prodgate.registry import artifacts
        from prodgate.runtime.base import ModelInfo
        from prodgate.runtime.loader import load_model

        info = ModelInfo(service.kind, service.feature_names, service.labels, version.trusted)
        predict = load_model(artifacts.materialise(store, version), version.flavor, info).predict
    computed = compute(service, data, predict, max_output_rows=max_output_rows, progress=progress)
    with store.read() as conn:
        old = load(conn, service.name, version.number)
    if old is not None and old.profile.get("outputs_source"):
        computed["outputs"] = old.profile["outputs"]
        computed["outputs_source"] = old.profile["outputs_source"]
    return computed


def _kind(contract: dict[str, Any], name: str) -> str | None:
    from prodgate.monitor.counters import contract_kind

    return contract_kind((contract.get("properties") or {}).get(name))


def _head(path: Path, rows: int) -> pd.DataFrame:
    """The first *rows* rows of a CSV, Parquet or JSON-lines file."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            batches = []
            taken = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=min(rows, 65_536)):
                batches.append(batch.slice(0, rows - taken))
                taken += batches[-1].num_rows
                if taken >= rows:
                    break
            if not batches:
                return pd.DataFrame()
            return pa.Table.from_batches(batches).to_pandas()
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path, nrows=rows)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True, nrows=rows)
    except Exception as exc:  # pandas and pyarrow raise many kinds for a bad file
        raise UsageError(f"{path}: cannot read it as {suffix[1:]}: {exc}") from None
    raise UsageError(f"{path}: unknown data format {suffix!r}; use .csv, .parquet or .jsonl")


def _rows(frame: pd.DataFrame, service: ServiceSpec) -> list[dict[str, Any]]:
    from prodgate.evaluation.evaluate import input_rows

    frame.columns = [str(c) for c in frame.columns]
    return input_rows(frame, service)


def _predict(
    predict: Predict, rows: Sequence[dict[str, Any]], progress: Progress | None
) -> list[Prediction]:
    out: list[Prediction] = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        try:
            answers = predict(chunk)
        except ProdgateError:
            raise
        except Exception as exc:
            raise ArtifactError(
                f"the model failed on rows {start}-{start + len(chunk) - 1} of the data: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        out.extend(answers)
        if progress is not None:
            progress(len(out), len(rows))
    return out
