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

from prodgate.exceptions import RateLimitedError
from prodgate.identity.key import LIMITS
from prodgate.identity.keyring import Principal
from prodgate.limits import Demand, Lease, Limiter, Rate, Slot, Verdict
from prodgate.pipeline.exchange import Exchange
from prodgate.pipeline.metrics import Metrics

CONCURRENCY = "concurrency"


def rates(limits: Mapping[str, int]) -> tuple[tuple[Rate, bool], ...]:
    """The rates of a limits mapping (a key's or a service's), each with whether it
    counts rows rather than requests."""
    out = []
    for name, value in sorted(limits.items()):
        if name == CONCURRENCY or name not in LIMITS:
            continue
        _, unit, period = LIMITS[name]
        out.append((Rate(name, value, period, unit), unit == "rows"))
    return tuple(out)


class Limits:
    """The limit stage of every service, over one limiter."""

    def __init__(
        self, limiter: Limiter, services: Mapping[str, Mapping[str, int]], metrics: Metrics
    ) -> None:
        self.limiter = limiter
        self.metrics = metrics
        self._service_rates = {name: rates(lim) for name, lim in services.items()}
        self._service_slots = {
            name: Slot(f"service:{name}", lim[CONCURRENCY])
            for name, lim in services.items()
            if CONCURRENCY in lim
        }
        # A key's rates, built once per principal (the keyring makes a new principal
        # when the key changes).
        self._key_rates: dict[str, tuple[Principal, tuple[tuple[Rate, bool], ...]]] = {}

    def _key(self, caller: Principal) -> tuple[tuple[Rate, bool], ...]:
        if caller.key_id is None or not caller.limits:
            return ()
        found = self._key_rates.get(caller.key_id)
        if found is None or found[0] is not caller:
            found = self._key_rates[caller.key_id] = (caller, rates(caller.limits))
        return found[1]

    async def admit(self, ex: Exchange) -> None:
        """Charge *ex* on its limits; RateLimitedError when one refuses."""
        service, caller = ex.service, ex.caller
        key_rates = self._key(caller)
        service_rates = self._service_rates.get(service, ())
        slots: list[Slot] = []
        if caller.key_id is not None and CONCURRENCY in caller.limits:
            slots.append(Slot(f"key:{caller.key_id}", caller.limits[CONCURRENCY]))
        service_slot = self._service_slots.get(service)
        if service_slot is not None:
            slots.append(service_slot)
        if not (key_rates or service_rates or slots):
            return
        rows = len(ex.rows)
        demands = [
            Demand(f"key:{caller.key_id}", rate, rows if by_rows else 1)
            for rate, by_rows in key_rates
        ]
        demands += [
            Demand(f"service:{service}", rate, rows if by_rows else 1)
            for rate, by_rows in service_rates
        ]
        verdict = await self.limiter.check(demands, slots)
        ex.lease = verdict.lease
        if verdict.allowed:
            ex.limit_headers = verdict.headers()
            return
        raise self._refusal(verdict)

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
        key_rates = [(r, rows) for r, rows in self._key(caller) if not rows]
        slots = []
        if caller.key_id is not None and CONCURRENCY in caller.limits:
            slots.append(Slot(f"key:{caller.key_id}", caller.limits[CONCURRENCY]))
        if not (key_rates or slots):
            return None
        demands = [Demand(f"key:{caller.key_id}", rate, 1) for rate, _ in key_rates]
        verdict = await self.limiter.check(demands, slots)
        if not verdict.allowed:
            raise self._refusal(verdict)
        return verdict.lease

    async def release_lease(self, lease: Lease) -> None:
        await self.limiter.release(lease)

    async def release(self, ex: Exchange) -> None:
        if ex.lease is not None:
            lease, ex.lease = ex.lease, None
            await self.limiter.release(lease)
