"""Server-sent events, read incrementally: the ``data:`` payloads of an upstream's stream.

An OpenAI-compatible stream is ``data: {chunk}`` events separated by blank lines and
closed by ``data: [DONE]``. The network cuts it anywhere: a read may end in the
middle of a line, of a UTF-8 character, or between the ``\\r`` and ``\\n`` of one line
ending, so the parser keeps the unfinished line and hands out an event only once
its blank line has arrived. It works on bytes (orjson parses bytes directly; the
payload is never decoded twice) and knows only what the format needs: ``data``
lines (several in one event are joined with ``\\n``), ``event`` names (a provider
may mark an error with ``event: error``), and ``:`` comments (keep-alives, ignored).
``id`` and ``retry`` mean nothing to a one-shot request and are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The payload that ends an OpenAI stream.
DONE = b"[DONE]"


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its ``data`` lines joined, and its ``event`` name (``message`` if none)."""

    data: bytes
    name: str = "message"


class SseParser:
    """Feed it the body as it arrives; it returns the events completed by each piece.

    After the ``[DONE]`` payload, :attr:`done` is true and nothing more is returned.
    """

    __slots__ = ("_after_cr", "_data", "_name", "_pending", "done")

    def __init__(self) -> None:
        self._pending = b""  # the start of a line whose end has not arrived
        self._data: list[bytes] = []  # data lines of the event being read
        self._name = ""
        self._after_cr = False  # the last piece ended with "\r": a "\n" next is the same end
        self.done = False

    def feed(self, piece: bytes) -> list[Event]:
        """The events that *piece* completes, in order."""
        if self.done or not piece:
            return []
        if self._after_cr and piece[:1] == b"\n":
            piece = piece[1:]
        self._after_cr = piece[-1:] == b"\r"
        if b"\r" in piece:
            # "\r\n" and a lone "\r" end a line as "\n" does (the SSE grammar).
            piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        text = self._pending + piece if self._pending else piece
        lines = text.split(b"\n")
        self._pending = lines.pop()  # after the last "\n": unfinished (b"" if none)
        events: list[Event] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                if event.data == DONE:
                    self.done = True
                    self._pending = b""
                    return events
                events.append(event)
        return events

    @property
    def partial(self) -> bool:
        """True when an event has begun but its blank line has not arrived: the stream
        was cut inside it if it ends now."""
        return bool(self._pending or self._data)

    def _line(self, line: bytes) -> Event | None:
        if not line:  # a blank line dispatches the event read so far
            if not self._data:
                self._name = ""
                return None
            event = Event(b"\n".join(self._data), self._name or "message")
            self._data = []
            self._name = ""
            return event
        if line[0] == 0x3A:  # ":" a comment, e.g. a keep-alive
            return None
        field, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._name = value.decode("utf-8", "replace")
        return None
