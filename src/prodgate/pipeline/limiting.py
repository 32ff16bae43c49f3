"""The limit stage: the caller's key and the service, each within its limits.

A request is charged on every rate that applies to it, all or nothing, in one check
of the limiter (one Redis round trip, shared with the requests around it, or memory):
the key's requests per second and per minute and rows per minute, and the same of
the service as a whole (``limits:`` in its spec); and it holds a concurrency slot of
each until it is answered. A request with no limits on it skips the stage entirely.

Over a limit: 429, with ``Retry-After`` and the ``RateLimit-Policy`` / ``RateLimit``
header fields, recorded like every refusal and counted in
``prodgate_rate_limited_total``. An answered request carries the header fields too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from prodgate.exceptions import RateLimitedError
from prodgate.identity.key import LIMITS, RATES
from prodgate.identity.keyring import Principal
from prodgate.limits import Demand, Lease, Limiter, Rate, Slot, Verdict
from prodgate.limits.verdict import CONCURRENCY, policy_field, ratelimit_field
from prodgate.pipeline.exchange import Exchange
from prodgate.pipeline.metrics import Metrics


def rates(limits: Mapping[str, int]) -> tuple[tuple[Rate, bool], ...]:
    """The rates of a limits mapping (a key's or a service's), each with whether it
    counts rows rather than requests. Only request and row rates: token limits and
    budgets are reserved per LLM call (``pipeline/spending.py``), concurrency is a slot."""
    out = []
    for name, value in sorted(limits.items()):
        if name not in RATES:
            continue
        _, unit, period = LIMITS[name]
        out.append((Rate(name, value, period, unit), unit == "rows"))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one caller's requests to one service are charged on, built once: the
    demands of one unit (requests), the rates charged by rows, the slots, and the
    ``RateLimit-Policy`` field with each limit's name in it."""

    caller: Principal
    fixed: tuple[Demand, ...]
    by_rows: tuple[tuple[str, Rate], ...]
    slots: tuple[Slot, ...]
    names: list[str]
    policy: str

    def demands(self, rows: int) -> list[Demand]:
        return [*self.fixed, *(Demand(s, rate, rows) for s, rate in self.by_rows)]


class Limits:
    """The limit stage of every service, over one limiter."""

    def __init__(
        self, limiter: Limiter, services: Mapping[str, Mapping[str, int]], metrics: Metrics
    ) -> None:
        self.limiter = limiter
        self.metrics = metrics
        self._services = {name: dict(lim) for name, lim in services.items()}
        # One plan per (key, service), made again when the key changed (the keyring
        # makes a new principal then).
        self._plans: dict[tuple[str | None, str], _Plan | None] = {}

    def _plan(self, caller: Principal, service: str, requests_only: bool = False) -> _Plan | None:
        key = (caller.key_id, service if not requests_only else "")
        if key in self._plans:
            plan = self._plans[key]
            if plan is None or plan.caller is caller:
                return plan
        plan = self._plans[key] = self._make(caller, service, requests_only)
        return plan

    def _make(self, caller: Principal, service: str, requests_only: bool) -> _Plan | None:
        owners: list[tuple[str, Mapping[str, int]]] = []
        if caller.key_id is not None and caller.limits:
            owners.append((f"key:{caller.key_id}", caller.limits))
        if not requests_only and service in self._services:
            owners.append((f"service:{service}", self._services[service]))
        fixed: list[Demand] = []
        by_rows: list[tuple[str, Rate]] = []
        slots: list[Slot] = []
        for subject, limits in owners:
            for rate, counts_rows in rates(limits):
                if not counts_rows:
                    fixed.append(Demand(subject, rate, 1))
                elif not requests_only:
                    by_rows.append((subject, rate))
            if CONCURRENCY in limits:
                slots.append(Slot(subject, limits[CONCURRENCY]))
        if not (fixed or by_rows or slots):
            return None
        # The names follow the order of a check: fixed demands, rows, then slots.
        example: list[Demand | Slot] = [*fixed, *(Demand(s, r, 1) for s, r in by_rows), *slots]
        names, policy = policy_field(example)
        return _Plan(caller, tuple(fixed), tuple(by_rows), tuple(slots), names, policy)

    async def admit(self, ex: Exchange) -> None:
        """Charge *ex* on its limits; RateLimitedError when one refuses."""
        plan = self._plan(ex.caller, ex.service)
        if plan is None:
            return
        verdict = await self.limiter.check(plan.demands(len(ex.rows)), plan.slots)
        ex.lease = verdict.lease
        if not verdict.allowed:
            raise self._refusal(verdict)
        if verdict.usage:
            ex.limit_headers = {
                "RateLimit-Policy": plan.policy,
                "RateLimit": ratelimit_field(plan.names, verdict.usage),
            }

    def _refusal(self, verdict: Verdict) -> RateLimitedError:
        binding = verdict.binding
        if verdict.degraded:
            subject, name = "-", "unavailable"
        elif isinstance(binding, Slot):
            subject, name = binding.subject.partition(":")[0], CONCURRENCY
        elif binding is not None:
            subject, name = binding.subject.partition(":")[0], binding.rate.name
        else:
            subject, name = "-", "-"
        self.metrics.rate_limited.labels(subject, name).inc()
        retry = max(1, math.ceil(verdict.retry_after_s))
        headers = verdict.headers()
        headers["Retry-After"] = str(retry)
        return RateLimitedError(verdict.reason or "over a limit", retry, headers)

    async def admit_call(self, caller: Principal) -> Lease | None:
        """Charge one request of *caller* on another route than predict: the key's
        request rates and concurrency (rows and the services' limits are predict's).
        RateLimitedError when one refuses; the lease to give back when it is done."""
        plan = self._plan(caller, "", requests_only=True)
        if plan is None:
            return None
        verdict = await self.limiter.check(plan.fixed, plan.slots)
        if not verdict.allowed:
            raise self._refusal(verdict)
        return verdict.lease

    async def release_lease(self, lease: Lease) -> None:
        await self.limiter.release(lease)

    async def release(self, ex: Exchange) -> None:
        if ex.lease is not None:
            lease, ex.lease = ex.lease, None
            await self.limiter.release(lease)
