"""Batch comparison: a reference (a data file or a saved profile) against a current
data file, with no service and no store (``prodgate drift compare``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from prodgate.exceptions import UsageError
from prodgate.monitor.binning import floats
from prodgate.monitor.drift import DEFAULT_SHARE, DriftReport, drift
from prodgate.monitor.profile import Current, Profile, against, profile
from prodgate.monitor.sources import Source, open_source


@dataclass
class Comparison:
    reference: Profile
    current: Current
    drift: DriftReport


def compare(
    reference: Any,
    current: Any,
    *,
    columns: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    share: float = DEFAULT_SHARE,
) -> Comparison:
    """Profile *reference* (or load it: a ``.json`` profile, or a :class:`Profile`), count
    *current* on its bins and test every column for drift."""
    cur_source = open_source(current, label="current")
    if isinstance(reference, Profile):
        ref = reference
    elif isinstance(reference, str | Path) and str(reference).lower().endswith(".json"):
        ref = load_profile(Path(reference))
    else:
        ref_source = open_source(reference, label="reference")
        names = _common(ref_source, cur_source, columns)
        ref = profile(
            ref_source,
            columns=names,
            categorical=categorical,
            spans=_spans(cur_source, names, set(categorical)),
        )
    if columns is not None:
        missing = [c for c in columns if ref.column(c) is None]
        if missing:
            raise UsageError(f"no column {', '.join(missing)} in the reference")
    wanted = list(columns) if columns is not None else ref.names
    cur = against(ref, cur_source, columns=wanted)
    return Comparison(ref, cur, drift(ref, cur, columns=wanted, overrides=overrides, share=share))


def load_profile(path: Path) -> Profile:
    if not path.exists():
        raise UsageError(f"reference: no such file: {path}")
    try:
        data = orjson.loads(path.read_bytes())
        return Profile.from_json(data.get("profile", data))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"reference: {path.name} is not a profile: {exc}") from None


def _common(ref: Source, cur: Source, columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        for label, source in (("reference", ref), ("current", cur)):
            missing = [c for c in columns if c not in source.names]
            if missing:
                raise UsageError(f"no column {', '.join(missing)} in the {label} data")
        return list(columns)
    return list(ref.names)


def _spans(
    cur: Source, names: Sequence[str], categorical: set[str]
) -> dict[str, tuple[float, float]]:
    """The current data's range per numeric column (the reference's bins cover it too)."""
    import pyarrow as pa

    spans: dict[str, tuple[float, float]] = {}
    for name in names:
        if name in categorical or name not in cur.names:
            continue
        kind = cur.type(name)
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            continue
        lo, hi = math.inf, -math.inf
        for chunk in cur.chunks(name)():
            x, _, _ = floats(chunk)
            if len(x):
                lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
        if lo <= hi:
            spans[name] = (lo, hi)
    return spans
