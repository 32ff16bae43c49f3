"""Benchmark: what review costs the gateway, against review off, in one run.

The same ``prodgate serve`` on the bundled claims-triage example (SQLite store, as
``make bench``) in two configurations, each under the same wrk load with the same
request bodies and the same API key:

- **review off**: the example's spec without its ``review:`` section. The baseline.
- **review on**: the example's spec as it is: each answered decision is judged at the
  decide stage (the high-value rule on the row, a 5% sample by a hash of the
  inference id), and the items are inserted by the recorder in the same group commit
  as the audit records; the server's explainer explains new items off the request
  path (TreeSHAP, in a thread of its own), as it would in production.

The servers are started together, warmed up, then loaded in turn for ``--rounds``
rounds of ``--duration`` seconds in alternating order (off, on; on, off; ...), server
and wrk pinned to different CPUs (``--no-pin`` turns that off). Targets: review on's
throughput at least 0.95x review off's and its server CPU per request at most 1.05x
(the explainer's CPU included); no non-2xx answer; every marked record has its item.

Run it from the repository root (about 5 minutes)::

    make bench-review
    # or
    .venv/bin/python bench/review_overhead.py [--duration 10] [--rounds 8] [--markdown [FILE]]

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

import yaml

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
TARGET = 0.95  # review on's throughput >= 0.95x review off's
CPU_TARGET = 1.05  # and its server CPU per request at most 1.05x
OFF, ON = "review off", "review on"
CONFIGS = (OFF, ON)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="The gateway with review on against off, under wrk, in one run.",
    )
    add_load_arguments(p, duration=10.0)
    p.add_argument("--rounds", type=int, default=8, help="runs of each configuration [8]")
    p.add_argument("--rows", type=int, default=1000, help="distinct request bodies [1000]")
    p.add_argument("--seed", type=int, default=2024, help="seed of the request bodies [2024]")
    p.add_argument(
        "--explain-interval",
        default=None,
        help="PRODGATE_REVIEW_EXPLAIN_INTERVAL of the review-on server [prodgate's default]",
    )
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds is at least 1")
    return args


def without_review(spec: Path) -> Path:
    """A copy of *spec* beside it (its feature sources are relative to it) with no
    ``review:`` section."""
    document = yaml.safe_load(spec.read_text(encoding="utf-8"))
    document["services"][SERVICE].pop("review", None)
    copy = spec.with_name("prodgate-no-review.yaml")
    copy.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return copy


def items(db: Path) -> tuple[int, int]:
    """(review items, audit records marked for review) in the store."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        made = conn.execute("SELECT count(*) FROM review_items").fetchone()[0]
        marked = conn.execute(
            "SELECT count(*) FROM audit_log WHERE kind = 'inference' AND payload LIKE ?",
            ('%"review":{"cohort"%',),
        ).fetchone()[0]
    return int(made), int(marked)


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
        home = work / "home"
        print(f"building the claims-triage example in {home} ...", flush=True)
        build_example(prodgate, home)
        load_policies(prodgate, home, args.rows, args.seed)
        spec = home / "example" / "prodgate.yaml"
        specs = {OFF: without_review(spec), ON: spec}
        key = create_key(prodgate, {"PRODGATE_HOME": str(home)}, "bench", SERVICE)[1]
        headers = {"Authorization": f"Bearer {key}"}
        rows = claims(args.rows, args.seed)
        script = work / "pool.lua"
        script.write_text(lua_script([{"inputs": row} for row in rows], headers))
        load = Load(wrk, script, args.connections, args.threads, pinning, headers)
        with contextlib.ExitStack() as stack:
            servers = {}
            for n, config in enumerate(CONFIGS):
                env = {}
                if config == ON and args.explain_interval is not None:
                    env["PRODGATE_REVIEW_EXPLAIN_INTERVAL"] = str(args.explain_interval)
                server = prodgate_server(
                    prodgate, home, work, pinning, env=env, name=f"config-{n}", spec=specs[config]
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
        all_runs = [r for rs in runs.values() for r in rs] + list(warm.values())
        acknowledged = sum(r.ok for r in all_runs) + len(CONFIGS)
        audit = verify_audit(prodgate, home, acknowledged)
        print(f"prodgate audit verify: {audit.summary}", flush=True)
        made, marked = items(home / "prodgate.db")
        answered_on = sum(r.ok for r in runs[ON]) + warm[ON].ok + 1

    total = {c: combined(runs[c]) for c in CONFIGS}
    per_round = [ratio(on.rps, off.rps) for on, off in zip(runs[ON], runs[OFF], strict=True)]
    errors = sum(r.errors for r in all_runs)
    stats = {c: gateway_stats(before[c], after[c]) for c in CONFIGS}
    cpu_per_request = {
        c: 1e6 * total[c].server_cpu * total[c].seconds / max(1, total[c].requests) for c in CONFIGS
    }
    rounds = ", ".join(f"{v:.3f}" for v in per_round)
    spread = f"median {statistics.median(per_round):.3f}, min {min(per_round):.3f}, "
    spread += f"max {max(per_round):.3f}"
    report = Report(
        servers=[(f"{c} ({args.rounds} runs)", total[c]) for c in CONFIGS],
        checks=[
            Check.at_least(
                "throughput review on / off", ratio(total[ON].rps, total[OFF].rps), TARGET
            ),
            Check.at_most(
                "server CPU per request review on / off",
                ratio(cpu_per_request[ON], cpu_per_request[OFF]),
                CPU_TARGET,
            ),
            Check("non-2xx and socket errors, all runs", str(errors), "0", errors == 0),
            Check(
                "review items vs records marked for review",
                f"{made:,} vs {marked:,}",
                "equal, more than none",
                made == marked > 0,
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
        command=command_line("bench/review_overhead.py", arguments),
        machine=machine(wrk, LIBRARIES),
        notes=[
            "Latency columns: the median over the runs of each run's percentile. "
            f"Each round's throughput on / off: {rounds} ({spread}). "
            f"Decisions answered with review on: {answered_on:,}; items entered: {made:,} "
            f"({made / max(1, answered_on):.1%}: the 5% sample, high-value claims and "
            "low-confidence escalations). Server CPU per request (whole process, the "
            f"explainer's thread included): off {cpu_per_request[OFF]:.0f} us, "
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
