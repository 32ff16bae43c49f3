"""Benchmark: what API keys and a limit cost the gateway, against auth off, in one run.

The same ``prodgate serve`` on the bundled claims-triage example (SQLite store, as
``make bench``) in four configurations, each under the same wrk load with the same
request bodies and an ``Authorization: Bearer KEY`` header:

- **auth off**: ``PRODGATE_AUTH=off``: the header is not looked at, no limit applies.
  The baseline.
- **keys, no limit**: ``PRODGATE_AUTH=keys`` (the default) and a key without limits:
  every request is authenticated (a dictionary lookup and a SHA-256) and
  scope-checked; the limit stage is skipped. Authentication alone, for comparison.
- **keys + limit, memory**: a key made with ``prodgate keys create ... --rpm
  10000000``: authenticated, charged on the key's window in the process's memory, and
  answered with the RateLimit header fields.
- **keys + limit, Redis**: the same with ``PRODGATE_REDIS_URL`` set: the charge goes
  to Redis (one Lua script call for every check queued meanwhile). The Redis is a
  private ``redis-server`` pinned to wrk's CPUs, not the server's: in a deployment
  Redis runs elsewhere, and on a small machine a Redis left to float would take the
  gateway's CPU and count as the gateway's cost. Its own CPU per request is reported.
  ``--redis URL`` uses another Redis instead (under a prefix of the run's, deleted
  afterwards).

The limit is far above what the load can reach, so every request is admitted: what
is measured is the price of checking, not of refusing. The four servers (one process
each, all pinned to the servers' CPUs; the waiting ones idle) are started together and
warmed up, then wrk loads them in turn for ``--rounds`` rounds of ``--duration``
seconds (8 of 10 s; off, keys, memory, Redis, then the other way round, and so on).
On a shared machine the speed of the CPU itself drifts, so that one 20 s run can
differ from the next by 20%: short runs alternated many times let each configuration
meet the same drifts. wrk is pinned to one half of the CPUs and the servers to the
other (``--no-pin`` turns that off), as in ``bench/gateway_vs_bare.py``. Targets: the
throughput of each keys + limit configuration (all its rounds together) at least 0.90x
that of auth off, no non-2xx answer, and as many audit records as 2xx answers.

Run it from the repository root (about 7 minutes)::

    make bench-keys
    # or
    .venv/bin/python bench/keys_overhead.py [--duration 10] [--rounds 8] [--markdown [FILE]]

It needs ``wrk``; it exits 2 when wrk is missing, 1 when a target or check fails,
0 when all pass.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness import (
    EXIT_NO_WRK,
    LIBRARIES,
    PREDICT_PATH,
    Check,
    Load,
    Report,
    WrkResult,
    add_load_arguments,
    build_example,
    choose_pinning,
    claims,
    command_line,
    create_key,
    emit,
    gateway_stats,
    load_policies,
    lua_script,
    machine,
    post_json,
    prodgate_command,
    prodgate_server,
    ratio,
    require_wrk,
    run_main,
    running,
    scrape,
    statuses,
    verify_audit,
    warn_if_disturbed,
)
from harness.cluster import (
    RedisServer,
    delete_prefix,
    redis_cpu_seconds,
    redis_version,
    unique_name,
)

SERVICE = "claims-triage"
TARGET = 0.90  # keys + limit throughput >= 0.90x auth off
RPM = 10_000_000
OFF, KEYS = "auth off", "keys, no limit"
MEMORY, REDIS = "keys + limit, memory", "keys + limit, Redis"
CONFIGS = (OFF, KEYS, MEMORY, REDIS)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="The gateway with API keys and a generous limit (in memory, on Redis) "
        "against auth off, under wrk, in one run.",
    )
    add_load_arguments(p, duration=10.0)
    p.add_argument("--rounds", type=int, default=8, help="runs of each configuration [8]")
    p.add_argument("--rows", type=int, default=1000, help="distinct request bodies [1000]")
    p.add_argument("--seed", type=int, default=2024, help="seed of the request bodies [2024]")
    p.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="the Redis of the third configuration [a private redis-server on wrk's CPUs]",
    )
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds is at least 1")
    return args


def order(rounds: int) -> list[str]:
    """off, memory, Redis; then the other way round; and so on."""
    out: list[str] = []
    for r in range(rounds):
        out += list(CONFIGS if r % 2 == 0 else reversed(CONFIGS))
    return out


def combined(results: Sequence[WrkResult]) -> WrkResult:
    """Runs of one configuration as one: requests and seconds summed, each latency
    percentile the median of the runs', the server's CPU the mean, the rest's the most."""
    requests = sum(r.requests for r in results)
    seconds = sum(r.seconds for r in results)
    sockets: dict[str, int] = {}
    for r in results:
        for k, v in r.socket_errors.items():
            sockets[k] = sockets.get(k, 0) + v
    return WrkResult(
        requests=requests,
        seconds=seconds,
        rps=requests / seconds if seconds else 0.0,
        latency_ms={
            q: statistics.median(r.latency_ms[q] for r in results) for q in ("50", "75", "90", "99")
        },
        non2xx=sum(r.non2xx for r in results),
        socket_errors=sockets,
        server_cpu=statistics.fmean(r.server_cpu for r in results),
        other_cpu=max(r.other_cpu for r in results),
    )


