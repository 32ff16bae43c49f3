"""Prompt versions: parsing, rendering, and the checks against the service at the door."""

from __future__ import annotations

import pytest

from prodgate.exceptions import ArtifactError
from prodgate.llm.prompt import check_prompt, parse_prompt
from prodgate.spec.llm import Price, Provider

PROMPT = """\
model: mock/large
messages:
  - {role: system, content: "You sort claimants' messages."}
  - {role: user, content: "Policy {{ policy_id }}: {{ message }}"}
parameters: {temperature: 0, max_tokens: 200}
response_format: json_schema
note: the first one
"""

PROVIDERS = {
    "mock": Provider("mock", "http://x/v1", models={"large": Price(5, 15), "small": Price(1, 2)})
}
OUTPUT = {"type": "object", "properties": {"category": {"enum": ["a", "b"]}}}


def test_parse_and_render() -> None:
    prompt = parse_prompt(PROMPT, "p.yaml")
    assert str(prompt.model) == "mock/large"
    assert prompt.variables == {"policy_id", "message"}
    assert prompt.parameters == {"temperature": 0, "max_tokens": 200}
    assert prompt.render({"policy_id": "P-1", "message": "where is my money?"}) == [
        {"role": "system", "content": "You sort claimants' messages."},
        {"role": "user", "content": "Policy P-1: where is my money?"},
    ]
    # The leading messages without variables: what a chat request is sent after.
    assert prompt.fixed_messages == [{"role": "system", "content": "You sort claimants' messages."}]


def test_templates_are_sandboxed_and_strict() -> None:
    prompt = parse_prompt(
        "model: mock/large\nmessages: [{role: user, content: '{{ x.__class__ }}'}]", "p"
    )
    with pytest.raises(Exception, match=r"__class__|unsafe|undefined"):
        prompt.render({"x": 1})
    strict = parse_prompt("model: mock/large\nmessages: [{role: user, content: '{{ y }}'}]", "p")
    with pytest.raises(Exception, match="'y' is undefined"):
        strict.render({})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a list", "a mapping with model and messages"),
        ("model: large\nmessages: [{role: user, content: hi}]", "provider/model"),
        ("model: mock/large\nmessages: []", "at least one message"),
        ("model: mock/large\nmessages: [{role: robot, content: hi}]", "messages.0.role"),
        ("model: mock/large\nmessages: [{role: user, content: 3}]", "messages.0.content: text"),
        ("model: mock/large\nmessages: [{role: user, content: '{{ x '}]", "messages.0.content"),
        (
            "model: mock/large\nmessages: [{role: user, content: hi}]\nparameters: {temp: 1}",
            "unknown temp",
        ),
        (
            "model: mock/large\nmessages: [{role: user, content: hi}]\nparameters: {max_tokens: 0}",
            "max_tokens: a whole number",
        ),
        (
            "model: mock/large\nmessages: [{role: user, content: hi}]\nresponse_format: xml",
            "response_format",
        ),
        ("model: mock/large\nmessages: [{role: user, content: hi}]\ncolour: red", "colour"),
        ("model: [", "not YAML"),
    ],
)
def test_bad_prompts_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ArtifactError, match=message) as info:
        parse_prompt(text, "prompt.yaml")
    assert info.value.detail.startswith("prompt.yaml: ")


def _check(text: str, fields: list[str], output: dict | None = OUTPUT) -> None:
    check_prompt(
        parse_prompt(text, "p.yaml"),
        "p.yaml",
        providers=PROVIDERS,
        fields=fields,
        output_contract=output,
        example=dict.fromkeys(fields, "x"),
    )


def test_check_against_the_service() -> None:
    _check(PROMPT, ["policy_id", "message"])
    with pytest.raises(ArtifactError, match="does not declare"):
        _check(PROMPT, ["message"])
    with pytest.raises(ArtifactError, match="no model 'huge'"):
        _check(PROMPT.replace("mock/large", "mock/huge"), ["policy_id", "message"])
    with pytest.raises(ArtifactError, match="unknown provider 'other'"):
        _check(PROMPT + "fallbacks: [other/x]\n", ["policy_id", "message"])
    with pytest.raises(ArtifactError, match=r"needs the service.s contract\.output"):
        _check(PROMPT, ["policy_id", "message"], output=None)
