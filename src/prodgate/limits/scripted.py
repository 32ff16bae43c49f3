"""One Lua script on Redis, called for many requests at once: the limiter's and the
ledger's shared transport.

Requests that arrive while a script call is in flight wait for the next call, which
carries them all: one round trip and one connection whatever the burst, and with
nothing in flight a call goes out at once. A failed call (unreachable, timed out,
refused) answers every job in it with None, which the caller turns into its fail
mode; Redis is then left alone for *backoff_s*, every call answering None at once,
and the next batch after that is the probe. A job whose caller went away while it
waited is dropped, unless :meth:`ScriptedRedis._keep` says it must still be sent (a
charge, a release, a settle); one whose caller went away while its call was in flight
is handed to :meth:`ScriptedRedis._orphan`, which may queue what undoes it.

No retries inside redis-py: a failed call takes the fail mode at once, and the
back-off decides when Redis is tried again. One instance serves one event loop (its
connections belong to it). Redis 5 or later, one server or a primary with replicas:
a batch's keys span hash slots, so Redis Cluster is not supported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

logger = logging.getLogger("prodgate.limits")

#: Most jobs one script call carries; a longer queue goes in several calls.
MAX_BATCH = 512

Answer = list[int] | None


class ScriptJob:
    """One request's part of a batch, and where its answer goes."""

    __slots__ = ("fut", "kind")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.fut: asyncio.Future[Answer] | None = None


class ScriptedRedis:
    """Coalesced calls of one script (*lua*, whose SHA1 is *sha*); what is shared and
    exact (*what*: ``limits``, ``budgets``) names it in the log."""

    def __init__(
        self,
        url: str,
        *,
        lua: str,
        sha: str,
        what: str,
        timeout_ms: float,
        fail: str,
        backoff_s: float,
        coalesce: bool,
    ) -> None:
        if fail not in ("closed", "open"):
            raise ValueError(f"fail must be 'closed' or 'open', not {fail!r}")
        self.fail = fail
        self._lua, self._sha, self._what = lua, sha, what
        self._timeout = timeout_ms / 1000.0
        self._backoff = backoff_s
        self._coalesce = coalesce
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._queue: list[ScriptJob] = []
        self._drainer: asyncio.Task[None] | None = None
        self._healthy = True
        self._down_until = 0.0
        self._probing = False
        self._closing = False
        self._closed = False

    # -- what each script's owner says ----------------------------------------------------

    def _pack(self, jobs: Sequence[ScriptJob]) -> tuple[list[str], list[str | int]]:
        """The keys and arguments of one call carrying *jobs*."""
        raise NotImplementedError

    def _split(self, jobs: Sequence[ScriptJob], out: list[int]) -> list[list[int]]:
        """Each job's part of the call's answer *out*."""
        raise NotImplementedError

    def _keep(self, job: ScriptJob) -> bool:
        """Whether *job* is sent even when its caller has gone (it changes state)."""
        return False

    def _orphan(self, job: ScriptJob, answer: list[int]) -> ScriptJob | None:
        """What to queue for a job answered after its caller went away (to undo it)."""
        return None

    # -- the transport ------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False from a failed call until a call succeeds again."""
        return self._healthy and not self._closed

    def _resting(self) -> bool:
        """Closing, or in the back-off after a failure: answer without a call."""
        return self._closing or (not self._healthy and time.monotonic() < self._down_until)

    async def close(self) -> None:
        """Finish what is queued, then close the connections."""
        if self._closed:
            return
        self._closing = True
        while self._drainer is not None:
            await asyncio.shield(self._drainer)
        self._closed = True
        await self._client.aclose()

    async def _submit(self, job: ScriptJob) -> Answer:
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
        jobs: list[ScriptJob] = []
        try:
            while self._queue:
                jobs = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                jobs = [j for j in jobs if self._keep(j) or not (j.fut and j.fut.done())]
                answers = await self._send(jobs) if jobs else []
                for job, answer in zip(jobs, answers, strict=True):
                    if job.fut is not None and not job.fut.done():
                        job.fut.set_result(answer)
                    elif answer:
                        undo = self._orphan(job, answer)
                        if undo is not None:
                            self._queue.append(undo)
                jobs = []
        finally:
            # Empty unless cancelled mid-call: answer whoever is still waiting.
            self._drainer = None
            for job in jobs + self._queue:
                if job.fut is not None and not job.fut.done():
                    job.fut.set_result(None)
            self._queue.clear()

    async def _send(self, jobs: Sequence[ScriptJob]) -> list[Answer]:
        """One script call for *jobs*: each job's answer, or None for all when it failed."""
        failed: list[Answer] = [None] * len(jobs)
        if self._closed:
            return failed
        if not self._healthy:
            if self._probing or time.monotonic() < self._down_until:
                return failed
            self._probing = True
        keys, args = self._pack(jobs)
        try:
            async with asyncio.timeout(self._timeout):
                out = await self._eval(keys, args)
        except Exception as exc:  # unreachable, timed out, or refused: all the same here
            self._down(exc)
            return failed
        finally:
            self._probing = False
        if not self._healthy:
            self._healthy = True
            logger.warning("Redis is reachable again: %s are shared and exact again", self._what)
        return list(self._split(jobs, [int(x) for x in out]))

    async def _eval(self, keys: list[str], args: list[str | int]) -> list[int]:
        try:
            out = await self._client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            # A Redis that restarted (or never saw the script): EVAL loads it again.
            out = await self._client.eval(self._lua, len(keys), *keys, *args)
        return list(out)

    def _down(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self._backoff
        if self._healthy:
            self._healthy = False
            logger.warning(
                "Redis is unreachable for %s (%s); fail mode %s until it answers",
                self._what,
                type(exc).__name__,
                self.fail,
            )
