"""Benchmark: what API keys and a limit cost the gateway, against auth off, in one run.

The same ``prodgate serve`` on the bundled claims-triage example (SQLite store, as
``make bench``) in three configurations, each under the same wrk load with the same
request bodies and the same ``Authorization: Bearer KEY`` header:

- **auth off**: ``PRODGATE_AUTH=off``: the header is not looked at, no limit applies.
  The baseline.
- **keys + limit, memory**: ``PRODGATE_AUTH=keys`` (the default) and a key made with
  ``prodgate keys create ... --rpm 10000000``: every request is authenticated (a
  dictionary lookup and a SHA-256), scope-checked, charged on the key's window in the
  process's memory, and answered with the RateLimit header fields.
- **keys + limit, Redis**: the same with ``PRODGATE_REDIS_URL`` set: the charge goes
  to Redis (one Lua script call for every check queued meanwhile), under a prefix of
  this run's, deleted afterwards.

The limit is far above what the load can reach, so every request is admitted: what
is measured is the price of checking, not of refusing. The configurations are
alternated over ``--rounds`` (3: off, memory, Redis, then Redis, memory, off, and so
on, so that a drift of the machine weighs on each alike), each run a fresh server process with a
warm-up. wrk is pinned to one half of the CPUs and the server to the other
(``--no-pin`` turns that off), as in ``bench/gateway_vs_bare.py``. Targets: the
throughput of each keys configuration at least 0.90x that of auth off (mean over the
rounds), no non-2xx answer, and as many audit records as 2xx answers.

Run it from the repository root (about 5 minutes), with Redis at 127.0.0.1:6379::

    make bench-keys
    # or
    .venv/bin/python bench/keys_overhead.py [--duration 20] [--rounds 3] [--markdown [FILE]]

It needs ``wrk``; it exits 2 when wrk is missing, 1 when a target or check fails,
0 when all pass.
"""

from __future__ import annotations

import argparse
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
    Measurement,
    Report,
    add_load_arguments,
    build_example,
    choose_pinning,
    claims,
    command_line,
    create_key,
    emit,
    gateway_stats,
    lua_script,
    machine,
    prodgate_command,
    prodgate_server,
    ratio,
    require_wrk,
    run_main,
    statuses,
    verify_audit,
    warn_if_disturbed,
)
from harness.cluster import delete_prefix, redis_version, unique_name

SERVICE = "claims-triage"
TARGET = 0.90  # keys + limit throughput >= 0.90x auth off
RPM = 10_000_000
OFF, MEMORY, REDIS = "auth off", "keys + limit, memory", "keys + limit, Redis"
CONFIGS = (OFF, MEMORY, REDIS)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="The gateway with API keys and a generous limit (in memory, on Redis) "
        "against auth off, under wrk, in one run.",
    )
    add_load_arguments(p)
    p.add_argument("--rounds", type=int, default=3, help="runs of each configuration [3]")
    p.add_argument("--rows", type=int, default=1000, help="distinct request bodies [1000]")
    p.add_argument("--seed", type=int, default=2024, help="seed of the request bodies [2024]")
    p.add_argument(
        "--redis", default="redis://127.0.0.1:6379/0", help="the Redis of the third configuration"
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


def benchmark(arguments: list[str]) -> int:
    args = parse_args(arguments)
    wrk = require_wrk()
    if wrk is None:
        return EXIT_NO_WRK
    pinning = choose_pinning(not args.no_pin)
    prodgate = prodgate_command()
    warn_if_disturbed()
    prefix = unique_name("prodgate-bench-") + ":"
    settings = {
        OFF: {"PRODGATE_AUTH": "off"},
        MEMORY: {"PRODGATE_AUTH": "keys"},
        REDIS: {
            "PRODGATE_AUTH": "keys",
            "PRODGATE_REDIS_URL": args.redis,
            "PRODGATE_REDIS_PREFIX": prefix,
        },
    }
    runs: list[tuple[str, Measurement]] = []
    with tempfile.TemporaryDirectory(prefix="prodgate-bench-") as tmp:
        work = Path(tmp)
        home = work / "home"
        print(f"building the claims-triage example in {home} ...", flush=True)
        build_example(prodgate, home)
        _, key = create_key(
            prodgate, {"PRODGATE_HOME": str(home)}, "bench", SERVICE, "--rpm", str(RPM)
        )
        headers = {"Authorization": f"Bearer {key}"}
        rows = claims(args.rows, args.seed)
        script = work / "pool.lua"
        script.write_text(lua_script([{"inputs": row} for row in rows], headers))
        load = Load(wrk, script, args.connections, args.threads, pinning, headers)
        first = {"inputs": rows[0]}
        print(
            f"{pinning.note}; wrk {args.connections} connections, {args.threads} threads, "
            f"{args.warmup:g} s warm-up + {args.duration:g} s measured per run; "
            f"order: {', '.join(order(args.rounds))}",
            flush=True,
        )
        try:
            for n, config in enumerate(order(args.rounds)):
                server = prodgate_server(
                    prodgate, home, work, pinning, env=settings[config], name=f"run-{n + 1}"
                )
                server.name = config
                runs.append(
                    (
                        config,
                        load.measure(server, PREDICT_PATH, first, args.warmup, args.duration, True),
                    )
                )
        finally:
            delete_prefix(args.redis, prefix)
        acknowledged = sum(m.acknowledged for _, m in runs)
        audit = verify_audit(prodgate, home, acknowledged)
        print(f"prodgate audit verify: {audit.summary}", flush=True)

    mean = {c: statistics.fmean(m.measured.rps for k, m in runs if k == c) for c in CONFIGS}
    per_round = []
    for r in range(args.rounds):
        rps = {c: m.measured.rps for c, m in runs[3 * r : 3 * r + 3]}
        per_round.append(
            f"round {r + 1}: memory {ratio(rps[MEMORY], rps[OFF]):.3f}x, "
            f"Redis {ratio(rps[REDIS], rps[OFF]):.3f}x"
        )
    errors = sum(m.errors for _, m in runs)
    limited = sum(v for _, m in runs for k, v in statuses(m.metrics_after).items() if k == "429")
    batches = {
        c: statistics.fmean(
            gateway_stats(m.metrics_before, m.metrics_after).mean_batch for k, m in runs if k == c
        )
        for c in CONFIGS
    }
    report = Report(
        servers=[(f"{c} (run {i + 1})", m.measured) for i, (c, m) in enumerate(runs)],
        checks=[
            Check.at_least(
                "throughput keys + limit (memory) / auth off",
                ratio(mean[MEMORY], mean[OFF]),
                TARGET,
            ),
            Check.at_least(
                "throughput keys + limit (Redis) / auth off",
                ratio(mean[REDIS], mean[OFF]),
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
        load=load.describe(args.warmup, args.duration, f"{args.rows:,} generated claims")
        + f", each request with the same Authorization header; {args.rounds} round(s)",
        command=command_line("bench/keys_overhead.py", arguments),
        machine=machine(wrk, LIBRARIES) | {"Redis": redis_version(args.redis)},
        notes=[
            "Mean req/s over the rounds: "
            + ", ".join(f"{c} {mean[c]:,.0f}" for c in CONFIGS)
            + "; per round, against that round's auth off: "
            + "; ".join(per_round)
            + ". Mean model batch: "
            + ", ".join(f"{c} {batches[c]:.1f} rows" for c in CONFIGS)
            + f". Requests refused by the limit (prodgate's /metrics): {limited:.0f}."
        ],
    )
    return emit(report, args.markdown)


if __name__ == "__main__":
    sys.exit(run_main(benchmark))
