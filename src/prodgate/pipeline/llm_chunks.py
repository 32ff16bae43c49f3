"""A streamed LLM answer on its way to the caller: the upstream's chunks read into a
queue (so that what one network read brought goes out in one write), and each chunk's
text as the output guard lets it out (held back, released redacted, or stopped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from prodgate.guard.stream import StreamGuard
from prodgate.pipeline.guarding import blocked_error
from prodgate.spec.guard import OUTPUT

#: The end of a pumped stream.
END = object()


async def pump(events: AsyncIterator[dict[str, Any]], into: asyncio.Queue[Any]) -> None:
    """Read *events* into the queue, then :data:`END`, or the exception that ended them."""
    try:
        async for chunk in events:
            into.put_nowait(chunk)
    except Exception as exc:
        into.put_nowait(exc)
    else:
        into.put_nowait(END)


def screened(screen: StreamGuard, chunk: dict[str, Any]) -> dict[str, Any] | None:
    """*chunk* with its content as the output guard lets it out: held back (None when
    nothing else is in it), released with redactions, or GuardBlockedError."""
    choices = chunk["choices"]
    choice = choices[0]
    delta = choice.get("delta") or {}
    content = delta.get("content")
    finish = choice.get("finish_reason")
    safe = screen.feed(content) if isinstance(content, str) else ""
    if finish is not None:
        safe += screen.finish()
    if screen.blocked is not None:
        raise blocked_error(screen.blocked, OUTPUT)
    if content is None and not safe:
        return chunk
    if not safe and finish is None and all(k == "content" for k in delta):
        return None
    return {**chunk, "choices": [{**choice, "delta": {**delta, "content": safe}}, *choices[1:]]}


def tail(screen: StreamGuard, rid: str, model: str) -> dict[str, Any] | None:
    """The text the guard still holds when a stream ends without a finish_reason."""
    rest = screen.finish()
    if screen.blocked is not None:
        raise blocked_error(screen.blocked, OUTPUT)
    if not rest:
        return None
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": {"content": rest}, "finish_reason": None}],
    }
