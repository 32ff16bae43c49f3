"""Feature views: features keyed by an entity, declared once, served and joined alike.

A spec's top-level ``features:`` section names the views; a service lists the features
it needs, and its callers send only the entity keys::

    features:
      policy:
        entity: policy_id                 # the key: a column of the source, a field of requests
        source: {path: data/policies.parquet, timestamp: updated_at}
        ttl: 30d                          # a value older than this is stale
        features:
          policy_age_years: {type: integer, minimum: 0}          # no default: refuse
          prior_claims: {type: integer, minimum: 0, default: 0}
          customer_age: {type: [integer, "null"], default: null}

    services:
      claims-triage:
        contract: {input: {... policy_id ...}}
        features: [policy.policy_age_years, policy.prior_claims, policy.customer_age]

A source is a Parquet or CSV file (``path``, relative to the spec), a SQL query
(``query``, against ``url`` or the store), or an existing Feast repository (``feast``:
its path, and ``view``: the Feast feature view, by default the same name). A feature
with a ``default`` takes it when its entity is missing or its value is stale (older
than ``ttl``) or null; one without a default refuses such a request with a 422 naming
the key. The same rule builds training sets point-in-time, so serving and training read
features one way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from prodgate.durations import parse_duration
from prodgate.exceptions import UsageError

#: A view's name, and a feature's.
VIEW_NAME = r"^[a-z][a-z0-9_]{0,62}$"
FEATURE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
#: The timestamp column a source has when it does not say.
DEFAULT_TIMESTAMP = "event_timestamp"
#: How a service names a feature: ``view.feature``, or ``view.*`` for all of a view's.
FEATURE_REF = r"^[a-z][a-z0-9_]{0,62}\.(\*|[A-Za-z_][A-Za-z0-9_]{0,127})$"

_SCALAR_TYPES = ["string", "number", "integer", "boolean", "null"]

FEATURES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": VIEW_NAME},
    "additionalProperties": {
        "type": "object",
        "required": ["entity", "source", "features"],
        "additionalProperties": False,
        "properties": {
            "description": {"type": "string"},
            "entity": {"type": "string", "pattern": FEATURE_NAME},
            "ttl": {"type": "string"},
            "source": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "path": {"type": "string", "minLength": 1},
                    "query": {"type": "string", "minLength": 1},
                    "url": {"type": "string", "minLength": 1},
                    "feast": {"type": "string", "minLength": 1},
                    "view": {"type": "string", "minLength": 1},
                    "timestamp": {"type": "string", "pattern": FEATURE_NAME},
                },
            },
            "features": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"pattern": FEATURE_NAME},
                "additionalProperties": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {
                            "oneOf": [
                                {"enum": _SCALAR_TYPES},
                                {"type": "array", "items": {"enum": _SCALAR_TYPES}},
                            ]
                        },
                        "description": {"type": "string"},
                    },
                },
            },
        },
    },
}

#: A service's ``features:``: the features its model reads besides what callers send.
SERVICE_FEATURES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "pattern": FEATURE_REF},
}


class FeatureProblem(Exception):
    """What is wrong with a feature view or a service's use of one, and where."""

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Source:
    """Where a view's values come from."""

    path: str | None = None
    query: str | None = None
    url: str | None = None
    feast: str | None = None
    #: The Feast feature view read (``feast`` sources only).
    feast_view: str | None = None
    timestamp: str = DEFAULT_TIMESTAMP

    @property
    def kind(self) -> str:
        """``file``, ``sql`` or ``feast``."""
        if self.feast is not None:
            return "feast"
        return "sql" if self.query is not None else "file"


@dataclass(frozen=True)
class Feature:
    """One feature of a view: its JSON Schema and what stands in when it is unavailable."""

    name: str
    schema: dict[str, Any]
    #: Whether a missing, stale or null value takes :attr:`default` (else: refuse).
    has_default: bool = False
    default: Any = None


@dataclass(frozen=True)
class FeatureView:
    """A named set of features keyed by one entity."""

    name: str
    entity: str
    source: Source
    features: dict[str, Feature]
    #: Seconds a value stays fresh after its timestamp; None: never stale.
    ttl_s: float | None = None
    description: str = ""

    def feature(self, name: str) -> Feature:
        return self.features[name]


@dataclass(frozen=True)
class ViewUse:
    """The part of one view a service reads: the view and the features it needs."""

    view: FeatureView
    names: tuple[str, ...]


