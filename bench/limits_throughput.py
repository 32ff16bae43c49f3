"""Benchmark: what a limit check costs the gateway, in memory and through Redis.

A gateway on one core doing about 2,000 requests/s has 500 µs of CPU per request; a
redis-py call costs 100 µs or more of it, so one Redis call per request would take
a fifth of the gateway's throughput. The Redis limiter sends every check queued while
a call is in flight in one script call; this measures what that buys.

Three limiters, each with 1 and with 64 concurrent callers on one plain asyncio event
loop, each caller checking in a loop:

- **memory**: ``MemoryLimiter``, the baseline (no network).
- **redis naive**: ``RedisLimiter(coalesce=False)``, one script call per check.
- **redis coalesced**: ``RedisLimiter``, the default: one script call per batch.

Two kinds of request: ``rates`` (a key's requests per minute and its service's rows
per minute, as the gateway asks) and ``rates+slot`` (the same plus a concurrency slot,
released after the check: two operations per request). The limits are high enough
that every check is allowed. Printed per run: checks/s, this process's CPU µs per
check (``time.process_time``), the Redis server's CPU µs per check (from ``INFO
cpu``), and that CPU as a share of a 500 µs request budget.

Run it from the repository root, with Redis at 127.0.0.1:6379 (about 40 s)::

    .venv/bin/python bench/limits_throughput.py [--seconds 2] [--url redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass

import redis

from prodgate.limits import Demand, Limiter, MemoryLimiter, Rate, RedisLimiter, Slot

BUDGET_US = 500.0  # one core at 2,000 requests/s
RPM = Rate("rpm", 1_000_000_000, 60.0)
ROWS = Rate("rows_per_minute", 1_000_000_000, 60.0, unit="rows")


@dataclass
class Run:
    limiter: str
    request: str
    callers: int
    checks: int
    seconds: float
    cpu_s: float
    redis_cpu_s: float

    @property
    def rate(self) -> float:
        return self.checks / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.checks * 1e6

    @property
    def redis_us(self) -> float:
        return self.redis_cpu_s / self.checks * 1e6


def redis_cpu(client: redis.Redis | None) -> float:
    if client is None:
        return 0.0
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def load(lim: Limiter, callers: int, seconds: float, slot: bool) -> int:
    """Check in a loop from *callers* coroutines for *seconds*; how many checks ran."""
    done = 0
    stop = time.monotonic() + seconds

    async def caller(n: int) -> None:
        nonlocal done
        demands = [Demand(f"key:k_{n % 8}", RPM, 1), Demand("service:claims-triage", ROWS, 3)]
        slots = [Slot(f"key:k_{n % 8}", 1_000)] if slot else []
        while time.monotonic() < stop:
            v = await lim.check(demands, slots)
            if not v.allowed or v.degraded:
                raise SystemExit(f"unexpected verdict: {v}")
            if v.lease is not None:
                await lim.release(v.lease)
            done += 1

    await asyncio.gather(*(caller(n) for n in range(callers)))
    return done


async def measure(
    name: str, lim: Limiter, client: redis.Redis | None, request: str, callers: int, seconds: float
) -> Run:
    slot = request == "rates+slot"
    await load(lim, callers, min(0.3, seconds), slot)  # warm-up: connections, script cache
    cpu0, rcpu0, t0 = time.process_time(), redis_cpu(client), time.perf_counter()
    checks = await load(lim, callers, seconds, slot)
    wall = time.perf_counter() - t0
    return Run(
        name,
        request,
        callers,
        checks,
        wall,
        time.process_time() - cpu0,
        redis_cpu(client) - rcpu0,
    )


async def main(url: str, seconds: float) -> list[Run]:
    prefix = f"prodgate-bench:{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(url)
    runs: list[Run] = []
    try:
        for request in ("rates", "rates+slot"):
            for callers in (1, 64):
                lim: Limiter = MemoryLimiter()
                runs.append(await measure("memory", lim, None, request, callers, seconds))
                await lim.close()
                for name, coalesce in (("redis naive", False), ("redis coalesced", True)):
                    lim = RedisLimiter(url, prefix=prefix, coalesce=coalesce, timeout_ms=1000)
                    runs.append(await measure(name, lim, client, request, callers, seconds))
                    await lim.close()
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    return runs


def render(runs: list[Run]) -> str:
    head = (
        f"{'limiter':<16} {'request':<11} {'callers':>7} {'checks/s':>10} "
        f"{'CPU µs/check':>13} {'share of 500 µs':>16} {'Redis CPU µs/check':>19}"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        lines.append(
            f"{r.limiter:<16} {r.request:<11} {r.callers:>7} {r.rate:>10,.0f} "
            f"{r.cpu_us:>13.1f} {r.cpu_us / BUDGET_US:>16.1%} "
            f"{(f'{r.redis_us:.1f}' if r.limiter != 'memory' else '-'):>19}"
        )
    lines.append("")
    by = {(r.limiter, r.request, r.callers): r for r in runs}
    for request in ("rates", "rates+slot"):
        naive, coal = by[("redis naive", request, 64)], by[("redis coalesced", request, 64)]
        memory = by[("memory", request, 64)]
        lines.append(
            f"{request}, 64 callers: coalesced uses {naive.cpu_us / coal.cpu_us:.1f}x less CPU "
            f"per check than naive and runs {coal.rate / naive.rate:.1f}x the checks/s; "
            f"{coal.cpu_us / memory.cpu_us:.1f}x the memory limiter's CPU per check"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0", help="the Redis to use")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per run")
    args = parser.parse_args()
    print(render(asyncio.run(main(args.url, args.seconds))))
