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

import itertools
import logging
import secrets
from collections.abc import Sequence

from prodgate.limits.script import CHARGE, CHECK, LUA, SHA, Batch, answer_size
from prodgate.limits.scripted import ScriptedRedis, ScriptJob
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


class _Job(ScriptJob):
    """One request's part of a batch: a check, a charge or a release (``r``)."""

    __slots__ = ("demands", "lease_id", "slots", "subjects")

    def __init__(
        self,
        kind: str,
        demands: Sequence[Demand] = (),
        slots: Sequence[Slot] = (),
        lease_id: str = "",
        subjects: Sequence[str] = (),
    ) -> None:
        super().__init__(kind)
        self.demands = demands
        self.slots = slots
        self.lease_id = lease_id
        self.subjects = subjects  # a release's subjects


class RedisLimiter(ScriptedRedis):
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
        super().__init__(
            url,
            lua=LUA,
            sha=SHA,
            what="limits",
            timeout_ms=timeout_ms,
            fail=fail,
            backoff_s=backoff_s,
            coalesce=coalesce,
        )
        self.prefix = prefix
        self._lease_ms = max(1, round(lease_ttl_s * 1000))
        self._tag = secrets.token_hex(6)
        self._ids = itertools.count(1)

    async def check(self, demands: Sequence[Demand], slots: Sequence[Slot] = ()) -> Verdict:
        """Admit the request and charge every demand and take every slot, or none."""
        if not demands and not slots:
            return no_limits()
        slots = unique_slots(slots)
        if self._resting():
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

    # -- the script's side of the transport (limits.scripted) ----------------------------

    def _pack(self, jobs: Sequence[ScriptJob]) -> tuple[list[str], list[str | int]]:
        batch = Batch(self.prefix, self._lease_ms)
        for job in jobs:
            assert isinstance(job, _Job)
            if job.kind == "r":
                batch.add_release(job.lease_id, job.subjects)
            else:
                batch.add(job.kind, job.demands, job.slots, job.lease_id)
        return batch.keys, batch.argv()

    def _split(self, jobs: Sequence[ScriptJob], out: list[int]) -> list[list[int]]:
        answers: list[list[int]] = []
        at = 0
        for job in jobs:
            assert isinstance(job, _Job)
            n = answer_size(job.kind, len(job.demands), len(job.slots))
            answers.append(out[at : at + n])
            at += n
        return answers

    def _keep(self, job: ScriptJob) -> bool:
        return job.kind != CHECK  # charges and releases change state: sent all the same

    def _orphan(self, job: ScriptJob, answer: list[int]) -> ScriptJob | None:
        # A check whose caller left while it was in flight took its slots: give them back.
        if isinstance(job, _Job) and job.kind == CHECK and job.slots and answer[0] == 1:
            return _Job("r", lease_id=job.lease_id, subjects=tuple(s.subject for s in job.slots))
        return None


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
