"""Limits shared by every replica through Redis, one round trip for many requests.

Each replica's :class:`RedisLimiter` queues the checks, charges and releases that
arrive while a script call is in flight and sends all of them in the next call
(``script.py``), so under load the CPU a redis-py call costs (about 100 µs) is paid
per batch rather than per request; with nothing in flight a request goes out at
once, on the next turn of the event loop. Redis decides the groups one by one, each
all-or-nothing, with its own clock.

Redis being unreachable is an answer, never an exception and never a hang: a call
that fails or takes longer than the timeout gives every request in it a degraded
verdict, decided by the fail mode (``closed``: refused with Retry-After 1; ``open``:
let through). After a failure Redis is left alone for a back-off (0.5 s), during which
checks answer at once without a call; then the next batch is the probe (one at a
time). redis-py reconnects on that call, and a Redis that restarted without the
script gets it again by EVAL when EVALSHA says NOSCRIPT.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from prodgate.limits.script import CHARGE, CHECK, LUA, SHA, Batch, answer_size
from prodgate.limits.verdict import (
    Demand,
    Lease,
    RateOutcome,
    Slot,
    SlotOutcome,
    Verdict,
    degraded,
    no_limits,
    settle,
    unique_slots,
)

logger = logging.getLogger("prodgate.limits")

#: Most requests one script call carries; a longer queue goes in several calls.
MAX_BATCH = 512


class _Job:
    """One request's part of a batch, and where its answer goes."""

    __slots__ = ("demands", "fut", "kind", "lease_id", "slots", "subjects")

    def __init__(
        self,
        kind: str,
        demands: Sequence[Demand] = (),
        slots: Sequence[Slot] = (),
        lease_id: str = "",
        subjects: Sequence[str] = (),
    ) -> None:
        self.kind = kind
        self.demands = demands
        self.slots = slots
        self.lease_id = lease_id
        self.subjects = subjects  # a release's subjects
        self.fut: asyncio.Future[list[int] | None] | None = None


