"""Feature views in prodgate.yaml: what loads, and each mistake named at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodgate.exceptions import SpecError
from prodgate.spec import parse

BASE = """\
features:
  policy:
    entity: policy_id
    source: {source}
    ttl: {ttl}
    features:
      age: {{type: integer, default: 0}}
      prior: {{type: integer}}
      note: {{type: [string, "null"], default: null}}
services:
  s:
    owner: {{name: Ops, contact: ops@example.com}}
    kind: classifier
    labels: [a, b]
    contract:
      input:
        type: object
        properties:
          x: {{type: number}}
          {extra}
        required: [x]
    features: {uses}
    cohorts:
      young: {{where: age < 3}}
"""


def spec(
    *,
    source: str = "{path: p.parquet}",
    ttl: str = "30d",
    extra: str = "policy_id: {type: string}",
    uses: str = "[policy.*]",
):
    text = BASE.format(source=source, ttl=ttl, extra=extra, uses=uses)
    return parse(text, Path("prodgate.yaml"))


def test_a_view_and_a_service_that_reads_it() -> None:
    loaded = spec()
    view = loaded.views["policy"]
    assert view.ttl_s == 30 * 86400
    assert view.source.kind == "file"
    assert view.source.timestamp == "event_timestamp"
    assert view.features["age"].has_default
    assert view.features["age"].default == 0
    assert not view.features["prior"].has_default
    assert view.features["note"].has_default
    assert view.features["note"].default is None
    service = loaded.services["s"]
    assert service.features.names == ["age", "prior", "note"]
    assert service.features.entities == ["policy_id"]
    # The model's inputs: what callers send, then the features; the contract is the caller's.
    assert service.feature_names == ["x", "policy_id", "age", "prior", "note"]
    assert list(service.contract["properties"]) == ["x", "policy_id"]
    assert service.model_contract["required"] == ["x", "age", "prior", "note"]
    # A cohort may be defined on a feature.
    assert [c.name for c in service.policy.cohorts] == ["young"]


def test_one_feature_and_sources() -> None:
    assert spec(uses="[policy.prior, policy.age]").services["s"].features.names == ["prior", "age"]
    # A cohort on a feature the service does not read is an unknown field.
    with pytest.raises(SpecError, match="unknown field"):
        spec(uses="[policy.prior]")
    sql = spec(source="{query: 'SELECT * FROM p', url: 'sqlite:///x.db', timestamp: at}")
    assert sql.views["policy"].source.kind == "sql"
    assert sql.views["policy"].source.timestamp == "at"
    feast = spec(source="{feast: repo}")
    assert feast.views["policy"].source.kind == "feast"
    assert feast.views["policy"].source.feast_view == "policy"


@pytest.mark.parametrize(
    ("kwargs", "where", "message"),
    [
        ({"uses": "[nope.age]"}, ":22: services.s.features.0", "no feature view 'nope'"),
        ({"uses": "[policy.height]"}, ":22: services.s.features.0", "has no feature 'height'"),
        ({"extra": "z: {type: string}"}, ": services.s.contract.input", "must send 'policy_id'"),
        (
            {"extra": "policy_id: {type: string}\n          age: {type: integer}"},
            ": services.s.contract.input.properties.age",
            "callers must not send it",
        ),
        ({"ttl": "soon"}, ":5: features.policy.ttl", "write a number and a unit"),
        ({"source": "{path: a, query: b}"}, ": features.policy.source", "exactly one of"),
        ({"source": "{path: a, url: b}"}, ": features.policy.source.url", "url goes with query"),
        ({"source": "{path: a, view: b}"}, ": features.policy.source.view", "view goes with feast"),
    ],
)
def test_mistakes_are_named(kwargs: dict[str, str], where: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec(**kwargs)
    assert where in caught.value.detail
    assert message in caught.value.detail


def test_an_llm_service_reads_no_features() -> None:
    text = BASE.format(
        source="{path: p.parquet}", ttl="30d", extra="policy_id: {type: string}", uses="[policy.*]"
    ).replace("kind: classifier\n    labels: [a, b]", "kind: llm")
    text = text.replace("    cohorts:\n      young: {where: age < 3}\n", "")
    with pytest.raises(SpecError, match="a service of kind llm has none"):
        parse(text, Path("prodgate.yaml"))