def benchmark(arguments: list[str]) -> int:
    args = parse_args(arguments)
    wrk = require_wrk()
    if wrk is None:
        return EXIT_NO_WRK
    pinning = choose_pinning(not args.no_pin)
    prodgate = prodgate_command()
    warn_if_disturbed()
    runs: dict[str, list[WrkResult]] = {c: [] for c in CONFIGS}
    warm: list[WrkResult] = []
    with tempfile.TemporaryDirectory(prefix="prodgate-bench-") as tmp:
        work = Path(tmp)
        private = None if args.redis else RedisServer(work, wrap=pinning.load)
        if private is not None:
            private.start()
        redis_url = private.url if private is not None else args.redis
        where = redis_url
        if private is not None:
            where = "a private redis-server" + (
                f" on wrk's CPU {pinning.load_cpus}" if pinning.active else ""
            )
        prefix = unique_name("prodgate-bench-") + ":"
        settings = {
            OFF: {"PRODGATE_AUTH": "off"},
            KEYS: {"PRODGATE_AUTH": "keys"},
            MEMORY: {"PRODGATE_AUTH": "keys"},
            REDIS: {
                "PRODGATE_AUTH": "keys",
                "PRODGATE_REDIS_URL": redis_url,
                "PRODGATE_REDIS_PREFIX": prefix,
            },
        }
        try:
            home = work / "home"
            print(f"building the claims-triage example in {home} ...", flush=True)
            build_example(prodgate, home)
            load_policies(prodgate, home, args.rows, args.seed)
            at_home = {"PRODGATE_HOME": str(home)}
            limited = create_key(prodgate, at_home, "bench", SERVICE, "--rpm", str(RPM))[1]
            unlimited = create_key(prodgate, at_home, "bench-unlimited", SERVICE)[1]
            rows = claims(args.rows, args.seed)
            loads: dict[str, Load] = {}
            for config in CONFIGS:
                key = unlimited if config == KEYS else limited
                headers = {"Authorization": f"Bearer {key}"}
                script = work / f"pool-{len(loads)}.lua"
                script.write_text(lua_script([{"inputs": row} for row in rows], headers))
                loads[config] = Load(wrk, script, args.connections, args.threads, pinning, headers)
            with contextlib.ExitStack() as stack:
                servers = {}
                for n, config in enumerate(CONFIGS):
                    server = prodgate_server(
                        prodgate, home, work, pinning, env=settings[config], name=f"config-{n}"
                    )
                    server.name = config
                    servers[config] = stack.enter_context(running(server))
                    post_json(
                        server.base + PREDICT_PATH, {"inputs": rows[0]}, loads[config].headers
                    )
                print(
                    f"{pinning.note}; Redis: {where}; wrk {args.connections} connections, "
                    f"{args.threads} threads; {args.warmup:g} s warm-up each, then "
                    f"{args.rounds} rounds of {args.duration:g} s on each: "
                    f"{', '.join(order(2))}, ...",
                    flush=True,
                )
                for config, server in servers.items():
                    url = server.base + PREDICT_PATH
                    warm.append(loads[config].run(url, args.warmup, server.pid))
                before = {c: scrape(s.base) for c, s in servers.items()}
                redis_before = redis_cpu_seconds(redis_url)
                for n, config in enumerate(order(args.rounds)):
                    if n % len(CONFIGS) == 0:
                        print(f"round {n // len(CONFIGS) + 1} of {args.rounds} ...", flush=True)
                    server = servers[config]
                    runs[config].append(
                        loads[config].run(server.base + PREDICT_PATH, args.duration, server.pid)
                    )
                redis_used = redis_cpu_seconds(redis_url) - redis_before
                after = {c: scrape(s.base) for c, s in servers.items()}
            all_runs = [r for rs in runs.values() for r in rs] + warm
            acknowledged = sum(r.ok for r in all_runs) + len(CONFIGS)
            audit = verify_audit(prodgate, home, acknowledged)
            print(f"prodgate audit verify: {audit.summary}", flush=True)
            version = redis_version(redis_url)
        finally:
            if private is not None:
                private.stop()
            else:
                delete_prefix(redis_url, prefix)

    total = {c: combined(runs[c]) for c in CONFIGS}
    per_round: dict[str, list[float]] = {
        c: [ratio(r.rps, o.rps) for r, o in zip(runs[c], runs[OFF], strict=True)]
        for c in (KEYS, MEMORY, REDIS)
    }
    errors = sum(r.errors for r in all_runs)
    refused = sum(statuses(after[c]).get("429", 0.0) for c in CONFIGS)
    stats = {c: gateway_stats(before[c], after[c]) for c in CONFIGS}
    redis_us = 1e6 * redis_used / max(1, total[REDIS].requests)

    def rounds(c: str) -> str:
        values = ", ".join(f"{v:.2f}" for v in per_round[c])
        return f"{values} (median {statistics.median(per_round[c]):.2f})"

    report = Report(
        servers=[(f"{c} ({args.rounds} runs)", total[c]) for c in CONFIGS],
        checks=[
            Check.at_least(
                "throughput keys + limit (memory) / auth off",
                ratio(total[MEMORY].rps, total[OFF].rps),
                TARGET,
            ),
            Check.at_least(
                "throughput keys + limit (Redis) / auth off",
                ratio(total[REDIS].rps, total[OFF].rps),
                TARGET,
            ),
            Check(
                "non-2xx and socket errors, all runs (warm-up included)",
                str(errors),
                "0",
                errors == 0,
            ),
            *audit.checks(),
        ],
        load=(
            f"wrk, {args.connections} connections, {args.threads} threads, bodies cycled from "
            f"a pool of {args.rows:,} generated claims, each request with the same "
            f"Authorization header; the four servers started together, each warmed up "
            f"{args.warmup:g} s, then {args.rounds} rounds of {args.duration:g} s on each in "
            f"alternating order; {pinning.note}; Redis: {where}"
        ),
        command=command_line("bench/keys_overhead.py", arguments),
        machine=machine(wrk, LIBRARIES) | {"Redis": version},
        notes=[
            "Latency columns: the median over the runs of each run's percentile. "
            f"Keys without a limit (authentication alone): "
            f"{ratio(total[KEYS].rps, total[OFF].rps):.2f}x auth off. "
            f"Each round against its own auth off: keys alone {rounds(KEYS)}; memory "
            f"{rounds(MEMORY)}; Redis {rounds(REDIS)}. Redis's own CPU: {redis_us:.0f} us a "
            "request (in 'other CPU' for the Redis runs). Mean model batch: "
            + ", ".join(f"{c} {stats[c].mean_batch:.1f} rows" for c in CONFIGS)
            + f". Requests refused by the limit (prodgate's /metrics): {refused:.0f}."
        ],
    )
    return emit(report, args.markdown)


if __name__ == "__main__":
    sys.exit(run_main(benchmark))
