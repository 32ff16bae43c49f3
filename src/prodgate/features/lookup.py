"""A view's policy, applied to what the online store (or the source, offline) found.

One rule for serving and for training sets, so both see the same values:

- ``fresh``: the entity was found and its values are no older than the view's ``ttl``
  at the moment that counts (now, when serving; the event's time, offline);
- ``stale``: found, but older than the ``ttl``;
- ``missing``: the entity is not in the view (or the request sent no key).

A feature whose value is not fresh, or is null where its type does not allow null,
takes its ``default`` when the view declares one (recorded in ``defaulted``) and is
``refused`` otherwise: serving answers 422 naming the key, a training set drops the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prodgate.features.online import Found
from prodgate.spec.features import Feature, ViewUse

FRESH, STALE, MISSING = "fresh", "stale", "missing"
STATUSES = (FRESH, STALE, MISSING)


@dataclass(frozen=True, slots=True)
class Resolved:
    """One row's features from one view, after the view's policy."""

    values: dict[str, Any]
    status: str
    event_us: int | None
    defaulted: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()

    def record(self, entity: str | None) -> dict[str, Any]:
        """What an audit record keeps of it, so the decision can be replayed: the key,
        the values' timestamp and status, and which features took their default."""
        out: dict[str, Any] = {"entity": entity, "status": self.status, "event_us": self.event_us}
        if self.defaulted:
            out["defaulted"] = list(self.defaulted)
        return out


def nullable(feature: Feature) -> bool:
    """Whether the feature's type allows null (a null value is then a value)."""
    kind = feature.schema.get("type")
    return kind == "null" or (isinstance(kind, list) and "null" in kind)


def resolve(use: ViewUse, found: Found | None, at_us: int) -> Resolved:
    """The features *use* needs from *found* (None: missing), judged at *at_us*."""
    view = use.view
    if found is None:
        status, event_us, have = MISSING, None, None
    else:
        event_us = found.event_us
        stale = view.ttl_s is not None and at_us - event_us > view.ttl_s * 1_000_000
        status = STALE if stale else FRESH
        have = None if stale else found.values
    values: dict[str, Any] = {}
    defaulted: list[str] = []
    refused: list[str] = []
    for name in use.names:
        feature = view.features[name]
        value = have.get(name) if have is not None else None
        if have is not None and (value is not None or (name in have and nullable(feature))):
            values[name] = value
        elif feature.has_default:
            values[name] = feature.default
            defaulted.append(name)
        else:
            values[name] = None
            refused.append(name)
    return Resolved(values, status, event_us, tuple(defaulted), tuple(refused))