class RedisLimiter:
    """Rates, quotas and concurrency exact across every replica sharing one Redis.

    *timeout_ms* bounds each call (connecting included); *fail* is ``closed`` or
    ``open``; *lease_ttl_s* is how long a concurrency slot stays taken if it is never
    released (a crashed replica's, or one released while Redis was down), so a request
    running longer than that stops counting; *coalesce* off sends one call per
    request (for comparison in benchmarks).

    One instance serves one event loop (its connections belong to it). Redis 5 or later,
    one server or a primary with replicas: a script's keys span hash slots, so Redis
    Cluster is not supported.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "prodgate:limits:",
        timeout_ms: float = 100.0,
        fail: str = "closed",
        lease_ttl_s: float = 120.0,
        backoff_s: float = 0.5,
        coalesce: bool = True,
    ) -> None:
        if fail not in ("closed", "open"):
            raise ValueError(f"fail must be 'closed' or 'open', not {fail!r}")
        self.prefix = prefix
        self.fail = fail
        self._timeout = timeout_ms / 1000.0
        self._lease_ms = max(1, round(lease_ttl_s * 1000))
        self._backoff = backoff_s
        self._coalesce = coalesce
        # No retries inside redis-py: a failed call takes the fail mode at once, and
        # the back-off decides when Redis is tried again.
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._queue: list[_Job] = []
        self._drainer: asyncio.Task[None] | None = None
        self._healthy = True
        self._down_until = 0.0
        self._probing = False
        self._closing = False
        self._closed = False
        self._tag = secrets.token_hex(6)
        self._ids = itertools.count(1)

    @property
    def healthy(self) -> bool:
        """False from a failed call until a call succeeds again."""
        return self._healthy and not self._closed

    async def check(self, demands: Sequence[Demand], slots: Sequence[Slot] = ()) -> Verdict:
        """Admit the request and charge every demand and take every slot, or none."""
        if not demands and not slots:
            return no_limits()
        slots = unique_slots(slots)
        if self._closing or (not self._healthy and time.monotonic() < self._down_until):
            return degraded(demands, slots, fail=self.fail)
        lease_id = f"{self._tag}:{next(self._ids)}" if slots else ""
        out = await self._submit(_Job(CHECK, demands, slots, lease_id))
        if out is None:
            return degraded(demands, slots, fail=self.fail)
        return _verdict(demands, slots, lease_id, out)

    async def charge(self, demands: Sequence[Demand]) -> None:
        """Add *demands* to their windows whatever the limits say (lost if Redis is down)."""
        if demands and not self._closed:
            await self._submit(_Job(CHARGE, demands))

    async def release(self, lease: Lease) -> None:
        """Give the lease's slots back; never raises (an unreleased lease expires)."""
        if not lease.subjects or self._closed:
            return
        try:
            await self._submit(_Job("r", lease_id=lease.id, subjects=lease.subjects))
        except Exception:  # never raise to a caller cleaning up
            logger.exception("releasing lease %s failed", lease.id)

    async def close(self) -> None:
        """Finish what is queued (releases included), then close the connections."""
        if self._closed:
            return
        self._closing = True
        while self._drainer is not None:
            await asyncio.shield(self._drainer)
        self._closed = True
        await self._client.aclose()

    async def _submit(self, job: _Job) -> list[int] | None:
        if not self._coalesce:
            return (await self._send([job]))[0]
        loop = asyncio.get_running_loop()
        job.fut = loop.create_future()
        self._queue.append(job)
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await job.fut

    async def _drain(self) -> None:
        """Send what is queued, batch after batch, until the queue is empty."""
        jobs: list[_Job] = []
        try:
            while self._queue:
                jobs = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                # A check whose caller has gone is not sent; charges and releases are.
                jobs = [j for j in jobs if j.kind != CHECK or not (j.fut and j.fut.done())]
                answers = await self._send(jobs) if jobs else []
                for job, answer in zip(jobs, answers, strict=True):
                    if job.fut is not None and not job.fut.done():
                        job.fut.set_result(answer)
                    elif job.kind == CHECK and job.slots and answer and answer[0] == 1:
                        # Its caller left while the check was in flight: give the slots back.
                        subjects = tuple(s.subject for s in job.slots)
                        self._queue.append(_Job("r", lease_id=job.lease_id, subjects=subjects))
                jobs = []
        finally:
            # Empty unless cancelled mid-call: answer whoever is still waiting.
            self._drainer = None
            for job in jobs + self._queue:
                if job.fut is not None and not job.fut.done():
                    job.fut.set_result(None)
            self._queue.clear()

    async def _send(self, jobs: Sequence[_Job]) -> list[list[int] | None]:
        """One script call for *jobs*: each job's answer, or None for all when it failed."""
        failed: list[list[int] | None] = [None] * len(jobs)
        if self._closed:
            return failed
        if not self._healthy:
            if self._probing or time.monotonic() < self._down_until:
                return failed
            self._probing = True
        batch = Batch(self.prefix, self._lease_ms)
        for job in jobs:
            if job.kind == "r":
                batch.add_release(job.lease_id, job.subjects)
            else:
                batch.add(job.kind, job.demands, job.slots, job.lease_id)
        try:
            async with asyncio.timeout(self._timeout):
                out = await self._eval(batch.keys, batch.argv())
        except Exception as exc:  # unreachable, timed out, or refused: all the same here
            self._down(exc)
            return failed
        finally:
            self._probing = False
        if not self._healthy:
            self._healthy = True
            logger.warning("Redis is reachable again: limits are shared and exact again")
        answers: list[list[int] | None] = []
        at = 0
        for job in jobs:
            n = answer_size(job.kind, len(job.demands), len(job.slots))
            answers.append(out[at : at + n])
            at += n
        return answers

    async def _eval(self, keys: list[str], args: list[str | int]) -> list[int]:
        try:
            out = await self._client.evalsha(SHA, len(keys), *keys, *args)
        except NoScriptError:
            # A Redis that restarted (or never saw the script): EVAL loads it again.
            out = await self._client.eval(LUA, len(keys), *keys, *args)
        return list(out)

    def _down(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self._backoff
        if self._healthy:
            self._healthy = False
            logger.warning(
                "Redis is unreachable for limits (%s); fail mode %s until it answers",
                type(exc).__name__,
                self.fail,
            )


def _verdict(
    demands: Sequence[Demand], slots: Sequence[Slot], lease_id: str, out: list[int]
) -> Verdict:
    rates: list[RateOutcome] = []
    at = 1
    for _ in demands:
        rates.append((out[at], out[at + 1] / 1e6, out[at + 2] / 1e6, out[at + 3]))
        at += 4
    held: list[SlotOutcome] = []
    for _ in slots:
        held.append((out[at], out[at + 1]))
        at += 2
    lease = Lease(lease_id, tuple(s.subject for s in slots)) if slots and out[0] == 1 else None
    return settle(demands, slots, rates, held, lease)
