"""``guard:`` in prodgate.yaml: shorthand and full rules, the default rails of an LLM
service, ``off``, and mistakes reported at file:line with the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_support import llm_spec
from prodgate.exceptions import SpecError
from prodgate.spec import loading
from prodgate.spec.guard import DEFAULT_LLM, OFF

CLASSIC = """\
services:
  claims:
    owner: {name: Ops, contact: ops@example.com}
    kind: classifier
    labels: [a, b]
    contract:
      input:
        type: object
        properties:
          note: {type: string}
          region: {type: string, enum: [north, south]}
          amount: {type: number}
"""


def _load(text: str, tmp_path: Path) -> loading.Spec:
    path = tmp_path / "prodgate.yaml"
    path.write_text(text)
    return loading.load(path)


def test_an_llm_service_without_a_guard_gets_the_default_rails(tmp_path: Path) -> None:
    spec = _load(llm_spec("http://127.0.0.1:9/v1"), tmp_path)
    assert spec.service("letter").guard == DEFAULT_LLM
    assert {r.detector: r.action for r in DEFAULT_LLM.input} == {
        "injection": "block",
        "secrets": "redact",
        "pii": "log",
    }


def test_off_turns_every_rail_off_and_a_classic_service_has_none(tmp_path: Path) -> None:
    spec = _load(llm_spec("http://127.0.0.1:9/v1", extra="    guard: off\n"), tmp_path)
    assert spec.service("letter").guard == OFF
    assert _load(CLASSIC, tmp_path).service("claims").guard == OFF


def test_rules_in_shorthand_and_in_full(tmp_path: Path) -> None:
    extra = """\
    guard:
      input:
        injection: {action: block, threshold: 0.8}
        pii: {action: redact, kinds: [card, iban]}
      output:
        pii: redact
        banned: {action: escalate, terms: [guaranteed payout], topics: {legal: [sue you]}}
        schema: log
      hold_back: 128
"""
    guard = _load(llm_spec("http://127.0.0.1:9/v1", extra=extra), tmp_path).service("letter").guard
    injection, pii = guard.input
    assert (injection.action, injection.threshold) == ("block", 0.8)
    assert pii.kinds == ("card", "iban")
    assert not pii.new_only  # on the way in, everything found counts
    out_pii, banned, schema = guard.output
    assert out_pii.new_only  # on the way out: only what the question did not hold
    assert banned.options == {"terms": ["guaranteed payout"], "topics": {"legal": ["sue you"]}}
    assert schema.action == "log"
    assert guard.hold_back == 128


def test_a_classic_service_guards_its_free_text_fields(tmp_path: Path) -> None:
    text = CLASSIC + "    guard:\n      input:\n        pii: redact\n      fields: [note]\n"
    guard = _load(text, tmp_path).service("claims").guard
    assert guard.fields == ("note",)


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ("    guard:\n      input:\n        pii: shred\n", ["services.letter.guard.input.pii"]),
        ("    guard:\n      input:\n        leak: block\n", ["guard.input", "leak"]),
        ("    guard:\n      output:\n        banned: block\n", ["banned", "terms"]),
        ("    guard:\n      output:\n        onnx: {action: block}\n", ["onnx", "path"]),
        ("    guard:\n      input:\n        magic: block\n", ["magic"]),
        ("    guard:\n      fields: [message]\n", ["fields", "llm"]),
        (
            "    guard:\n      input:\n        pii: {action: log, kinds: [card, shoe]}\n",
            ["guard.input.pii.kinds", "unknown kind shoe", "iban"],
        ),
    ],
)
def test_mistakes_name_the_file_line_and_field(
    tmp_path: Path, extra: str, needles: list[str]
) -> None:
    with pytest.raises(SpecError) as caught:
        _load(llm_spec("http://127.0.0.1:9/v1", extra=extra), tmp_path)
    message = str(caught.value)
    assert "prodgate.yaml:" in message
    for needle in needles:
        assert needle in message, message


def test_fields_must_be_free_text_fields_of_the_contract(tmp_path: Path) -> None:
    text = CLASSIC + "    guard:\n      input:\n        pii: redact\n      fields: [region]\n"
    with pytest.raises(SpecError, match="region is not a string field") as caught:
        _load(text, tmp_path)
    assert "guard.fields" in str(caught.value)
    leak = CLASSIC + "    guard:\n      output:\n        leak: block\n"
    with pytest.raises(SpecError, match="leak rails need a prompt"):
        _load(leak, tmp_path)
