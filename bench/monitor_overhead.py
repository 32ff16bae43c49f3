"""Benchmark: what production monitoring costs the gateway, against monitoring off, in one run.

The same ``prodgate serve`` on the bundled claims-triage example (SQLite store, as
``make bench``; version 1 registered with its training data, so it has a reference
profile when the statistics core is installed) in two configurations, each under the
same wrk load with the same request bodies and the same API key:

- **monitoring off**: ``PRODGATE_MONITOR=off``: no windows are counted. The baseline.
- **monitoring on**: the default: every durable group of audit records is counted in
  the recorder's writer thread into the version's window (each input field binned on
  the reference profile's edges, categories, nulls, the prediction and its
  confidence, calibration counts), and the running totals are written with a group
  commit every ``PRODGATE_MONITOR_FLUSH`` seconds (default 5).

The two servers (one process each, pinned to the servers' CPUs; the waiting one idle)
are started together and warmed up, then wrk loads them in turn for ``--rounds``
rounds of ``--duration`` seconds (10 of 10 s; off, on, then on, off, and so on): on a
shared machine the speed of the CPU itself drifts, so short runs alternated many
times let both configurations meet the same drifts, and the spread of the per-round
ratios says how much a single comparison can be trusted. wrk is pinned to one half of
the CPUs and the servers to the other (``--no-pin`` turns that off). Targets: the
throughput of monitoring on (all its rounds together) at least 0.95x that of
monitoring off, and its server CPU per request (the process's CPU time over the
requests it answered: what monitoring adds to each request, less disturbed by the
rest of a busy machine than throughput) at most 1.05x; no non-2xx answer, as many
audit records as 2xx answers, and the windows in the store counting every request
monitoring on answered.

Run it from the repository root (about 7 minutes)::

    make bench-monitor
    # or
    .venv/bin/python bench/monitor_overhead.py [--duration 10] [--rounds 10] [--markdown [FILE]]

It needs ``wrk``; it exits 2 when wrk is missing, 1 when a target or check fails,
0 when all pass.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import orjson

from harness import (
    EXIT_NO_WRK,
    LIBRARIES,
    PREDICT_PATH,
    Check,
    Load,
    Report,
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
    verify_audit,
    warn_if_disturbed,
)
from harness.rounds import alternate, order
from keys_overhead import combined

SERVICE = "claims-triage"
TARGET = 0.95  # monitoring on throughput >= 0.95x monitoring off
CPU_TARGET = 1.05  # and its server CPU per request at most 1.05x
OFF, ON = "monitoring off", "monitoring on"
CONFIGS = (OFF, ON)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="The gateway with production monitoring on against off, under wrk, in one run.",
    )
    add_load_arguments(p, duration=10.0)
    p.add_argument("--rounds", type=int, default=10, help="runs of each configuration [10]")
    p.add_argument("--rows", type=int, default=1000, help="distinct request bodies [1000]")
    p.add_argument("--seed", type=int, default=2024, help="seed of the request bodies [2024]")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds is at least 1")
    return args


def windows(db: Path) -> tuple[int, int, bool]:
    """(requests counted in the stored windows, replicas that wrote them, whether they
    were binned on a reference profile)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT replica, counts FROM monitor_windows").fetchall()
    counted = [orjson.loads(c) for _, c in rows]
    binned = any(c.get("reference") for c in counted)
    return sum(int(c["requests"]) for c in counted), len({r for r, _ in rows}), binned


def observe_cost(home: Path, rows: Sequence[dict[str, object]], group: int = 60) -> float:
    """Microseconds the tally takes per answered record of these rows, in this
    process: observed in groups of *group* (the gateway's group commits hold about that
    many here), then folded and serialised as a flush does, binned on version 1's stored
    profile if it has one: the best of 5."""
    import time

    from prodgate import spec as spec_module
    from prodgate.monitor.tally import Tally
    from prodgate.pipeline.records import inference_record

    spec = spec_module.load(home / "example" / "prodgate.yaml").service(SERVICE)
    with contextlib.closing(sqlite3.connect(f"file:{home / 'prodgate.db'}?mode=ro", uri=True)) as c:
        found = c.execute(
            "SELECT profile FROM profiles WHERE service = ? AND version = 1", (SERVICE,)
        ).fetchone()
    # The gateway counts the rows as the model sees them (the policy's features added),
    # less the entity key.
    schema = spec.model_contract
    keys = set(spec.features.entities)
    monitored = {
        **schema,
        "properties": {k: v for k, v in schema["properties"].items() if k not in keys},
        "required": [k for k in schema.get("required", []) if k not in keys],
    }
    tally = Tally("bench", {SERVICE: spec.kind}, {SERVICE: monitored}, {SERVICE: 300.0})
    if found:
        tally.use_profiles({(SERVICE, 1): orjson.loads(found[0])})
    now = time.time_ns() // 1000
    records = [
        inference_record(
            action="predict",
            service=SERVICE,
            version=1,
            status=200,
            decision="auto",
            payload={"input": row, "output": {"prediction": "fast_track", "probabilities": {}}},
            ts_us=now,
            latency_ms=1.0,
            confidence=0.83,
        )
        for row in rows
    ]
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for i in range(0, len(records), group):
            tally.observe(records[i : i + group])
        tally.pending(now)
        best = min(best, time.perf_counter() - started)
    return 1e6 * best / len(records)


