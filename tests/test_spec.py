from __future__ import annotations

from pathlib import Path

import pytest

from prodgate import spec
from prodgate.contract import Contract
from prodgate.exceptions import SpecError, UnknownServiceError

GOOD = """\
version: 1
services:
  claims-triage:
    owner: {name: Claims Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        required: [amount]
        additionalProperties: false
        properties:
          amount: {type: number, minimum: 0}
          note: {type: string, nullable: true}
    escalation:
      confidence_below: 0.7
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "prodgate.yaml"
    p.write_text(text)
    return p


def test_loads_a_good_spec(tmp_path: Path) -> None:
    s = spec.load(write(tmp_path, GOOD))
    svc = s.service("claims-triage")
    assert svc.owner.contact == "ops@example.com"
    assert svc.labels == ("routine", "adjuster")
    assert svc.escalation_below == 0.7
    assert svc.feature_names == ["amount", "note"]
    # nullable: true became a type union
    assert svc.contract["properties"]["note"]["type"] == ["string", "null"]


def test_patterns_are_the_gateways_regular_expressions(tmp_path: Path) -> None:
    # Unicode classes compile in the gateway's validator, though Python's re lacks them.
    text = GOOD.replace("note: {type: string,", r"note: {type: string, pattern: '^\p{L}+$',")
    svc = spec.load(write(tmp_path, text)).service("claims-triage")
    contract = Contract(svc.contract)
    assert contract.is_valid({"amount": 1, "note": "Zoë"})
    assert not contract.is_valid({"amount": 1, "note": "4 2"})


def test_unknown_service_names_the_known_ones(tmp_path: Path) -> None:
    s = spec.load(write(tmp_path, GOOD))
    with pytest.raises(UnknownServiceError, match="claims-triage"):
        s.service("nope")


@pytest.mark.parametrize(
    ("broken", "line", "where", "what"),
    [
        (GOOD.replace("kind: classifier", "kind: clasifier"), 5, "services.claims-triage.kind", ""),
        (
            GOOD.replace("contact: ops@example.com", "contact: 1"),
            4,
            "services.claims-triage.owner",
            "",
        ),
        (GOOD.replace("confidence_below: 0.7", "confidence_below: 7"), 16, "confidence_below", "7"),
        (
            GOOD.replace("    escalation:", "    escalatoin:"),
            15,
            "services.claims-triage.escalatoin",
            "unknown field",
        ),
        (
            GOOD.replace("type: number, minimum: 0", "type: nmber"),
            13,
            "contract.input.properties.amount.type",
            "nmber",
        ),
        (
            GOOD.replace("claims-triage:", "Claims_Triage:"),
            3,
            "services.Claims_Triage",
            "does not match",
        ),
        (
            # Python's re would take this; the gateway's validator does not.
            GOOD.replace("note: {type: string,", "note: {type: string, pattern: '^[A-Z]{,3}$',"),
            14,
            "contract.input.properties.note.pattern",
            "bad pattern",
        ),
    ],
)
def test_broken_spec_says_file_line_field(
    tmp_path: Path, broken: str, line: int, where: str, what: str
) -> None:
    path = write(tmp_path, broken)
    with pytest.raises(SpecError) as info:
        spec.load(path)
    message = info.value.detail
    assert message.startswith(f"{path}:{line}: "), message
    assert where in message
    assert what in message


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "  bad: [unclosed\n")
    with pytest.raises(SpecError, match=rf"^{path}:\d+: \(yaml\)"):
        spec.load(path)


def test_missing_file_says_how_to_start(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="prodgate init"):
        spec.load(tmp_path / "absent.yaml")


def test_regressor_with_labels_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("kind: classifier", "kind: regressor").replace(
        "    escalation:\n      confidence_below: 0.7\n", ""
    )
    with pytest.raises(SpecError, match="labels: a regressor has no labels"):
        spec.load(write(tmp_path, text))


def test_every_problem_is_kept(tmp_path: Path) -> None:
    text = GOOD.replace("kind: classifier", "kind: x").replace(
        "confidence_below: 0.7", "confidence_below: 2"
    )
    with pytest.raises(SpecError) as info:
        spec.load(write(tmp_path, text))
    assert "(+1 more)" in info.value.detail
    assert len(info.value.extra["problems"]) == 2


POLICY = (
    GOOD
    + """\
    business:
      positive: adjuster
      costs:
        false_negative: {rate: 0.1, of: amount}
        false_positive: 40
        escalation: 25
    cohorts:
      big: {where: "amount >= 20000 and note != 'x'"}
      notes: {by: note}
    gates:
      - recall >= 0.6 on big
      - business.cost_per_decision <= 120
      - no cohort accuracy more than 0.05 below overall
    approvals: {required: 2}
    rollout: {steps: [10, 50, 100], interval_s: 30, checks: {max_p95_latency_ratio: 2}}
