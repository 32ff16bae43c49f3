"""What the mock LLM answers: a pure function of its configuration and the request.

The answer must be the same for the same request, so that tests can assert on it and
benchmarks compare like with like; and it must look enough like a model's to exercise
the code around one: a label chosen by keyword rules (a classifier prompt), a JSON
object that satisfies the requested schema (structured output), a tool call when asked
for one, a cut answer at ``max_tokens``, and usage figures a test can compute by hand.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from prodgate.exceptions import UsageError

#: Words of an answer with the whitespace that follows each (leading space stays on the
#: first), so that the pieces, joined, give the answer back exactly.
_PIECE = re.compile(r"\s*\S+\s*")
_TOOL_ASK = re.compile(r"\bcall\s+([A-Za-z0-9_-]+)")
#: Names of string properties that hold prose (a reply to write), not a label.
_PROSE = re.compile(
    r"reply|answer|text|letter|message|response|body|content|draft|summary|explanation|reason"
)
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "claimant@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
#: Deeper than this, a (recursive) schema gets the simplest value of its type.
_MAX_DEPTH = 16
ECHO_CHARS = 400


@dataclass(frozen=True)
class ModelOptions:
    """How one served model behaves."""

    #: Labels this model never gives: the rules that would give one are passed over,
    #: which makes a weaker model for evaluations and canaries to catch.
    misses: frozenset[str] = frozenset()
    latency_ms: float = 0.0
    #: False: answers carry no ``usage`` (the caller must estimate tokens).
    usage: bool = True
    cached_tokens: int = 0
    #: A missed label the model does give when a system (or developer) message holds
    #: the hint's words: a weaker model that a better prompt helps.
    hints: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    keywords: tuple[str, ...]  # lowercased
    label: str


@dataclass(frozen=True)
class MockConfig:
    """The compiled configuration: which models are served, and the labelling rules."""

    models: Mapping[str, ModelOptions] | None = None
    rules: tuple[Rule, ...] = ()
    default_label: str | None = None
    #: Phrases (lowercased) that talk the model into repeating its instructions: an
    #: answer to a message holding one quotes the system messages (a leak to catch).
    leaks: tuple[str, ...] = ()

    def options(self, model: str) -> ModelOptions | None:
        """The options of *model*, or None when the configuration does not serve it."""
        if self.models is None:
            return _ANY_MODEL
        return self.models.get(model)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> MockConfig:
        """Compile a configuration mapping; a mistake raises a one-line :class:`UsageError`."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise UsageError("mock LLM config: expected a mapping of models, rules, default_label")
        unknown = set(raw) - {"models", "rules", "default_label", "leaks"}
        if unknown:
            raise UsageError(
                f"mock LLM config: unknown key {sorted(unknown)[0]!r}; "
                "expected models, rules, default_label, leaks"
            )
        leaks = raw.get("leaks") or []
        if not isinstance(leaks, list) or not all(isinstance(p, str) and p for p in leaks):
            raise UsageError("mock LLM config: leaks: expected a list of phrases")
        default = raw.get("default_label")
        if default is not None and not isinstance(default, str):
            raise UsageError("mock LLM config: default_label: expected a string")
        return cls(
            _models(raw.get("models")),
            _rules(raw.get("rules")),
            default,
            tuple(p.lower() for p in leaks),
        )


_ANY_MODEL = ModelOptions()


def _models(raw: Any) -> dict[str, ModelOptions] | None:
    if raw is None:
        return None
    if isinstance(raw, list) and all(isinstance(m, str) for m in raw):
        return {m: ModelOptions() for m in raw}
    if not isinstance(raw, Mapping):
        raise UsageError("mock LLM config: models: expected a mapping of model name to options")
    return {str(name): _model_options(str(name), opts) for name, opts in raw.items()}


def _model_options(name: str, raw: Any) -> ModelOptions:
    where = f"mock LLM config: models.{name}"
    if raw is None:
        return ModelOptions()
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where}: expected a mapping of options")
    unknown = set(raw) - {"misses", "latency_ms", "usage", "cached_tokens"}
    if unknown:
        raise UsageError(
            f"{where}: unknown option {sorted(unknown)[0]!r}; "
            "expected misses, latency_ms, usage, cached_tokens"
        )
    misses = raw.get("misses", [])
    if isinstance(misses, str):
        misses = [misses]
    hints: dict[str, str] = {}
    if isinstance(misses, Mapping):  # label: the words of a prompt that make up for it
        hints = {str(k): str(v).lower() for k, v in misses.items() if v}
        misses = list(misses)
    if not isinstance(misses, list) or not all(isinstance(m, str) for m in misses):
        raise UsageError(f"{where}.misses: expected a list of labels, or labels to hints")
    latency = raw.get("latency_ms", 0)
    if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
        raise UsageError(f"{where}.latency_ms: expected a number of milliseconds >= 0")
    usage = raw.get("usage", True)
    if not isinstance(usage, bool):
        raise UsageError(f"{where}.usage: expected true or false")
    cached = raw.get("cached_tokens", 0)
    if isinstance(cached, bool) or not isinstance(cached, int) or cached < 0:
        raise UsageError(f"{where}.cached_tokens: expected a whole number >= 0")
    return ModelOptions(frozenset(misses), float(latency), usage, cached, hints)


