"""Feedback through the library (``feedback.submit``), on SQLite and PostgreSQL: labels
follow the same rule as ``evaluate``'s truth, and what is stored is the declared label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prodgate import spec as spec_module
from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.evaluation.scoring import truth_labels
from prodgate.exceptions import ContractViolationError, UsageError
from prodgate.monitor import feedback
from prodgate.spec import Spec
from prodgate.store.engine import Store, now_us

_SERVICE = """\
  {name}:
    owner: {{name: Ops, contact: ops@example.com}}
    kind: {kind}
{labels}    contract:
      input: {{type: object, properties: {{x: {{type: number}}}}}}
"""

#: One service per way the spec lets labels be written (strings, booleans, integers).
LABELS = {
    "claims": "[routine, adjuster]",
    "flag": "[false, true]",
    "bit": "[0, 1]",
    "text01": '["0", "1"]',
    "grade": "[1, 2]",  # integers that are not their positions
    "free": None,  # no labels declared
}
SPEC = (
    "services:\n"
    + "".join(
        _SERVICE.format(
            name=name, kind="classifier", labels=f"    labels: {labels}\n" if labels else ""
        )
        for name, labels in LABELS.items()
    )
    + _SERVICE.format(name="price", kind="regressor", labels="")
)


@pytest.fixture
def spec() -> Spec:
    return spec_module.parse(SPEC, Path("prodgate.yaml"))


def decision(store: Store, service: str) -> str:
    """An accepted decision of *service* in the audit log; its id."""
    record = Record(
        kind=KIND_INFERENCE,
        action="predict",
        ts_us=now_us(),
        payload={"input": {"x": 1.0}, "output": {"prediction": "whatever"}},
        service=service,
        version=1,
        status=200,
        decision="auto",
        latency_ms=1.0,
    )
    with store.write() as conn:
        log.append(store, conn, [record])
    return record.id


def submit(store: Store, spec: Spec, service: str, label: Any) -> Any:
    return feedback.submit(store, spec, decision(store, service), {"label": label})["truth"]


ACCEPTED = [
    # service, label sent, label stored
    ("claims", "adjuster", "adjuster"),
    ("claims", 1, "adjuster"),
    ("claims", 0, "routine"),
    ("claims", True, "adjuster"),
    ("claims", False, "routine"),
    ("claims", 1.0, "adjuster"),
    ("flag", True, "True"),
    ("flag", 1, "True"),
    ("flag", 0, "False"),
    ("flag", "False", "False"),
    ("bit", 1, "1"),
    ("bit", True, "1"),
    ("bit", "0", "0"),
    ("text01", 1, "1"),
    ("text01", False, "0"),
    ("grade", 1, "1"),
    ("grade", 2, "2"),
    ("free", "anything", "anything"),
    ("free", 3, "3"),
]


def test_feedback_labels_follow_the_rule_evaluate_reads_truth_by(store: Store, spec: Spec) -> None:
    for service, sent, stored in ACCEPTED:
        assert submit(store, spec, service, sent) == stored, (service, sent)
        # The same value in a holdout's label column means the same label.
        assert truth_labels([sent], spec.service(service)) == [stored], (service, sent)


REFUSED = [
    # service, label sent, what the 422 says
    ("claims", 2, "must be one of the labels ['routine', 'adjuster'] (or 0..1 for them in order)"),
    ("claims", "teapot", "must be one of the labels ['routine', 'adjuster']"),
    ("claims", 1.5, "must be one of the labels"),
    ("claims", None, "must be one of the labels"),
    ("claims", ["adjuster"], "must be one of the labels"),
    ("flag", "true", "must be one of the labels ['False', 'True']"),
    ("bit", 2, "must be one of the labels ['0', '1'] (or 0..1 for them in order)"),
    # 0 is no position here: with integer labels it would mean label 1 as well as 1 does
    ("grade", 0, "must be one of the labels ['1', '2']"),
    ("free", {"a": 1}, "must be a label: text, an integer or a boolean"),
]


def test_feedback_that_is_no_label_is_refused_listing_the_labels(store: Store, spec: Spec) -> None:
    for service, sent, message in REFUSED:
        with pytest.raises(ContractViolationError) as caught:
            submit(store, spec, service, sent)
        [violation] = caught.value.violations
        assert violation.path == "/label"
        assert violation.message.startswith(message), (service, sent, violation.message)
        if service == "grade":
            assert "in order" not in violation.message
        if sent is not None:
            with pytest.raises(UsageError, match="true labels"):
                truth_labels([sent], spec.service(service))  # evaluate refuses it too


def test_a_regressor_takes_a_number(store: Store, spec: Spec) -> None:
    assert submit(store, spec, "price", 3) == 3.0
    with pytest.raises(ContractViolationError) as caught:
        feedback.submit(store, spec, decision(store, "price"), {"value": "3"})
    assert caught.value.violations[0].message == "must be a number"
