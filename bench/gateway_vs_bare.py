"""Benchmark: prodgate's whole predict pipeline against a bare pilot and a hello world.

Three servers, one after another, get the same load with the same request bodies:

- **prodgate**: ``prodgate serve`` on the bundled claims-triage example (a
  scikit-learn Pipeline of a ColumnTransformer and a HistGradientBoostingClassifier,
  saved with skops); every ``POST /v1/services/claims-triage/predict`` goes through the
  JSON Schema contract, micro-batching, the decision and a hash-chained audit record
  committed to SQLite (WAL, ``synchronous=FULL``) before the response is sent.
- **bare**: ``bench/bare_fastapi.py``, the same model the way most pilots serve one: a
  sync FastAPI endpoint (run in FastAPI's threadpool) that builds a one-row DataFrame
  and calls ``predict_proba`` per request; no validation, no audit. The baseline
  prodgate replaces.
- **hello**: ``bench/hello_fastapi.py``, an ``async def`` FastAPI endpoint that parses
  the same JSON body and returns a constant object: no model, no work. The ceiling of
  the stack itself, so the ratio to it is the price of everything prodgate does.

All three run under uvicorn in one process (uvloop and httptools as installed, access
log off), on prodgate's defaults (``PRODGATE_*`` variables are dropped from their
environment): so prodgate asks for an API key, and every request to all three carries
``Authorization: Bearer KEY``, a key made for the run with no limits. The load is wrk
(``bench/harness``): 64 connections, 2 threads, each request the next body from a
pool of 1,000 varied valid claims (the example's generator, another seed than
training), a 5 s warm-up and then 20 s measured. On a
machine with at least two CPUs wrk is pinned to half of them and the server to the
other half with ``taskset`` (the same for all three), so the load generator does not
steal the server's CPU; ``--no-pin`` turns that off. The "other CPU" column is what
the rest of the machine used during a run; above 10% of a CPU the report says the
figures are disturbed.

Targets: prodgate's throughput at least half the hello world's (the whole pipeline,
durable record included, costs at most as much again as the framework's own request
handling), at least 10x the bare endpoint's (batching amortises the model's per-call
cost that the bare endpoint pays per request), and its p99 latency at most 0.3x the
bare endpoint's. prodgate answers no non-2xx, warm-up included. After its run,
``prodgate audit verify`` walks the audit chain, and the number of records must be
at least the number of 2xx responses wrk counted: every acknowledged response has a
durable record.

Run it from the repository root (about 90 s)::

    make bench
    # or
    .venv/bin/python bench/gateway_vs_bare.py [--duration 20] [--markdown [FILE]]

It needs ``wrk`` (``apt-get install wrk``; ``brew install wrk`` on macOS). It exits 2
when wrk is missing, 1 when a target or check fails, 0 when all pass.
``--markdown`` prints a results section for ``docs/benchmarks.md``;
``--markdown docs/benchmarks.md`` appends it to that file.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import (
    EXIT_NO_WRK,
    LIBRARIES,
    PREDICT_PATH,
    Check,
    Load,
    Measurement,
    Report,
    Server,
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
    model_path,
    prodgate_command,
    prodgate_server,
    ratio,
    require_wrk,
    run_main,
    statuses,
    uvicorn_server,
    verify_audit,
    warn_if_disturbed,
)
from hello_fastapi import ANSWER as HELLO_ANSWER

PILOT_PATH = "/predict"
SERVICE = "claims-triage"
HELLO_TARGET = 0.5  # prodgate req/s >= 0.5x hello world
THROUGHPUT_TARGET = 10.0  # prodgate req/s >= 10x bare
P99_TARGET = 0.3  # prodgate p99 <= 0.3x bare


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="prodgate's predict pipeline against a bare pilot endpoint and a hello "
        "world, under wrk.",
    )
    add_load_arguments(p)
    p.add_argument("--rows", type=int, default=1000, help="distinct request bodies [1000]")
    p.add_argument("--seed", type=int, default=2024, help="seed of the request bodies [2024]")
    p.add_argument(
        "--home", type=Path, default=None, help="prodgate home to use (default: a temporary one)"
    )
    return p.parse_args(argv)


def same_model(gateway_answer: dict[str, Any], bare_answer: dict[str, Any]) -> bool:
    """Both servers gave the same probabilities for the same row (label names differ)."""
    ours = sorted(gateway_answer["probabilities"].values())
    theirs = sorted(bare_answer["probabilities"].values())
    return len(ours) == len(theirs) and all(
        math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(ours, theirs, strict=True)
    )


def report_failures(gw: Measurement) -> None:
    """Shout about prodgate's failed requests, with what it counted and its log."""
    print(
        "\n!!! PRODGATE FAILED REQUESTS: non-2xx (socket errors) "
        f"warm-up {gw.warmup.describe_errors()}, measured {gw.measured.describe_errors()}; "
        f"predict statuses by prodgate's /metrics: {statuses(gw.metrics_after)}\n"
        f"!!! end of its log:\n{gw.log[-2000:]}\n",
        flush=True,
    )