def _rules(raw: Any) -> tuple[Rule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise UsageError("mock LLM config: rules: expected a list of {contains, label}")
    rules = []
    for i, rule in enumerate(raw):
        where = f"mock LLM config: rules[{i}]"
        if not isinstance(rule, Mapping) or set(rule) != {"contains", "label"}:
            raise UsageError(f"{where}: expected {{contains: [words], label: LABEL}}")
        words = rule["contains"]
        if isinstance(words, str):
            words = [words]
        if not isinstance(words, list) or not words or not all(isinstance(w, str) for w in words):
            raise UsageError(f"{where}.contains: expected a list of words")
        if not isinstance(rule["label"], str):
            raise UsageError(f"{where}.label: expected a string")
        rules.append(Rule(tuple(w.lower() for w in words), rule["label"]))
    return tuple(rules)


@dataclass(frozen=True)
class Answer:
    content: str
    finish_reason: str  # "stop" | "length" | "tool_calls"
    tool_calls: tuple[dict[str, Any], ...]
    prompt_tokens: int
    completion_tokens: int

    @property
    def pieces(self) -> list[str]:
        """The content word by word, each word with the whitespace after it."""
        return _PIECE.findall(self.content)


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    return ""


def prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Words of each message's content plus 3 per message, plus 3: easy to count by hand."""
    return sum(len(text_of(m.get("content")).split()) + 3 for m in messages) + 3


def answer(config: MockConfig, options: ModelOptions, body: Mapping[str, Any]) -> Answer:
    """The answer to a chat completion *body* whose ``messages`` are a list of mappings.

    A malformed optional field (``max_tokens``) raises :class:`ValueError`, a 400.
    """
    messages: list[Mapping[str, Any]] = body["messages"]
    limit = _max_tokens(body)
    asked = _last_user_text(messages)
    label = choose_label(config, options, asked, _system_text(messages))
    prompt = prompt_tokens(messages)
    tool_calls: tuple[dict[str, Any], ...] = ()
    finish = "stop"
    tool = _requested_tool(body, messages, asked)
    if tool is not None:
        name = tool["name"]
        content = f"Calling {name}."
        tool_calls = (_tool_call(name, tool.get("parameters"), asked, label),)
        finish = "tool_calls"
    else:
        content = _content(body, asked, label)
        lowered = asked.lower()
        if any(p in lowered for p in config.leaks):
            content = _leak(body, messages, label, asked)
        if limit is not None:
            pieces = _PIECE.findall(content)
            if len(pieces) > limit:
                content = "".join(pieces[:limit]).rstrip()
                finish = "length"
    return Answer(content, finish, tool_calls, prompt, max(1, len(content.split())))


def choose_label(
    config: MockConfig, options: ModelOptions, text: str, system: str = ""
) -> str | None:
    """The first rule with a keyword in *text* whose label the model does not miss (or
    misses only without a hint, and *system* holds the hint)."""
    if not config.rules:
        return None
    lowered = text.lower()
    for rule in config.rules:
        missed = rule.label in options.misses
        if missed and options.hints.get(rule.label, "\0") in system:
            missed = False
        if not missed and any(k in lowered for k in rule.keywords):
            return rule.label
    return config.default_label


def _system_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The system and developer messages' text, lowercased."""
    return " ".join(
        str(m.get("content") or "").lower()
        for m in messages
        if m.get("role") in ("system", "developer")
    )


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}: expected a whole number >= 1, not {value!r}")
        return value
    return None


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def _content(body: Mapping[str, Any], asked: str, label: str | None) -> str:
    plain = label if label is not None else "Echo: " + asked[:ECHO_CHARS]
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt, Mapping) else None
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        schema = schema if isinstance(schema, Mapping) else {"type": "object"}
        value = instance(schema, label=label, text=asked)
        return orjson.dumps(value).decode()
    if kind == "json_object":
        return orjson.dumps({"answer": plain}).decode()
    return plain


def _leak(
    body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], label: str | None, asked: str
) -> str:
    """An answer that gives the system messages away, word for word: as text, or as
    the prose fields of the structured answer asked for."""
    system = "\n\n".join(
        text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    )
    said = f"Of course. My instructions say: {system}"
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        value = orjson.loads(_content(body, asked, label))
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, str) and _PROSE.search(key):
                    value[key] = said
            return orjson.dumps(value).decode()
    return said


