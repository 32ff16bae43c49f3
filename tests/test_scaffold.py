"""``prodgate init --data``: a bounded input contract drafted from training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from prodgate import scaffold
from prodgate import spec as spec_module
from prodgate.cli.main import cli
from prodgate.contract import Contract
from prodgate.evaluation.evaluate import input_rows
from prodgate.examples.claims_triage.generate import FEATURES, LABEL, generate
from prodgate.settings import Settings


def init(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--home", settings.home, "--config", settings.config, "init", *args]
    )


def test_the_claims_triage_contract_takes_every_training_row_and_bounds_numbers(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    # The training data as the model reads it (the policy's features joined, no key).
    frame = generate(4000, seed=3)[[*FEATURES, LABEL]]
    data = tmp_path / "train.parquet"
    frame.to_parquet(data, index=False)
    r = init(sqlite_settings, "claims-triage", "--data", str(data), "--label", LABEL)
    assert r.exit_code == 0, r.output
    assert "8 input fields from 4000 rows" in r.output

    service = spec_module.load(sqlite_settings.config).service("claims-triage")
    assert service.kind == "classifier"
    assert service.labels == ("0", "1")
    assert service.feature_names == FEATURES
    contract = service.contract
    assert contract["additionalProperties"] is False
    assert contract["required"] == [f for f in FEATURES if f != "customer_age"]
    props = contract["properties"]
    assert props["claim_type"]["enum"] == sorted(frame["claim_type"].unique())
    assert props["police_report"] == {"type": "boolean"}
    assert props["customer_age"]["type"] == ["integer", "null"]
    assert props["claim_amount"]["minimum"] == 0
    assert frame["claim_amount"].max() < props["claim_amount"]["maximum"]
    assert props["prior_claims"]["type"] == "integer"

    checked = Contract(contract)
    rows = input_rows(frame, service)
    assert all(checked.is_valid(row) for row in rows)
    assert any(row["customer_age"] is None for row in rows)
    for bad in ({"claim_amount": 1.79e308}, {"claim_amount": -1.0}, {"claim_type": "cyber"}):
        assert not checked.is_valid({**rows[0], **bad}), bad
    assert not checked.is_valid({**rows[0], "unknown": 1})
    # The governance drafted beside it is in force as written.
    policy = service.policy
    assert policy.business is not None
    assert policy.business.positive == "1"  # the rarer label
    assert [c.name for c in policy.cohorts] == ["high_claim_amount", "claim_type"]
    assert [g.text for g in policy.gates][1] == "recall >= 0.8 on high_claim_amount"


def test_csv_types_nulls_enums_and_the_label_named_label(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "score": rng.normal(size=n),
            "visits": rng.integers(3, 40, size=n),
            "member": rng.random(n) > 0.5,
            "city": rng.choice(["Oslo", "Bergen", "yes"], size=n),  # 'yes' stays a string
            "name": [f"customer {i}" for i in range(n)],
            "referrer": np.where(rng.random(n) > 0.8, None, rng.choice(["ads", "friend"], n)),
            "label": rng.choice(["churn", "stay"], size=n, p=[0.2, 0.8]),
        }
    )
    data = tmp_path / "train.csv"
    frame.to_csv(data, index=False)
    r = init(sqlite_settings, "churn", "--data", str(data))
    assert r.exit_code == 0, r.output
    service = spec_module.load(sqlite_settings.config).service("churn")
    assert service.labels == ("churn", "stay")
    assert service.policy.business is not None
    assert service.policy.business.positive == "churn"
    props = service.contract["properties"]
    assert "label" not in props
    assert props["score"]["type"] == "number"
    assert props["score"]["minimum"] < frame["score"].min() < 0
    assert props["visits"] == {"type": "integer", "minimum": 0, "maximum": 43}
    assert props["member"] == {"type": "boolean"}
    assert props["city"] == {"type": "string", "enum": ["Bergen", "Oslo", "yes"]}
    assert props["name"] == {"type": "string", "maxLength": 2 * len("customer 199")}
    assert props["referrer"] == {"type": ["string", "null"], "enum": ["ads", "friend", None]}
    assert "referrer" not in service.contract["required"]
    checked = Contract(service.contract)
    read_back = pd.read_csv(data)
    assert all(checked.is_valid(row) for row in input_rows(read_back, service))


def test_a_label_with_many_values_makes_a_regressor(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"size": rng.uniform(20, 200, 300), "rooms": rng.integers(1, 6, 300)})
    frame["target"] = frame["size"] * 3000 + rng.normal(0, 1000, 300)
    data = tmp_path / "houses.parquet"
    frame.to_parquet(data, index=False)
    r = init(sqlite_settings, "prices", "--data", str(data))
    assert r.exit_code == 0, r.output
    assert "a regressor of target" in r.output
    service = spec_module.load(sqlite_settings.config).service("prices")
    assert service.kind == "regressor"
    assert service.labels is None
    assert service.feature_names == ["size", "rooms"]
    assert [g.text for g in service.policy.gates] == ["r2 >= 0.5"]


def test_without_a_label_column_the_kind_is_left_to_the_user(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"a": 1, "b": "x"}\n{"a": 2, "b": null}\n')
    r = init(sqlite_settings, "raw", "--data", str(data))
    assert r.exit_code == 0, r.output
    assert "no label column" in r.output
    service = spec_module.load(sqlite_settings.config).service("raw")
    assert service.labels == ("negative", "positive")
    assert service.contract["required"] == ["a"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--label", "y"], "--label names a column of --data; pass --data too"),
        (["--data", "absent.csv"], "absent.csv: no such data file"),
        (["--data", "{data}", "--label", "nope"], "no column 'nope' in train.csv; it has: a, b"),
    ],
)
def test_mistakes_are_one_line(
    sqlite_settings: Settings, tmp_path: Path, args: list[str], needle: str
) -> None:
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    r = init(sqlite_settings, "svc", *[a.format(data=data) for a in args])
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines() == [f"prodgate: error: {needle}"]


@pytest.mark.parametrize(
    ("low", "high", "integer", "bounds"),
    [
        (0, 100, True, (0, 110)),  # non-negative: never below 0
        (1990, 2020, True, (1987, 2023)),  # a tenth of the range each side
        (-5.0, 5.0, False, (-6, 6)),
        (0.12, 0.98, False, (0.03, 1.07)),  # rounded outwards to the margin's magnitude
        (7.0, 7.0, False, (6.3, 7.7)),  # constant: a tenth of the value
        (0, 0, True, (0, 1)),
    ],
)
def test_number_bounds(low: float, high: float, integer: bool, bounds: tuple[float, float]) -> None:
    assert scaffold._bounds(low, high, integer) == pytest.approx(bounds)