def benchmark(arguments: list[str]) -> int:
    args = parse_args(arguments)
    wrk = require_wrk()
    if wrk is None:
        return EXIT_NO_WRK
    pinning = choose_pinning(not args.no_pin)
    prodgate = prodgate_command()
    warn_if_disturbed()

    with tempfile.TemporaryDirectory(prefix="prodgate-bench-") as tmp:
        work = Path(tmp)
        home = args.home.resolve() if args.home else work / "home"
        print(f"building the claims-triage example in {home} ...", flush=True)
        build_example(prodgate, home)
        # Callers send a claim's policy_id; the gateway looks up the policy's features.
        load_policies(prodgate, home, args.rows, args.seed)
        # prodgate asks for an API key by default; a key without limits, sent to all three.
        _, key = create_key(prodgate, {"PRODGATE_HOME": str(home)}, "bench", SERVICE)
        headers = {"Authorization": f"Bearer {key}"}
        rows = claims(args.rows, args.seed)
        script = work / "pool.lua"
        script.write_text(lua_script([{"inputs": row} for row in rows], headers))
        load = Load(wrk, script, args.connections, args.threads, pinning, headers)
        first = {"inputs": rows[0]}
        print(
            f"{pinning.note}; wrk {args.connections} connections, {args.threads} threads, "
            f"{args.warmup:g} s warm-up + {args.duration:g} s measured per server",
            flush=True,
        )

        def measure(server: Server, path: str, metrics: bool = False) -> Measurement:
            return load.measure(server, path, first, args.warmup, args.duration, metrics)

        gw = measure(prodgate_server(prodgate, home, work, pinning), PREDICT_PATH, metrics=True)
        if gw.errors:
            report_failures(gw)
        audit = verify_audit(prodgate, home, gw.acknowledged)
        print(f"prodgate audit verify: {audit.summary}", flush=True)
        # The pilot reads the same policies' features from the same files, per request.
        bare_env = {"BARE_MODEL": str(model_path(home)), "BARE_POLICIES": str(home / "example")}
        bare = measure(
            uvicorn_server("bare FastAPI", "bare_fastapi:app", work, pinning, bare_env), PILOT_PATH
        )
        hello = measure(
            uvicorn_server("hello FastAPI", "hello_fastapi:app", work, pinning), PILOT_PATH
        )

    if not same_model(gw.sample, bare.sample):
        print(
            f"warning: prodgate and the bare endpoint disagree on the same row: "
            f"prodgate {gw.sample}, bare {bare.sample}",
            file=sys.stderr,
        )
    if hello.sample != HELLO_ANSWER:
        print(f"warning: the hello world answered {hello.sample}", file=sys.stderr)

    p, b, h = gw.measured, bare.measured, hello.measured
    report = Report(
        servers=[
            ("prodgate (whole pipeline)", p),
            ("bare FastAPI (predict_proba)", b),
            ("hello-world FastAPI", h),
        ],
        checks=[
            Check.at_least("throughput prodgate / hello", ratio(p.rps, h.rps), HELLO_TARGET),
            Check.at_least("throughput prodgate / bare", ratio(p.rps, b.rps), THROUGHPUT_TARGET),
            Check.at_most(
                "p99 latency prodgate / bare",
                ratio(p.latency_ms["99"], b.latency_ms["99"]),
                P99_TARGET,
            ),
            Check(
                "prodgate non-2xx and socket errors (warm-up included)",
                str(gw.errors),
                "0",
                gw.errors == 0,
            ),
            *audit.checks(),
        ],
        load=load.describe(args.warmup, args.duration, f"{args.rows:,} generated claims"),
        command=command_line("bench/gateway_vs_bare.py", arguments),
        machine=machine(wrk, LIBRARIES),
        notes=[gateway_stats(gw.metrics_before, gw.metrics_after).describe()],
    )
    code = emit(report, args.markdown)
    if gw.errors:
        print(
            f"\n!!! prodgate failed {gw.errors} requests "
            f"(statuses {statuses(gw.metrics_after)}): see above",
            flush=True,
        )
    return code


if __name__ == "__main__":
    sys.exit(run_main(benchmark))