def _requested_tool(
    body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], asked: str
) -> dict[str, Any] | None:
    """The function the last message asks for by ``call NAME``, if the request offers it.

    Only when the user spoke last: once a tool's result follows, the model answers in
    words, so an agent loop ends.
    """
    tools = body.get("tools")
    if not tools or not isinstance(tools, list) or body.get("tool_choice") == "none":
        return None
    if messages[-1].get("role") != "user":
        return None
    offered: dict[str, dict[str, Any]] = {}
    for tool in tools:
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            offered.setdefault(function["name"], dict(function))
    for match in _TOOL_ASK.finditer(asked):
        if match.group(1) in offered:
            return offered[match.group(1)]
    return None


def _tool_call(name: str, parameters: Any, asked: str, label: str | None) -> dict[str, Any]:
    arguments = "{}"
    if isinstance(parameters, Mapping):
        value = instance(parameters, label=label, text=asked)
        if isinstance(value, dict):
            arguments = orjson.dumps(value).decode()
    digest = hashlib.sha256(f"{name}\0{asked}".encode()).hexdigest()[:24]
    return {
        "id": f"call_{digest}",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def letter(text: str) -> str:
    """A short reply to the message *text*, derived from its first words."""
    topic = " ".join(text.split()[:8]).rstrip(".,;:!?") or "your claim"
    return f"Dear claimant, thank you for your message about {topic}. We will reply shortly."


def instance(schema: Mapping[str, Any], *, label: str | None = None, text: str = "") -> Any:
    """A value that satisfies the JSON Schema *schema*, built deterministically.

    Covers what structured outputs use: types, properties (every one is given), enum
    and const, anyOf/oneOf (the first branch that is not null), allOf, local ``$ref``
    (as pydantic writes them, under ``$defs``), minItems, minimum/maximum and
    minLength/maxLength. An enum holds the chosen *label* when it can.
    """
    return _Builder(schema, label, text).build(schema, "", 0)


@dataclass
class _Builder:
    root: Mapping[str, Any]
    label: str | None
    text: str

    def build(self, schema: Any, name: str, depth: int) -> Any:
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return None
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self.build(self._resolve(ref), name, depth + 1)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return self.label if self.label in enum else enum[0]
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                chosen = next((b for b in branches if not _is_null(b)), branches[0])
                return self.build(chosen, name, depth + 1)
        parts = schema.get("allOf")
        if isinstance(parts, list) and parts:
            values = [self.build(p, name, depth + 1) for p in parts]
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            if not all(isinstance(v, dict) for v in values):
                return values[0]
            merged: dict[str, Any] = {}
            for v in values:
                merged.update(v)
            if "properties" in rest:
                merged.update(self.build(rest, name, depth + 1) or {})
            return merged
        return self._typed(schema, _type_of(schema), name, depth)

    def _typed(self, schema: Mapping[str, Any], kind: str, name: str, depth: int) -> Any:
        if kind == "object":
            props = schema.get("properties")
            if not isinstance(props, Mapping):
                return {}
            return {str(k): self.build(v, str(k), depth + 1) for k, v in props.items()}
        if kind == "array":
            count = schema.get("minItems", 0)
            count = count if isinstance(count, int) and count > 0 else 0
            return [self.build(schema.get("items", {}), name, depth + 1) for _ in range(count)]
        if kind == "string":
            return self._string(schema, name)
        if kind in ("integer", "number"):
            return _number(schema, integer=kind == "integer")
        if kind == "boolean":
            return False
        return None

    def _string(self, schema: Mapping[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            value = _FORMATS[fmt]
        elif _PROSE.search(name.lower()):
            value = letter(self.text)
        elif self.label is not None:
            value = self.label
        else:
            value = " ".join(self.text.split()[:6]) or "none"
        low = schema.get("minLength")
        if isinstance(low, int) and len(value) < low:
            value += "." * (low - len(value))
        high = schema.get("maxLength")
        if isinstance(high, int) and high >= 0 and len(value) > high:
            value = value[:high]
        return value

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return None
        node: Any = self.root
        for part in ref[1:].split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node


def _is_null(schema: Any) -> bool:
    return isinstance(schema, Mapping) and schema.get("type") == "null"


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    """0 when the bounds allow it, else the nearest bound (inside exclusive ones)."""

    def bound(key: str) -> float | None:
        value = schema.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    low, low_x = bound("minimum"), bound("exclusiveMinimum")
    high, high_x = bound("maximum"), bound("exclusiveMaximum")
    value = 0.0
    if low is not None and value < low:
        value = float(math.ceil(low)) if integer else low
    if low_x is not None and value <= low_x:
        value = float(math.floor(low_x) + 1) if integer else low_x + 1
    if high is not None and value > high:
        value = float(math.floor(high)) if integer else high
    if high_x is not None and value >= high_x:
        value = float(math.ceil(high_x) - 1) if integer else high_x - 1
    if not integer and low_x is not None and high_x is not None and not low_x < value < high_x:
        value = (low_x + high_x) / 2
    return int(value) if integer or value.is_integer() else value