"""
)


def test_policy_is_parsed(tmp_path: Path) -> None:
    svc = spec.load(write(tmp_path, POLICY)).service("claims-triage")
    p = svc.policy
    assert p.business is not None
    assert p.business.positive == "adjuster"
    assert p.business.cost("false_negative").rate == 0.1
    assert p.business.cost("true_negative").amount == 0
    assert [c.name for c in p.cohorts] == ["big", "notes"]
    assert [(g.metric, g.op, g.threshold, g.cohort) for g in p.gates[:2]] == [
        ("recall", ">=", 0.6, "big"),
        ("business.cost_per_decision", "<=", 120.0, None),
    ]
    assert p.gates[2].relative
    assert p.approvals.required == 2
    assert p.rollout.steps == (10, 50, 100)
    assert p.rollout.checks.max_p95_latency_ratio == 2


def test_cohort_condition_selects_rows() -> None:
    import pandas as pd

    from prodgate.spec import parse_condition

    frame = pd.DataFrame(
        {"amount": [10, 30000, 50000], "region": ["n", "s", "n"], "flag": [True, False, None]}
    )
    assert parse_condition("amount >= 20000 and region == 'n'").mask(frame).tolist() == [
        False,
        False,
        True,
    ]
    assert parse_condition("region in ['s'] or not flag").mask(frame).tolist() == [
        False,
        True,
        True,
    ]


@pytest.mark.parametrize(
    ("bad", "where", "what"),
    [
        ("__import__('os').system('x')", "cohorts.big.where", "not a condition"),
        ("amount >= 1 and colour == 'red'", "cohorts.big.where", "unknown field(s): colour"),
        ("amount >=", "cohorts.big.where", "cannot parse"),
    ],
)
def test_bad_cohort_conditions(tmp_path: Path, bad: str, where: str, what: str) -> None:
    text = POLICY.replace("amount >= 20000 and note != 'x'", bad.replace('"', "'"))
    with pytest.raises(SpecError) as info:
        spec.load(write(tmp_path, text))
    assert where in info.value.detail
    assert what in info.value.detail


@pytest.mark.parametrize(
    ("old", "new", "what"),
    [
        ("recall >= 0.6 on big", "recal >= 0.6", "unknown metric 'recal'"),
        ("recall >= 0.6 on big", "recall >= 0.6 on huge", "no cohort named 'huge'"),
        ("recall >= 0.6 on big", "recall is high", "cannot read gate"),
        ("steps: [10, 50, 100]", "steps: [50, 10]", "steps must increase and end at 100"),
        ("of: amount", "of: amt", "'amt' is not an input field"),
        ("positive: adjuster", "positive: maybe", "not one of the labels"),
        ("max_p95_latency_ratio: 2}", "confidence: 1}", "rollout.checks.confidence"),
    ],
)
def test_bad_policy_is_located(tmp_path: Path, old: str, new: str, what: str) -> None:
    path = write(tmp_path, POLICY.replace(old, new))
    with pytest.raises(SpecError) as info:
        spec.load(path)
    assert what in info.value.detail
    assert info.value.detail.startswith(f"{path}:")


def test_public_and_limits(tmp_path: Path) -> None:
    text = (
        GOOD + "    public: true\n    limits: {rpm: 600, rows_per_minute: 10000, concurrency: 8}\n"
    )
    svc = spec.load(write(tmp_path, text)).service("claims-triage")
    assert svc.public is True
    assert svc.limits == {"rpm": 600, "rows_per_minute": 10000, "concurrency": 8}
    plain = spec.load(write(tmp_path, GOOD)).service("claims-triage")
    assert (plain.public, plain.limits) == (False, {})


@pytest.mark.parametrize(
    ("limits", "what"),
    [("{rpm: 0}", "limits.rpm"), ("{rpm: 10000000000}", "limits.rpm"), ("{tpm: 5}", "tpm")],
)
def test_bad_limits_say_where(tmp_path: Path, limits: str, what: str) -> None:
    path = write(tmp_path, GOOD + f"    limits: {limits}\n")
    with pytest.raises(SpecError) as info:
        spec.load(path)
    assert info.value.detail.startswith(f"{path}:")
    assert what in info.value.detail
