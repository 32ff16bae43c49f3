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

from typing import NamedTuple

#: The payload that ends an OpenAI stream.
DONE = b"[DONE]"


class Event(NamedTuple):
    """One event: its ``data`` lines joined, and its ``event`` name (``message`` if none).
    (A tuple: a stream makes one per token, and a tuple is the cheapest to make.)"""

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
        data = self._data
        # One pass, no call per line: a stream has two lines per token ("data: ..." and
        # the blank one), and this loop is most of what reading a stream costs.
        for line in lines:
            if not line:  # a blank line dispatches the event read so far
                if data:
                    payload = data[0] if len(data) == 1 else b"\n".join(data)
                    data.clear()
                    if payload == DONE:
                        self.done = True
                        self._pending = b""
                        self._name = ""
                        return events
                    events.append(Event(payload, self._name or "message"))
                self._name = ""
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line[0] != 0x3A:  # not a ":" comment (a keep-alive)
                self._field(line)
        return events

    @property
    def partial(self) -> bool:
        """True when an event has begun but its blank line has not arrived: the stream
        was cut inside it if it ends now."""
        return bool(self._pending or self._data)

    def _field(self, line: bytes) -> None:
        """A field other than ``data``: ``event`` names the event; the rest mean nothing here."""
        field, _, value = line.partition(b":")
        if field == b"data":  # "data" alone: an empty data line
            self._data.append(b"")
        elif field == b"event":
            self._name = value.removeprefix(b" ").decode("utf-8", "replace")
