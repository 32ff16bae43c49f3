"""A paced HTTP client that records every answer, for scenarios wrk cannot tell apart.

wrk counts statuses; a limits scenario needs each answer: which key, which replica,
when it was sent and answered, its status, whether it carried ``Retry-After`` and the
``RateLimit`` field (a limited key answered without it was answered in the fail mode,
the limit store being unreachable). :class:`Client` sends *streams* of requests, each
a key at a fixed rate (open loop: requests are sent on schedule, not when the previous
answer came, up to a number in flight) round-robin over the replicas, and keeps an
:class:`Answer` per request. Times are wall-clock (``time.time()``), so they compare
with timestamps other processes write (a key's ``revoked_at_us``). httpx is what
prodgate depends on already; at a few hundred requests a second it costs a small
share of a CPU.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx
import orjson

#: A status for a request that got no HTTP answer (refused, reset, timed out).
NO_ANSWER = 0


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


class Client:
    """One httpx client per replica, a pool of request bodies, and the answers."""

    def __init__(
        self, bases: Sequence[str], path: str, bodies: Sequence[object], timeout: float = 10.0
    ) -> None:
        self.bases = list(bases)
        self.path = path
        self.bodies = [orjson.dumps(b) for b in bodies]
        self.timeout = timeout
        self.answers: list[Answer] = []
        self.skipped: Counter[str] = Counter()  # requests not sent: too many in flight
        self._clients: list[httpx.AsyncClient] = []
        self._n = 0
        self._stopped = False

    async def __aenter__(self) -> Client:
        # Idle connections are dropped after 1 s, well before uvicorn closes them (5 s):
        # a request sent on a connection the server is closing at that moment would
        # fail without an answer, an error of the client's making.
        limits = httpx.Limits(
            max_connections=1024, max_keepalive_connections=1024, keepalive_expiry=1.0
        )
        self._clients = [
            httpx.AsyncClient(base_url=b, timeout=self.timeout, limits=limits) for b in self.bases
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for c in self._clients:
            await c.aclose()

    async def send(self, stream: Stream, replica: int) -> Answer:
        body = self.bodies[self._n % len(self.bodies)]
        self._n += 1
        headers = {"Content-Type": "application/json"}
        if stream.token:
            headers["Authorization"] = f"Bearer {stream.token}"
        sent = time.time()
        try:
            resp = await self._clients[replica].post(self.path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            answer = Answer(
                stream.label, replica, sent, time.time(), NO_ANSWER, False, False, repr(exc)
            )
        else:
            answer = Answer(
                stream.label,
                replica,
                sent,
                time.time(),
                resp.status_code,
                "retry-after" in resp.headers,
                "ratelimit" in resp.headers,
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
