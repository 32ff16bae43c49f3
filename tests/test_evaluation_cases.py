"""Test cases of a prompt version: JSON Lines read, checked, and refused line by line."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from prodgate import spec as spec_module
from prodgate.evaluation.cases import input_frame, read_cases
from prodgate.exceptions import UsageError
from prodgate.spec import ServiceSpec

SPEC = """\
providers:
  mock:
    base_url: http://127.0.0.1:9/v1
    models: {large: {input: 2, output: 8}}
services:
  letters:
    owner: {name: Claims Ops, contact: ops@example.com}
    kind: llm
    labels: [complaint, new_claim, status_question, fraud_signal]
    contract:
      input:
        type: object
        required: [message]
        properties:
          message: {type: string}
          amount: {type: number}
"""


@pytest.fixture
def letters(tmp_path: Path) -> ServiceSpec:
    path = tmp_path / "prodgate.yaml"
    path.write_text(SPEC)
    return spec_module.load(path).service("letters")


def write(tmp_path: Path, *lines: str, name: str = "cases.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cases_are_read_with_their_checks(letters: ServiceSpec, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"inputs": {"message": "My car was stolen", "amount": 12000}, "label": "new_claim",'
        ' "expected": "new_claim", "contains": "claim", "regex": "^new", "id": "theft"}',
        "",  # blank lines are skipped, and line numbers still count them
        '{"inputs": {"message": "Where is it?"}, "label": 2, "contains": ["a", "b"]}',
        '{"inputs": {"message": "x"}, "expected": {"category": "complaint"}}',
    )
    cases = read_cases(letters, path)
    assert len(cases) == 3
    first, second, third = cases.cases
    assert (first.line, second.line, third.line) == (1, 3, 4)
    assert first.inputs == {"message": "My car was stolen", "amount": 12000}
    assert (first.label, first.expected, first.contains, first.id) == (
        "new_claim",
        "new_claim",
        ("claim",),
        "theft",
    )
    assert first.regex is not None
    assert first.regex.search("new_claim")
    assert second.label == "status_question"  # 0..k-1 stand for the labels in order
    assert second.contains == ("a", "b")
    assert third.expected == {"category": "complaint"}
    assert cases.where(second) == f"{path}:3"
    fp = cases.fingerprint
    assert fp["file"] == "cases.jsonl"
    assert fp["rows"] == 3
    assert len(fp["sha256"]) == 64
    assert fp["columns"] == {"amount": "input", "message": "input"}
    assert fp["checks"] == {"expected": 2, "label": 2, "contains": 2, "regex": 1}


def test_cohort_frame_has_every_input_field(letters: ServiceSpec, tmp_path: Path) -> None:
    cases = read_cases(
        letters,
        write(
            tmp_path, '{"inputs": {"message": "a", "amount": 5}}', '{"inputs": {"message": "b"}}'
        ),
    )
    frame = input_frame(letters, cases.cases)
    assert list(frame.columns) == ["message", "amount"]
    assert frame["amount"].tolist()[0] == 5
    assert frame["amount"].isna().tolist() == [False, True]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"cases.jsonl:2: not JSON"),
        ("[1, 2]", r"cases.jsonl:2: a case is a JSON object"),
        ('{"inputs": {"message": "a"}, "expect": "b"}', r":2: unknown field\(s\) expect"),
        ('{"message": "a"}', r":2: unknown field\(s\) message; .* inside inputs"),
        ('{"inputs": "a"}', r":2: inputs: a JSON object"),
        ('{"expected": "a"}', r":2: inputs: a JSON object"),
        ('{"inputs": {"amount": 3}}', r":2: inputs: lacks required field\(s\) message"),
        ('{"inputs": {"message": "a"}, "label": "spam"}', r":2: label: 'spam' is not a label"),
        ('{"inputs": {"message": "a"}, "label": 7}', r":2: label: 7 is not a label .*0\.\.3"),
        ('{"inputs": {"message": "a"}, "label": [1]}', r":2: label: \[1\] is not a label"),
        ('{"inputs": {"message": "a"}, "expected": 3}', r":2: expected: text, or a JSON"),
        ('{"inputs": {"message": "a"}, "contains": []}', r":2: contains: a text, or a list"),
        ('{"inputs": {"message": "a"}, "contains": ["", "x"]}', r":2: contains: "),
        ('{"inputs": {"message": "a"}, "regex": "(unclosed"}', r":2: regex: '\(unclosed' is not"),
        ('{"inputs": {"message": "a"}, "regex": 5}', r":2: regex: a regular expression"),
        ('{"inputs": {"message": "a"}, "id": [1]}', r":2: id: text or a number"),
    ],
)
def test_a_bad_line_is_one_error_naming_it(
    letters: ServiceSpec, tmp_path: Path, line: str, message: str
) -> None:
    path = write(tmp_path, '{"inputs": {"message": "fine"}}', line)
    with pytest.raises(UsageError, match=message) as info:
        read_cases(letters, path)
    assert "\n" not in info.value.detail
    assert "Traceback" not in info.value.detail


def test_files_that_hold_no_cases(letters: ServiceSpec, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such cases file"):
        read_cases(letters, tmp_path / "missing.jsonl")
    with pytest.raises(UsageError, match="no cases; write one JSON object a line"):
        read_cases(letters, write(tmp_path, "", "  "))
    with pytest.raises(UsageError, match=r"JSON Lines \(\.jsonl\)"):
        read_cases(letters, write(tmp_path, "a,b", name="cases.csv"))


def test_labels_of_a_service_without_declared_labels_are_text(tmp_path: Path) -> None:
    path = tmp_path / "prodgate.yaml"
    path.write_text(
        SPEC.replace("    labels: [complaint, new_claim, status_question, fraud_signal]\n", "")
    )
    service = spec_module.load(path).service("letters")
    line = orjson.dumps({"inputs": {"message": "a"}, "label": True}).decode()
    (case,) = read_cases(service, write(tmp_path, line)).cases
    assert case.label == "True"
