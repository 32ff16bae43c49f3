"""A prompt version: messages with variables, the model, its parameters, the output.

What ``prodgate register SERVICE prompt.yaml`` stores for a service of kind ``llm``,
governed exactly like a model version (hashed, immutable, numbered, evaluated,
approved, canaried, rolled back)::

    model: openai/gpt-4.1-mini            # provider/model, from the spec's providers
    messages:
      - role: system
        content: You sort a claimant's message into one category and draft a reply.
      - role: user
        content: "Policy {{ policy_id }}: {{ message }}"
    parameters: {temperature: 0, max_tokens: 300}
    response_format: json_schema           # text (default), json_object or json_schema
    fallbacks: [backup/gpt-4.1]            # optional: instead of the service's
    note: v3, the fraud examples spelled out

Templates are Jinja2, rendered in a sandbox with strict undefined variables, and
compiled once when the version loads. ``response_format: json_schema`` asks the model
for the service's output contract (``contract.output`` in the spec), and answers that
break it are errors. Changing any of this, the model included, is a new version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from prodgate.exceptions import ArtifactError
from prodgate.spec.llm import LlmService, ModelRef, check_model

ROLES = ("system", "developer", "user", "assistant")
FORMATS = ("text", "json_object", "json_schema")
#: Request parameters a prompt version may set (and a chat request may override).
PARAMETERS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "seed",
        "n",
        "logit_bias",
        "reasoning_effort",
    }
)
_FIELDS = frozenset({"model", "messages", "parameters", "response_format", "fallbacks", "note"})

_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
)


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    template: jinja2.Template | None = None  # None: no variables, the content as written


@dataclass(frozen=True)
class Prompt:
    """A parsed prompt version, its templates compiled."""

    model: ModelRef
    messages: tuple[Message, ...]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    response_format: str = "text"
    fallbacks: tuple[ModelRef, ...] | None = None
    note: str = ""
    variables: frozenset[str] = frozenset()

    def render(self, variables: Mapping[str, Any]) -> list[dict[str, str]]:
        """The messages with *variables* filled in."""
        return [
            {"role": m.role, "content": m.template.render(variables) if m.template else m.content}
            for m in self.messages
        ]

    @property
    def fixed_messages(self) -> list[dict[str, str]]:
        """The leading messages without variables (a chat request is sent after them)."""
        out = []
        for m in self.messages:
            if m.template is not None or m.role not in ("system", "developer"):
                break
            out.append({"role": m.role, "content": m.content})
        return out

    def targets(self, llm: LlmService) -> list[ModelRef]:
        """The models this version's route tries, in order: its own, then its fallbacks
        (the prompt's when it names them, else the service's). ArtifactError when the
        spec no longer declares one of them."""
        fallbacks = llm.fallbacks if self.fallbacks is None else self.fallbacks
        out = list(dict.fromkeys([self.model, *fallbacks]))
        missing = [str(t) for t in out if check_model(t, llm.providers)]
        if missing:
            raise ArtifactError(f"the spec's providers no longer declare {', '.join(missing)}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "parameters": dict(self.parameters),
            "response_format": self.response_format,
            "fallbacks": [str(f) for f in self.fallbacks] if self.fallbacks is not None else None,
            "variables": sorted(self.variables),
        }


def parse_prompt(text: str, where: str) -> Prompt:
    """A prompt version from YAML *text* (read from *where*, for messages)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ArtifactError(f"{where}: not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{where}: a prompt version is a mapping with model and messages")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ArtifactError(
            f"{where}: unknown field(s) {', '.join(unknown)}; a prompt has "
            f"{', '.join(sorted(_FIELDS))}"
        )
    if not isinstance(data.get("model"), str):
        raise ArtifactError(f"{where}: model: name the model as 'provider/model'")
    model = _ref(data["model"], where, "model")
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise ArtifactError(f"{where}: messages: give at least one message")
    messages = tuple(_message(m, i, where) for i, m in enumerate(raw_messages))
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ArtifactError(f"{where}: parameters: a mapping, e.g. {{temperature: 0}}")
    odd = sorted(set(parameters) - PARAMETERS)
    if odd:
        raise ArtifactError(
            f"{where}: parameters: unknown {', '.join(odd)}; known: {', '.join(sorted(PARAMETERS))}"
        )
    for name in ("max_tokens", "max_completion_tokens"):
        value = parameters.get(name)
        if value is not None and (type(value) is not int or value < 1):
            raise ArtifactError(f"{where}: parameters.{name}: a whole number above 0")
    fmt = data.get("response_format", "text")
    if fmt not in FORMATS:
        raise ArtifactError(f"{where}: response_format: one of {', '.join(FORMATS)}")
    fallbacks = data.get("fallbacks")
    if fallbacks is not None:
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
            raise ArtifactError(f"{where}: fallbacks: a list of 'provider/model'")
        fallbacks = tuple(_ref(f, where, f"fallbacks.{i}") for i, f in enumerate(fallbacks))
    variables: set[str] = set()
    for m in messages:
        if m.template is not None:
            variables |= meta.find_undeclared_variables(_ENV.parse(m.content))
    return Prompt(
        model=model,
        messages=messages,
        parameters=dict(parameters),
        response_format=fmt,
        fallbacks=fallbacks,
        note=str(data.get("note", "")),
        variables=frozenset(variables),
    )


