"""A feature view's source read as one frame: the entity, the timestamp, the features.

Every use of a view reads its source through :func:`read_source`: materialisation
(the latest row of each entity goes online), and the offline join (every row, for
point-in-time values). The frame it returns has the entity as text in the view's
entity column, the timestamp as whole microseconds since the epoch (UTC) in
:data:`TS`, and one column per feature, in the view's order.

Timestamps may be datetimes (naive ones are UTC), ISO 8601 text, or numbers of seconds
since the epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prodgate.exceptions import UsageError
from prodgate.features.online import entity_key
from prodgate.spec.features import FeatureView

#: The column of a read source that holds each row's timestamp, in microseconds.
TS = "_ts_us"


def source_path(view: FeatureView, base: Path) -> Path:
    """Where a file source is: its ``path``, relative to the spec's folder."""
    assert view.source.path is not None
    path = Path(view.source.path).expanduser()
    return path if path.is_absolute() else base / path


def read_source(
    view: FeatureView,
    base: Path,
    store_url: str | None = None,
    *,
    since_us: int | None = None,
    until_us: int | None = None,
) -> pd.DataFrame:
    """Every row of *view*'s source (with a timestamp after *since_us* and at most
    *until_us*, when given), as :mod:`this module <prodgate.features.sources>` says.

    *base* is the spec file's folder (file paths are relative to it); *store_url* is the
    SQL URL a ``query`` source without its own ``url`` runs against. Raises
    :class:`UsageError` naming what is wrong: no such file, a missing column, a
    timestamp that is not one.
    """
    source = view.source
    if source.kind == "feast":
        raise UsageError(
            f"feature view {view.name!r} is read from Feast's online store; Feast loads it "
            "(feast materialize), not prodgate"
        )
    label = f"feature view {view.name!r}"
    frame = _read_file(view, base, label) if source.kind == "file" else _read_sql(view, store_url)
    needed = [view.entity, source.timestamp, *view.features]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise UsageError(
            f"{label}: the source has no column {', '.join(map(repr, missing))} "
            f"(it has: {', '.join(map(str, frame.columns))})"
        )
    out = pd.DataFrame(
        {
            view.entity: [entity_key(v) for v in frame[view.entity].tolist()],
            TS: timestamps_us(frame[source.timestamp], f"{label}: column {source.timestamp!r}"),
        }
    )
    for name in view.features:
        out[name] = frame[name].reset_index(drop=True)
    out = out[out[view.entity].notna()]
    if since_us is not None:
        out = out[out[TS] > since_us]
    if until_us is not None:
        out = out[out[TS] <= until_us]
    return out.reset_index(drop=True)


def latest(frame: pd.DataFrame, entity: str) -> pd.DataFrame:
    """The newest row of each entity in a read source (the last one of a tie)."""
    if frame.empty:
        return frame
    ordered = frame.sort_values(TS, kind="stable")
    return ordered.drop_duplicates(subset=[entity], keep="last").reset_index(drop=True)


def plain(column: pd.Series[Any], schema: dict[str, Any]) -> list[Any]:
    """A source column as the JSON values a feature of *schema* takes, the one rule for
    loading online and joining offline (two rules would be training/serving skew): NaN,
    NaT and NA as None, numpy scalars as Python ones, and a whole float as an integer
    where the feature is an integer (a CSV column with a gap reads as floats)."""
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    integer = "integer" in kinds and "number" not in kinds
    out: list[Any] = []
    for v in column.astype(object).where(column.notna(), None).tolist():
        if hasattr(v, "item") and not isinstance(v, (str, bytes)):
            v = v.item()
        if integer and isinstance(v, float) and v.is_integer():
            v = int(v)
        out.append(v)
    return out


def timestamps_us(column: pd.Series[Any], label: str) -> np.ndarray[Any, Any]:
    """*column* as microseconds since the epoch, UTC (int64). Raises :class:`UsageError`."""
    try:
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            seconds = column.astype("float64").to_numpy()
            if np.isnan(seconds).any():
                raise ValueError("a timestamp is empty")
            out: np.ndarray[Any, Any] = np.round(seconds * 1_000_000).astype("int64")
            return out
        # ISO8601: text of mixed precision (a fraction of a second on some rows only,
        # as isoformat() and PostgreSQL write them) is one format, not several.
        parsed = pd.to_datetime(column, utc=True, format="ISO8601")
        if parsed.isna().any():
            raise ValueError("a timestamp is empty")
        return np.asarray(parsed.dt.as_unit("us").astype("int64"), dtype="int64")
    except (ValueError, TypeError, OverflowError) as exc:
        first = (str(exc).splitlines() or [""])[0]  # pandas adds lines of advice
        raise UsageError(f"{label}: not a timestamp: {first}") from None


def _read_file(view: FeatureView, base: Path, label: str) -> pd.DataFrame:
    path = source_path(view, base)
    if not path.exists():
        raise UsageError(f"{label}: no such source file {path}")
    try:
        if path.suffix.lower() in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{label}: cannot read {path}: {exc}") from None


def _read_sql(view: FeatureView, store_url: str | None) -> pd.DataFrame:
    import sqlalchemy as sa

    url = view.source.url or store_url
    if not url:
        raise UsageError(f"feature view {view.name!r}: its query needs a url or the store's")
    assert view.source.query is not None
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(sa.text(view.source.query), conn)
    except sa.exc.SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        why = str(orig) if orig is not None else type(exc).__name__
        raise UsageError(f"feature view {view.name!r}: its query failed: {why}") from None
    finally:
        engine.dispose()