def benchmark(arguments: list[str]) -> int:
    args = parse_args(arguments)
    wrk = require_wrk()
    if wrk is None:
        return EXIT_NO_WRK
    pinning = choose_pinning(not args.no_pin)
    prodgate = prodgate_command()
    warn_if_disturbed()
    settings = {OFF: {"PRODGATE_MONITOR": "off"}, ON: {"PRODGATE_MONITOR": "on"}}
    with tempfile.TemporaryDirectory(prefix="prodgate-bench-") as tmp:
        work = Path(tmp)
        home = work / "home"
        print(f"building the claims-triage example in {home} ...", flush=True)
        build_example(prodgate, home)
        load_policies(prodgate, home, args.rows, args.seed)
        key = create_key(prodgate, {"PRODGATE_HOME": str(home)}, "bench", SERVICE)[1]
        headers = {"Authorization": f"Bearer {key}"}
        rows = claims(args.rows, args.seed)
        script = work / "pool.lua"
        script.write_text(lua_script([{"inputs": row} for row in rows], headers))
        load = Load(wrk, script, args.connections, args.threads, pinning, headers)
        with contextlib.ExitStack() as stack:
            servers = {}
            for n, config in enumerate(CONFIGS):
                server = prodgate_server(
                    prodgate, home, work, pinning, env=settings[config], name=f"config-{n}"
                )
                server.name = config
                servers[config] = stack.enter_context(running(server))
                post_json(server.base + PREDICT_PATH, {"inputs": rows[0]}, headers)
            print(
                f"{pinning.note}; wrk {args.connections} connections, {args.threads} threads; "
                f"{args.warmup:g} s warm-up each, then {args.rounds} rounds of "
                f"{args.duration:g} s on each: {', '.join(order(CONFIGS, 2))}, ...",
                flush=True,
            )
            measured = alternate(load, servers, args.rounds, args.duration, args.warmup)
            runs, warm = measured.runs, measured.warm
            before, after = measured.before, measured.after
        # Both servers stopped: monitoring on flushed its last counts as it closed.
        all_runs = [r for rs in runs.values() for r in rs] + list(warm.values())
        acknowledged = sum(r.ok for r in all_runs) + len(CONFIGS)
        audit = verify_audit(prodgate, home, acknowledged)
        print(f"prodgate audit verify: {audit.summary}", flush=True)
        answered_on = sum(r.ok for r in runs[ON]) + warm[ON].ok + 1
        counted, replicas, binned = windows(home / "prodgate.db")
        # Records keep the rows the model saw: the bodies with the policy's features.
        per_record_us = observe_cost(home, claims(args.rows, args.seed, features=True))

    total = {c: combined(runs[c]) for c in CONFIGS}
    per_round = [ratio(on.rps, off.rps) for on, off in zip(runs[ON], runs[OFF], strict=True)]
    errors = sum(r.errors for r in all_runs)
    stats = {c: gateway_stats(before[c], after[c]) for c in CONFIGS}
    cpu_per_request = {
        c: 1e6 * total[c].server_cpu * total[c].seconds / max(1, total[c].requests) for c in CONFIGS
    }
    rounds = ", ".join(f"{v:.3f}" for v in per_round)
    spread = (
        f"median {statistics.median(per_round):.3f}, min {min(per_round):.3f}, "
        f"max {max(per_round):.3f}"
    )
    if len(per_round) > 1:
        spread += f", stdev {statistics.stdev(per_round):.3f}"
    report = Report(
        servers=[(f"{c} ({args.rounds} runs)", total[c]) for c in CONFIGS],
        checks=[
            Check.at_least(
                "throughput monitoring on / off", ratio(total[ON].rps, total[OFF].rps), TARGET
            ),
            Check.at_most(
                "server CPU per request monitoring on / off",
                ratio(cpu_per_request[ON], cpu_per_request[OFF]),
                CPU_TARGET,
            ),
            Check(
                "non-2xx and socket errors, all runs (warm-up included)",
                str(errors),
                "0",
                errors == 0,
            ),
            Check(
                "requests in the stored windows vs 2xx answers with monitoring on",
                f"{counted:,} vs {answered_on:,}",
                "windows >= 2xx",
                counted >= answered_on,
            ),
            *audit.checks(),
        ],
        load=(
            f"wrk, {args.connections} connections, {args.threads} threads, bodies cycled from "
            f"a pool of {args.rows:,} generated claims, each request with the same "
            f"Authorization header; the two servers started together, each warmed up "
            f"{args.warmup:g} s, then {args.rounds} rounds of {args.duration:g} s on each in "
            f"alternating order; {pinning.note}"
        ),
        command=command_line("bench/monitor_overhead.py", arguments),
        machine=machine(wrk, LIBRARIES),
        notes=[
            "Latency columns: the median over the runs of each run's percentile. "
            f"Each round's throughput on / off: {rounds} ({spread}). "
            f"Windows binned on a reference profile: {'yes' if binned else 'no'}; "
            f"counting one answered record (Tally.observe and the flush's fold, measured "
            f"apart in this process): {per_record_us:.1f} us; "
            f"replicas that wrote windows: {replicas}. Server CPU per request "
            f"(whole process): off {cpu_per_request[OFF]:.0f} us, "
            f"on {cpu_per_request[ON]:.0f} us. Mean audit group commit: "
            + ", ".join(
                f"{c} {stats[c].mean_commit_records:.1f} records in "
                f"{stats[c].mean_commit_ms:.2f} ms"
                for c in CONFIGS
            )
            + "."
        ],
    )
    return emit(report, args.markdown)


if __name__ == "__main__":
    sys.exit(run_main(benchmark))