def load_prompt(path: str | Path) -> Prompt:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: cannot read the prompt: {exc}") from None
    return parse_prompt(text, str(path))


def check_prompt(
    prompt: Prompt,
    where: str,
    *,
    providers: Mapping[str, Any],
    fields: Sequence[str],
    output_contract: Mapping[str, Any] | None,
    example: Mapping[str, Any],
) -> None:
    """Refuse a prompt that cannot serve its service: a model the spec does not name, a
    variable the contract does not declare, a template that fails on the example."""
    for label, ref in [("model", prompt.model)] + [
        (f"fallbacks.{i}", r) for i, r in enumerate(prompt.fallbacks or ())
    ]:
        why = check_model(ref, dict(providers))
        if why:
            raise ArtifactError(f"{where}: {label}: {why}")
    unknown = sorted(prompt.variables - set(fields))
    if unknown:
        declared = ", ".join(fields) or "none"
        raise ArtifactError(
            f"{where}: the template uses {', '.join(unknown)}, which the service's input "
            f"contract does not declare (it declares: {declared})"
        )
    if prompt.response_format == "json_schema" and not output_contract:
        raise ArtifactError(
            f"{where}: response_format json_schema needs the service's contract.output"
        )
    try:
        prompt.render(example)
    except jinja2.TemplateError as exc:
        raise ArtifactError(
            f"{where}: the template fails on the contract's example: {exc}"
        ) from None


def _ref(text: str, where: str, label: str) -> ModelRef:
    try:
        return ModelRef.parse(text)
    except ValueError as exc:
        raise ArtifactError(f"{where}: {label}: {exc}") from None


def _message(raw: Any, i: int, where: str) -> Message:
    if not isinstance(raw, dict) or set(raw) - {"role", "content"}:
        raise ArtifactError(f"{where}: messages.{i}: a mapping with role and content")
    role, content = raw.get("role"), raw.get("content")
    if role not in ROLES:
        raise ArtifactError(f"{where}: messages.{i}.role: one of {', '.join(ROLES)}")
    if not isinstance(content, str):
        raise ArtifactError(f"{where}: messages.{i}.content: text")
    if "{{" not in content and "{%" not in content:
        return Message(role, content)
    try:
        template = _ENV.from_string(content)
    except jinja2.TemplateSyntaxError as exc:
        raise ArtifactError(f"{where}: messages.{i}.content: {exc.message}") from None
    return Message(role, content, template)
