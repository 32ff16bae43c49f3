"""``monitor:`` in prodgate.yaml: the window, drift overrides, alert rules parsed once
(their canonical figure keys), webhooks, and mistakes reported at file:line with the
field."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodgate.exceptions import SpecError
from prodgate.spec import loading
from prodgate.spec.monitor import DEFAULT_WINDOW_S, OFF, parse_rule

BASE = """\
services:
  claims:
    owner: {name: Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        properties:
          claim_amount: {type: number}
          customer_age: {type: [integer, "null"]}
          claim_type: {type: string, enum: [auto, home]}
    business:
      positive: adjuster
      costs: {false_negative: 100, false_positive: 10}
    cohorts:
      high_value: {where: "claim_amount >= 20000"}
      kind: {by: claim_type}
"""

FULL = (
    BASE
    + """\
    monitor:
      window: 5m
      drift:
        share: 0.4
        columns: {claim_amount: {method: psi, threshold: 0.2}}
      alerts:
        - name: inputs-drifting
          when: drift share > 0.3 over 1h
        - when: null_rate(customer_age) > 0.10
        - when: estimated accuracy < 0.90 on high_value
        - when: contract violations > 1%
          for: 2
          clear: 0.005
        - when: drifted(prediction) >= 1 on kind=auto
      webhooks: [http://127.0.0.1:9/hook]
"""
)


def _load(text: str, tmp_path: Path) -> loading.Spec:
    path = tmp_path / "prodgate.yaml"
    path.write_text(text)
    return loading.load(path)


def _error(text: str, tmp_path: Path) -> str:
    with pytest.raises(SpecError) as info:
        _load(text, tmp_path)
    return str(info.value)


def test_a_service_without_a_monitor_section_has_the_defaults(tmp_path: Path) -> None:
    monitor = _load(BASE, tmp_path).service("claims").monitor
    assert monitor == OFF
    assert monitor.window_s == DEFAULT_WINDOW_S == 300
    assert monitor.alerts == ()


def test_the_full_section_and_the_rules_canonical_keys(tmp_path: Path) -> None:
    monitor = _load(FULL, tmp_path).service("claims").monitor
    assert monitor.window_s == 300
    assert monitor.drift_share == 0.4
    assert monitor.drift_columns["claim_amount"].method == "psi"
    assert monitor.drift_columns["claim_amount"].threshold == 0.2
    assert monitor.webhooks == ("http://127.0.0.1:9/hook",)
    drifting, nulls, estimate, violations, prediction = monitor.alerts
    assert (drifting.name, drifting.key, drifting.op, drifting.threshold) == (
        "inputs-drifting",
        "drift share",
        ">",
        0.3,
    )
    assert drifting.over_s == 3600
    assert nulls.name == "null_rate(customer_age) > 0.10"  # named by its text
    assert nulls.key == "null_rate(customer_age)"
    assert nulls.over_s is None
    assert estimate.key == "estimated accuracy on high_value"
    assert violations.key == "violation_rate"
    assert violations.threshold == pytest.approx(0.01)
    assert (violations.for_, violations.clear, violations.resolve_at) == (2, 0.005, 0.005)
    assert prediction.key == "drifted(prediction) on kind=auto"
    assert monitor.spans() == [300, 3600]


def test_hysteresis_sides_of_a_rule() -> None:
    rule = parse_rule("error_rate > 0.1")
    assert rule.breached(0.2)
    assert not rule.breached(0.1)
    assert rule.cleared(0.1)
    assert not rule.cleared(0.11)
    low = parse_rule("estimated accuracy < 90%")
    assert low.threshold == pytest.approx(0.9)
    assert low.breached(0.8)
    assert low.cleared(0.95)


@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        ("null_rate(age) > 0.1", "when", "unknown column 'age'"),
        ("null_rate > 0.1", "when", "null_rate needs a column"),
        ("latency > 3", "when", "unknown metric 'latency'"),
        ("error_rate(claim_amount) > 0.1", "when", "error_rate takes no column"),
        ("error_rate = 0.1", "when", "unsupported operator '='"),
        ("error_rate above 0.1", "when", "cannot read 'error_rate above 0.1'"),
        ("estimated accuracy < 0.9 on gold", "when", "no cohort named 'gold'"),
        ("drift share > 0.3 over 1y", "when", "over '1y'"),
    ],
)
def test_a_bad_rule_is_reported_at_its_line_and_field(
    tmp_path: Path, rule: str, field: str, message: str
) -> None:
    text = BASE + f"    monitor:\n      alerts:\n        - when: {rule}\n"
    error = _error(text, tmp_path)
    assert error.startswith(f"{tmp_path / 'prodgate.yaml'}:21: services.claims.monitor.alerts.0.")
    assert f"alerts.0.{field}: " in error
    assert message in error


def test_other_mistakes_name_their_field(tmp_path: Path) -> None:
    def section(body: str) -> str:
        return BASE + "    monitor:\n" + body

    error = _error(section("      window: 0.5s\n"), tmp_path)
    assert ":20: services.claims.monitor.window: the window must be at least 1s" in error
    error = _error(section("      window: soon\n"), tmp_path)
    assert "services.claims.monitor.window: window 'soon': write a number and a unit" in error
    error = _error(section("      drift: {columns: {age: {method: psi}}}\n"), tmp_path)
    assert "services.claims.monitor.drift.columns.age: unknown column 'age'" in error
    error = _error(section("      drift: {columns: {claim_amount: {method: magic}}}\n"), tmp_path)
    assert "services.claims.monitor.drift.columns.claim_amount.method" in error
    error = _error(
        section("      alerts:\n        - when: error_rate > 0.1\n          clear: 0.2\n"), tmp_path
    )
    assert ":22: services.claims.monitor.alerts.0.clear: clear 0.2 must be at or below" in error
    error = _error(
        section("      alerts:\n" + "        - {when: error_rate > 0.1}\n" * 2),
        tmp_path,
    )
    assert ":22: services.claims.monitor.alerts.1.when: another rule is named" in error
    error = _error(section("      alerts:\n        - {when: error_rate > 0.1, for: 0}\n"), tmp_path)
    assert "services.claims.monitor.alerts.0.for" in error
    error = _error(section("      webhooks: [ftp://x]\n"), tmp_path)
    assert ":20: services.claims.monitor.webhooks.0: " in error
    error = _error(section("      colour: red\n"), tmp_path)
    assert "services.claims.monitor.colour: unknown field(s): colour" in error


def test_metrics_a_kind_or_a_policy_lacks_are_refused(tmp_path: Path) -> None:
    regressor = BASE.replace("kind: classifier", "kind: regressor").replace(
        "    labels: [routine, adjuster]\n", ""
    )
    regressor = regressor.split("    business:")[0]
    rules = "    monitor:\n      alerts:\n        - when: "
    error = _error(regressor + rules + "accuracy < 0.9\n", tmp_path)
    assert "accuracy needs a classifier or an llm service" in error
    error = _error(
        regressor + "    monitor:\n      alerts:\n        - when: estimated accuracy < 0.9\n",
        tmp_path,
    )
    assert "estimated accuracy needs a classifier" in error
    no_business = BASE.split("    business:")[0]
    error = _error(no_business + rules + "cost > 50\n", tmp_path)
    assert "cost needs the service's 'business' section" in error
    # a regressor's prediction is a column; its confidence is not
    ok = _load(
        regressor + "    monitor:\n      alerts:\n        - when: drift(prediction) > 0.2\n",
        tmp_path,
    )
    assert ok.service("claims").monitor.alerts[0].key == "drift(prediction)"
    error = _error(
        regressor + "    monitor:\n      alerts:\n        - when: drift(confidence) > 0.2\n",
        tmp_path,
    )
    assert "unknown column 'confidence'" in error