@dataclass(frozen=True)
class ServiceFeatures:
    """A service's features: the views it reads, in the order the spec lists them."""

    uses: tuple[ViewUse, ...] = ()

    @property
    def on(self) -> bool:
        return bool(self.uses)

    @property
    def names(self) -> list[str]:
        """Every feature the service reads, as the model sees its name."""
        return [n for use in self.uses for n in use.names]

    @property
    def entities(self) -> list[str]:
        """The entity keys the service's callers send, once each."""
        return list(dict.fromkeys(use.view.entity for use in self.uses))

    def properties(self) -> dict[str, Any]:
        """The features' JSON Schemas, by name (the contract's properties the model reads
        besides the caller's)."""
        return {n: use.view.features[n].schema for use in self.uses for n in use.names}


NO_FEATURES = ServiceFeatures()


def build_views(raw: dict[str, Any] | None) -> dict[str, FeatureView]:
    """The spec's ``features:`` section as views. Raises :class:`FeatureProblem`."""
    views: dict[str, FeatureView] = {}
    for name, section in (raw or {}).items():
        views[name] = _view(name, section)
    return views


def _view(name: str, raw: dict[str, Any]) -> FeatureView:
    base = ("features", name)
    source_raw = raw["source"]
    kinds = [k for k in ("path", "query", "feast") if k in source_raw]
    if len(kinds) != 1:
        raise FeatureProblem(
            (*base, "source"),
            "give exactly one of path (a Parquet or CSV file), query (SQL) or feast "
            "(a Feast repository)",
        )
    if "url" in source_raw and "query" not in source_raw:
        raise FeatureProblem((*base, "source", "url"), "url goes with query")
    if "view" in source_raw and "feast" not in source_raw:
        raise FeatureProblem((*base, "source", "view"), "view goes with feast")
    source = Source(
        path=source_raw.get("path"),
        query=source_raw.get("query"),
        url=source_raw.get("url"),
        feast=source_raw.get("feast"),
        feast_view=source_raw.get("view", name) if "feast" in source_raw else None,
        timestamp=source_raw.get("timestamp", DEFAULT_TIMESTAMP),
    )
    ttl_s: float | None = None
    if "ttl" in raw:
        try:
            ttl_s = parse_duration(raw["ttl"], "ttl")
        except UsageError as exc:
            raise FeatureProblem((*base, "ttl"), exc.detail) from None
    features: dict[str, Feature] = {}
    for fname, fraw in raw["features"].items():
        if fname == raw["entity"]:
            raise FeatureProblem(
                (*base, "features", fname), "the entity key is not a feature of its own view"
            )
        schema = {k: copy.deepcopy(v) for k, v in fraw.items() if k != "default"}
        features[fname] = Feature(
            fname, schema, has_default="default" in fraw, default=fraw.get("default")
        )
    return FeatureView(
        name=name,
        entity=raw["entity"],
        source=source,
        features=features,
        ttl_s=ttl_s,
        description=raw.get("description", ""),
    )


def build_service(
    refs: list[str] | None, views: dict[str, FeatureView], contract_fields: list[str]
) -> ServiceFeatures:
    """A service's ``features:`` list against the spec's views and its contract's fields.

    Each view's entity key must be a field callers send, and no feature may be one too
    (a caller sending a feature the store serves is how training and serving drift apart).
    """
    if not refs:
        return NO_FEATURES
    wanted: dict[str, list[str]] = {}
    for i, ref in enumerate(refs):
        view_name, feature = ref.split(".", 1)
        where = ("features", str(i))
        view = views.get(view_name)
        if view is None:
            known = ", ".join(sorted(views)) or "none"
            raise FeatureProblem(
                where, f"no feature view {view_name!r}; the spec declares: {known}"
            )
        if feature != "*" and feature not in view.features:
            raise FeatureProblem(
                where,
                f"view {view_name!r} has no feature {feature!r}; it has: "
                + ", ".join(view.features),
            )
        names = wanted.setdefault(view_name, [])
        for name in view.features if feature == "*" else [feature]:
            if name not in names:
                names.append(name)
    seen: dict[str, str] = {}
    uses: list[ViewUse] = []
    for view_name, names in wanted.items():
        view = views[view_name]
        if view.entity not in contract_fields:
            raise FeatureProblem(
                ("contract", "input"),
                f"callers must send {view.entity!r}, the key of feature view {view_name!r}: "
                "declare it in the contract",
            )
        for name in names:
            if name in contract_fields:
                raise FeatureProblem(
                    ("contract", "input", "properties", name),
                    f"{name!r} comes from feature view {view_name!r}; callers must not send it",
                )
            if name in seen:
                raise FeatureProblem(
                    ("features",), f"{name!r} is a feature of both {seen[name]!r} and {view_name!r}"
                )
            seen[name] = view_name
        uses.append(ViewUse(view, tuple(names)))
    return ServiceFeatures(tuple(uses))
