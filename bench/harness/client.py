"""A paced HTTP client that records every answer, for scenarios wrk cannot tell apart.

wrk counts statuses; a limits scenario needs each answer: which key, which replica,
when it was sent and answered, its status, whether it carried ``Retry-After`` and the
``RateLimit`` field (a limited key answered without it was answered in the fail mode,
the limit store being unreachable). :class:`Client` sends *streams* of requests, each
a key at a fixed rate (open loop: requests are sent on schedule, not when the previous
answer came, up to a number in flight) round-robin over the replicas, and keeps an
:class:`Answer` per request. Times are wall-clock (``time.time()``), so they compare
with timestamps other processes write (a key's ``revoked_at_us``).

The client shares the machine with the replicas it measures, so it is lean: HTTP/1.1
over asyncio streams, keep-alive connections reused per replica, the request bytes
built once per key (httpx cost about 3 ms of CPU a request here, a third of a CPU at
100 requests/s). It reads what prodgate sends: a status line, header fields, and a
body of ``Content-Length`` bytes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson

#: A status for a request that got no HTTP answer (refused, reset, timed out).
NO_ANSWER = 0
#: Connections idle longer than this are closed rather than reused: uvicorn closes its
#: side after 5 s, and a request sent just as it does would fail, the client's fault.
IDLE_S = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class Answer:
    stream: str
    replica: int
    sent: float  # time.time() when the request was sent
    received: float  # ... and when its answer (or the error) came
    status: int  # NO_ANSWER for a connection error
    retry_after: bool  # the answer had a Retry-After field
    rate_limit: bool  # the answer had a RateLimit field (the limiter counted it)
    error: str = ""

    @property
    def latency_ms(self) -> float:
        return 1000.0 * (self.received - self.sent)


@dataclass(frozen=True)
class Stream:
    """Requests with one key (*token*, empty: none) at *rate* per second, round-robin
    over *replicas* (all when empty), at most *concurrency* in flight."""

    label: str
    token: str
    rate: float
    concurrency: int = 64
    replicas: tuple[int, ...] = ()


class _Connection:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = time.monotonic()

    def close(self) -> None:
        self.writer.close()


class _Replica:
    """Keep-alive connections to one replica."""

    def __init__(self, base: str) -> None:
        url = urlsplit(base)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.idle: list[_Connection] = []

    async def connection(self) -> _Connection:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if now - conn.used < IDLE_S:
                return conn
            conn.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Connection(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, set[bytes]]:
        """Send *request*; the answer's status and its header field names (lower case)."""
        conn = await self.connection()
        try:
            conn.writer.write(request)
            head = await conn.reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            fields: dict[bytes, bytes] = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(b":")
                    fields[name.strip().lower()] = value.strip()
            if b"content-length" not in fields:
                raise ValueError(f"an answer without Content-Length: {head[:200]!r}")
            await conn.reader.readexactly(int(fields[b"content-length"]))
        except BaseException:
            conn.close()
            raise
        if fields.get(b"connection", b"").lower() == b"close":
            conn.close()
        else:
            conn.used = time.monotonic()
            self.idle.append(conn)
        return status, set(fields)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class Client:
    """Connections to each replica, a pool of request bodies, and the answers."""

    def __init__(
        self, bases: Sequence[str], path: str, bodies: Sequence[object], timeout: float = 30.0
    ) -> None:
        self.bases = list(bases)
        self.path = path
        self.bodies = [orjson.dumps(b) for b in bodies]
        self.timeout = timeout
        self.answers: list[Answer] = []
        self.skipped: Counter[str] = Counter()  # requests not sent: too many in flight
        self._replicas = [_Replica(b) for b in self.bases]
        self._heads: dict[tuple[int, str], bytes] = {}
        self._n = 0
        self._stopped = False

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for r in self._replicas:
            r.close()

    def _request(self, replica: int, token: str, body: bytes) -> bytes:
        head = self._heads.get((replica, token))
        if head is None:
            r = self._replicas[replica]
            auth = f"Authorization: Bearer {token}\r\n" if token else ""
            head = self._heads[(replica, token)] = (
                f"POST {self.path} HTTP/1.1\r\nHost: {r.host}:{r.port}\r\n"
                f"Content-Type: application/json\r\n{auth}Content-Length: "
            ).encode()
        return head + str(len(body)).encode() + b"\r\n\r\n" + body

    async def send(self, stream: Stream, replica: int) -> Answer:
        body = self.bodies[self._n % len(self.bodies)]
        self._n += 1
        request = self._request(replica, stream.token, body)
        sent = time.time()
        try:
            async with asyncio.timeout(self.timeout):
                status, fields = await self._replicas[replica].exchange(request)
        except (OSError, EOFError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            answer = Answer(
                stream.label, replica, sent, time.time(), NO_ANSWER, False, False, repr(exc)
            )
        else:
            answer = Answer(
                stream.label,
                replica,
                sent,
                time.time(),
                status,
                b"retry-after" in fields,
                b"ratelimit" in fields,
            )
        self.answers.append(answer)
        return answer

    async def run(self, streams: Iterable[Stream], seconds: float) -> None:
        """Send every stream for *seconds* (or until :meth:`stop`), then wait for the
        answers in flight."""
        self._stopped = False
        until = time.time() + seconds
        await asyncio.gather(*(self._pace(s, until) for s in streams))

    def stop(self) -> None:
        """End :meth:`run` early: no request is sent after this."""
        self._stopped = True

    def take(self) -> list[Answer]:
        """The answers so far, and start a new list."""
        out, self.answers = self.answers, []
        return out

    async def _pace(self, stream: Stream, until: float) -> None:
        replicas = stream.replicas or tuple(range(len(self.bases)))
        slots = asyncio.Semaphore(stream.concurrency)
        tasks: set[asyncio.Task[Answer]] = set()
        interval = 1.0 / stream.rate
        start = time.time()
        n = 0

        def done(task: asyncio.Task[Answer]) -> None:
            tasks.discard(task)
            slots.release()

        while True:
            now = time.time()
            if now >= until or self._stopped:
                break
            due = math.floor((now - start) / interval) + 1
            if due - n > max(1, stream.rate * 0.1):  # over 100 ms behind: skip, do not burst
                self.skipped[stream.label] += due - n - 1
                n = due - 1
            while n < due:
                if slots.locked():
                    self.skipped[stream.label] += 1  # too many in flight: not sent
                else:
                    await slots.acquire()
                    task = asyncio.create_task(self.send(stream, replicas[n % len(replicas)]))
                    tasks.add(task)
                    task.add_done_callback(done)
                n += 1
            await asyncio.sleep(max(0.0, min(until, start + n * interval) - time.time()))
        if tasks:
            await asyncio.gather(*tasks)


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run *main* on uvloop when it is installed (uvicorn's, a cheaper loop), else on
    asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


# -- reading the answers ---------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0-100, nearest rank) of *values*; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def certain_max_in_window(spans: Iterable[tuple[float, float]], period: float) -> int:
    """The most admissions in any window of *period* seconds that were certainly
    inside it, from each admission's (earliest, latest) moment.

    A server admits a request at some moment between its sending and its answer (or,
    as its own record tells, between its arrival and its decision), so counting only
    the spans that lie wholly inside a window counts a subset of what was admitted in
    it: more than the limit here is more than the limit there, whatever the delays.
    """
    ordered = sorted(spans, key=lambda s: s[1])
    best = 0
    for j, (_, end) in enumerate(ordered):
        opened = end - period
        best = max(best, sum(1 for start, _ in ordered[: j + 1] if start > opened))
    return best


def spans(answers: Iterable[Answer]) -> list[tuple[float, float]]:
    """Each answer's (sent, received)."""
    return [(a.sent, a.received) for a in answers]


def statuses(answers: Iterable[Answer]) -> Counter[int]:
    return Counter(a.status for a in answers)


def describe_statuses(answers: Iterable[Answer]) -> str:
    """``200: 600, 429: 11,400`` (0 is no answer)."""
    counts = statuses(answers)
    return ", ".join(f"{k if k else 'no answer'}: {v:,}" for k, v in sorted(counts.items()))


def first_error(answers: Iterable[Answer]) -> str:
    for a in answers:
        if a.error:
            return a.error
    return ""
