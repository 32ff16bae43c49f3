"""Benchmark: one key's limit across three replicas, revocation, and a Redis outage.

The acceptance run of keys and limits on real infrastructure. Three ``prodgate serve``
processes run on one PostgreSQL database created for the run (and dropped after it),
each with its own new, empty HOME and its own copy of the spec: no folder is shared,
so each replica fetches the deployed model from the store. Keys are made and revoked
with the real CLI against the same database. The client (``bench/harness/client.py``,
asyncio on uvloop, HTTP/1.1 keep-alive) sends each key's requests on a fixed schedule
(open loop), round-robin over the replicas, and keeps every answer: status,
Retry-After, whether the limiter counted it (the RateLimit field), when it was sent
and answered. The gateways' audit records tell when each admitted request arrived and
was decided, which brackets its limit check more tightly than the client can.

**a. One limit across the replicas.** A key with ``--rpm 600``; limits in the shared
Redis (127.0.0.1:6379, under a prefix of this run's, deleted afterwards). After a
warm-up with another key, ``--rate`` requests/s (200: 20x the limit) for
``--duration`` seconds (60, at most one period). In a fresh window the limiter admits
exactly the limit (``src/prodgate/limits/window.py``: no window of 60 s ever holds
more; a saturating caller gets 99% of it per period in steady state), so targets: 200
answers within 1% of 600 (594 to 606), as many audit records of admitted requests,
every other answer 429 with Retry-After, no 5xx, no connection error, and at most 600
admissions in any 60 s window (by the audit records, counting only admissions
certainly inside it).

**b. Revocation.** The same load goes on, and each replica is probed every
``--probe-interval`` (40 ms; open loop, up to 32 in flight) with another key, which
``prodgate keys revoke`` then revokes. The store is polled every 10 ms meanwhile, to
know when the revocation was committed (the CLI's own stamp, ``revoked_at_us``, is
taken before its transaction). Per replica: the time from the commit to the first 401
it answered (the probe's latency included). Target: every replica within 1 s
(``PRODGATE_REFRESH_INTERVAL`` is 0.5 s); no probe sent after a replica's first 401
is admitted again.

**c. Redis outage.** A private ``redis-server`` on a free port, no persistence. Three
new replicas on it with ``PRODGATE_LIMIT_FAIL=closed``, then three with ``open``.
Keys: tight (``--rps 10``) at ``--outage-rate`` (30 requests/s), generous (``--rpm
10000000``) and one without limits at 10 requests/s each. After ``--before`` seconds
(10) Redis is killed (SIGKILL), left dead ``--outage`` seconds (5), started again on
the same port (empty), and the load goes on ``--after`` seconds (15). An answer to a
limited key without the RateLimit field was given in the fail mode (the limiter
could not count it). Targets: no 5xx and no connection error; while Redis was up,
every limited answer counted; while it was dead, every limited answer 429 with
Retry-After (closed) or 200 (open), and the key without limits 200 throughout; after
Redis answers again, every limited request sent later than 1 s is counted on every
replica (the limiter leaves Redis alone 0.5 s after a failure, then the next request
probes it); the tight key is then admitted at the rate it had before the outage
(ratio 0.9 to 1.1, steady state: the first second of each phase, a fresh window, left
out) and never more than its limit in any second.

Run it from the repository root (about 3 minutes), with PostgreSQL and Redis running::

    make bench-replicas
    # or
    .venv/bin/python bench/replicas_limits.py [--duration 60] [--markdown [FILE]]

``--parts`` runs some of a, b and c; ``--answers FILE`` keeps every answer. It exits 1
when a target or check fails (or the run was aborted), 0 when all pass.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from harness import (
    PREDICT_PATH,
    Check,
    Pinning,
    Server,
    Table,
    TablesReport,
    build_example,
    claims,
    cli,
    command_line,
    create_key,
    emit,
    gateway_stats,
    load_policies,
    machine,
    prodgate_command,
    run_main,
    scrape,
    warn_if_disturbed,
)
from harness.client import (
    NO_ANSWER,
    Answer,
    Client,
    Stream,
    certain_max_in_window,
    first_error,
    percentile,
    run,
)
from harness.cluster import (
    CpuMeter,
    RedisServer,
    admissions,
    delete_prefix,
    postgres_database,
    postgres_version,
    redis_version,
    replica,
    running_all,
    unique_name,
    wait_for_revocation,
)
from harness.procs import clean_env

SERVICE = "claims-triage"
LIBRARIES = ("prodgate", "uvicorn", "uvloop", "starlette", "sqlalchemy", "psycopg", "redis")
PERIOD_S = 60.0  # of --rpm
TOLERANCE = 0.01  # admitted within 1% of the limit
REVOCATION_TARGET_S = 1.0
RECOVERY_TARGET_S = 1.0
RATE_RATIO = (0.9, 1.1)  # the tight key's rate after the outage / before it


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Three prodgate replicas on PostgreSQL and Redis: one key's limit "
        "across them, revocation, and a Redis outage under load.",
    )
    p.add_argument("--replicas", type=int, default=3, help="gateway processes [3]")
    p.add_argument(
        "--duration", type=float, default=60.0, help="seconds of load on the limit (a) [60]"
    )
    p.add_argument("--rate", type=float, default=200.0, help="requests/s of the load [200]")
    p.add_argument(
        "--concurrency", type=int, default=512, help="most requests in flight per key [512]"
    )
    p.add_argument("--rpm", type=int, default=600, help="the key's requests per minute [600]")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds, another key [3]")
    p.add_argument(
        "--probe-interval",
        type=float,
        default=0.04,
        help="seconds between probes of each replica (b) [0.04]",
    )
    p.add_argument(
        "--revoke-after", type=float, default=2.0, help="seconds of probes before revoking [2]"
    )
    p.add_argument(
        "--revoke-timeout", type=float, default=10.0, help="longest wait for every 401 [10]"
    )
    p.add_argument("--before", type=float, default=10.0, help="seconds before the outage (c) [10]")
    p.add_argument("--outage", type=float, default=5.0, help="seconds Redis is dead (c) [5]")
    p.add_argument("--after", type=float, default=15.0, help="seconds after the restart (c) [15]")
    p.add_argument("--tight-rps", type=int, default=10, help="the tight key's --rps (c) [10]")
    p.add_argument(
        "--outage-rate",
        type=float,
        default=30.0,
        help="requests/s of the tight key (c); the generous key and the key without limits "
        "a third of it each [30]",
    )
    p.add_argument(
        "--fail-modes",
        default="closed,open",
        help="PRODGATE_LIMIT_FAIL modes to run part c in, comma-separated [closed,open]",
    )
    p.add_argument("--parts", default="abc", help="which parts to run: a, b, c [abc]")
    p.add_argument("--rows", type=int, default=1000, help="distinct request bodies [1000]")
    p.add_argument("--seed", type=int, default=2024, help="seed of the request bodies [2024]")
    p.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL database to connect to; the run creates its own beside it "
        "[postgresql://postgres@127.0.0.1:5432/test]",
    )
    p.add_argument(
        "--redis", default="redis://127.0.0.1:6379/0", help="the shared Redis of a and b"
    )
    p.add_argument(
        "--answers",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write every answer to FILE, one JSON object a line",
    )
    p.add_argument(
        "--markdown",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="print a Markdown results section, or append it to FILE",
    )
    args = p.parse_args(argv)
    if not 0 < args.duration <= PERIOD_S:
        p.error(f"--duration is at most one period of the limit, {PERIOD_S:g} s")
    modes = [m.strip() for m in args.fail_modes.split(",") if m.strip()]
    if not modes or any(m not in ("closed", "open") for m in modes):
        p.error("--fail-modes: closed, open or both")
    args.modes = modes
    if not args.parts or set(args.parts) - set("abc"):
        p.error("--parts: letters among a, b, c")
    return args


@dataclass
class Findings:
    """What each part adds to the report."""

    tables: list[Table]
    checks: list[Check]
    notes: list[str]

    def add(self, other: Findings) -> None:
        self.tables += other.tables
        self.checks += other.checks
        self.notes += other.notes


def count(answers: Sequence[Answer], status: int) -> int:
    return sum(1 for a in answers if a.status == status)


def server_errors(answers: Sequence[Answer]) -> int:
    return sum(1 for a in answers if a.status >= 500)


def no_answer(answers: Sequence[Answer]) -> int:
    return count(answers, NO_ANSWER)


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{1000 * seconds:,.0f}"


def latency(answers: Sequence[Answer], q: float) -> str:
    value = percentile([a.latency_ms for a in answers if a.status != NO_ANSWER], q)
    return "-" if math.isnan(value) else f"{value:.1f}"


def health_checks(label: str, answers: Sequence[Answer]) -> list[Check]:
    """No 5xx and no request without an answer."""
    errors = no_answer(answers)
    detail = f" ({first_error(answers)[:80]})" if errors else ""
    return [
        Check(
            f"{label}: 5xx answers", str(server_errors(answers)), "0", not server_errors(answers)
        ),
        Check(f"{label}: connection errors", f"{errors}{detail}", "0", errors == 0),
    ]


def dump(path: Path | None, part: str, answers: Sequence[Answer]) -> None:
    """Append *answers* to *path* (``--answers``), one JSON object a line."""
    if path is None:
        return
    with open(path, "ab") as fh:
        for a in answers:
            fh.write(orjson.dumps({"part": part, **dataclasses.asdict(a)}) + b"\n")


def scrape_all(servers: Sequence[Server]) -> list[dict[str, float]]:
    return [scrape(s.base) for s in servers]


def commits(before: list[dict[str, float]], after: list[dict[str, float]]) -> str:
    """What the replicas' /metrics say of their audit group commits meanwhile."""
    stats = [gateway_stats(b, a) for b, a in zip(before, after, strict=True)]
    return (
        "audit group commits per replica: "
        + ", ".join(
            f"{s.mean_commit_records:.1f} records in {s.mean_commit_ms:.0f} ms" for s in stats
        )
        + " (means)"
    )


# -- a and b: one limit across the replicas, and revocation --------------------------------


@dataclass
class Revocation:
    started: float  # the CLI was started
    stamped: float  # the key's revoked_at_us, written just before the CLI's transaction
    committed: float  # the earliest moment the store can have shown it revoked
    ended: float  # the CLI exited


async def revoke_later(
    prodgate: list[str], env: dict[str, str], key_id: str, after: float
) -> Revocation:
    """After *after* seconds, ``prodgate keys revoke KEY_ID``, while the store is polled
    to see when the revocation became visible there."""
    await asyncio.sleep(after)
    db = env["PRODGATE_DATABASE_URL"]
    committed = asyncio.create_task(asyncio.to_thread(wait_for_revocation, db, key_id, 120.0))
    await asyncio.sleep(0.05)  # the poll's connection is open before the CLI starts
    started = time.time()
    proc = await asyncio.create_subprocess_exec(
        *prodgate,
        "keys",
        "revoke",
        key_id,
        "--reason",
        "revocation benchmark",
        "--json",
        env=clean_env() | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    ended = time.time()
    if proc.returncode != 0:
        committed.cancel()
        raise RuntimeError(f"prodgate keys revoke failed: {out.decode()}{err.decode()}")
    stamped = orjson.loads(out)["revoked_at_us"] / 1e6
    return Revocation(started, stamped, await committed, ended)


async def shared_scenario(
    args: argparse.Namespace,
    servers: Sequence[Server],
    bodies: list[object],
    keys: dict[str, tuple[str, str]],
    prodgate: list[str],
    env: dict[str, str],
) -> tuple[list[Answer], float, list[Answer], Revocation | None, int, str]:
    n = len(servers)
    cpu = ""
    load = Stream("limited", keys["limited"][1], args.rate, args.concurrency)
    limited: list[Answer] = []
    t0 = math.nan
    async with Client([s.base for s in servers], PREDICT_PATH, bodies) as client:
        print(f"warm-up: {args.warmup:g} s with a key without limits ...", flush=True)
        await client.run([Stream("warm-up", keys["warm"][1], args.rate)], args.warmup)
        client.take()
        if "a" in args.parts:
            print(
                f"a. {args.rate:g} requests/s for {args.duration:g} s with the key limited to "
                f"{args.rpm} requests per minute ...",
                flush=True,
            )
            before = await asyncio.to_thread(scrape_all, servers)
            t0 = time.time()
            meter = CpuMeter(servers)
            await client.run([load], args.duration)
            cpu = meter.describe()
            cpu += "; " + commits(before, await asyncio.to_thread(scrape_all, servers))
            limited = client.take()
        skipped = client.skipped["limited"]
        if "b" not in args.parts:
            return limited, t0, [], None, skipped, cpu
        print(
            f"b. the same load, probes every {1000 * args.probe_interval:g} ms on each replica; "
            f"revoking the probes' key after {args.revoke_after:g} s ...",
            flush=True,
        )
        probes = [
            Stream(f"probe {i + 1}", keys["probe"][1], 1 / args.probe_interval, 32, (i,))
            for i in range(n)
        ]
        revocation = asyncio.create_task(
            revoke_later(prodgate, env, keys["probe"][0], args.revoke_after)
        )

        async def watch() -> None:
            """Stop the load a second after every replica refused the key (or at the
            timeout, or if the revocation failed)."""
            try:
                await asyncio.shield(revocation)
                deadline = time.time() + args.revoke_timeout
                while time.time() < deadline:
                    refused = {a.replica for a in client.answers if a.status == 401}
                    if len(refused) == n:
                        await asyncio.sleep(1.0)
                        break
                    await asyncio.sleep(0.05)
            finally:
                client.stop()

        watcher = asyncio.create_task(watch())
        await client.run([load, *probes], args.revoke_after + args.revoke_timeout + 60)
        await watcher
        return limited, t0, client.take(), revocation.result(), skipped, cpu


def limit_findings(
    args: argparse.Namespace,
    n: int,
    answers: list[Answer],
    t0: float,
    audit: list[tuple[float, float]],
    skipped: int,
) -> Findings:
    limit = args.rpm
    admitted = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status != 200]
    rows = []
    for r in [*range(n), None]:
        mine = [a for a in answers if r is None or a.replica == r]
        others = [a for a in mine if a.status not in (200, 429, NO_ANSWER)]
        rows.append(
            [
                "all" if r is None else f"replica {r + 1}",
                f"{len(mine):,}",
                f"{count(mine, 200):,}",
                f"{count(mine, 429):,}",
                f"{sum(1 for a in mine if a.status == 429 and a.retry_after):,}",
                f"{len(others):,}",
                f"{no_answer(mine):,}",
                latency(mine, 50),
                latency(mine, 99),
            ]
        )
    seconds = max(a.sent for a in answers) - t0 if answers else 0.0
    offered = len(answers) / seconds if seconds > 0 else 0.0
    last_admit = max((a.received for a in admitted), default=t0) - t0
    audit_span = (audit[-1][0] - audit[0][0]) if audit else 0.0
    table = Table(
        f"a. One key limited to {limit} requests per minute, {len(answers):,} requests over "
        f"{seconds:.1f} s ({offered:.0f}/s) round-robin over {n} replicas",
        [
            "replica",
            "requests",
            "200",
            "429",
            "429 with Retry-After",
            "other",
            "no answer",
            "p50 ms",
            "p99 ms",
        ],
        rows,
        [
            f"The last 200 was answered {last_admit:.1f} s after the first request; by the "
            f"gateways' records the {len(audit):,} admitted requests arrived within "
            f"{audit_span:.1f} s (at {offered:.0f} requests/s the limit is used up in "
            f"{limit / max(offered, 1e-9):.1f} s, and nothing more fits until those "
            "admissions leave the window, 60 to 60.6 s later)."
            + (f" {skipped:,} requests were not sent: too many in flight." if skipped else "")
        ],
    )
    low, high = math.floor(limit * (1 - TOLERANCE)), math.ceil(limit * (1 + TOLERANCE))
    good_refusals = sum(1 for a in refused if a.status == 429 and a.retry_after)
    in_window = certain_max_in_window(audit, PERIOD_S)
    checks = [
        Check(
            "a. admitted (200) across the replicas",
            f"{len(admitted):,}",
            f"{low}..{high}",
            low <= len(admitted) <= high,
        ),
        Check(
            "a. audit records of admitted requests vs 200 answers",
            f"{len(audit):,} vs {len(admitted):,}",
            "equal",
            len(audit) == len(admitted),
        ),
        Check(
            "a. admitted in any 60 s window (gateways' records)",
            f"{in_window:,}",
            f"<= {limit}",
            in_window <= limit,
        ),
        Check(
            "a. every other answer is 429 with Retry-After",
            f"{good_refusals:,} of {len(refused):,}",
            "all",
            good_refusals == len(refused),
        ),
        Check(
            "a. offered load / the limit",
            f"{offered * PERIOD_S / limit:.0f}x",
            ">= 10x",
            offered * PERIOD_S >= 10 * limit,
        ),
        *health_checks("a", answers),
    ]
    return Findings([table], checks, [])


def revocation_findings(n: int, answers: list[Answer], rev: Revocation) -> Findings:
    """Per replica, when it switched from admitting the key to refusing it: after the
    last admitted probe was sent, and by the time the first refusal was answered."""
    rows = []
    worst = 0.0
    readmitted = 0
    for r in range(n):
        probes = [a for a in answers if a.stream == f"probe {r + 1}"]
        first = min((a.received for a in probes if a.status == 401), default=math.nan)
        last_ok = max((a.sent for a in probes if a.status == 200), default=math.nan)
        again = sum(1 for a in probes if a.status != 401 and a.sent > first)
        readmitted += again
        lat = first - rev.committed
        worst = max(worst, lat) if not math.isnan(lat) else math.inf
        rows.append(
            [
                f"replica {r + 1}",
                f"{len(probes):,}",
                latency(probes, 50),
                ms(last_ok - rev.committed),
                ms(lat),
                ms(first - rev.stamped),
                str(again),
            ]
        )
    load = [a for a in answers if a.stream == "limited"]
    table = Table(
        "b. Revocation under load: per replica, ms after the revocation was committed",
        [
            "replica",
            "probes",
            "probe p50 ms",
            "last 200 sent at",
            "first 401 answered at",
            "... after the CLI's stamp",
            "not refused after the first 401",
        ],
        rows,
        [
            "A replica switched to refusing the key between the two times: after the last "
            "admitted probe was sent and before the first refusal was answered (the probe's "
            "own latency included). 'Committed' is the earliest moment the store can have "
            "shown the key revoked (polled every 10 ms); the CLI stamps revoked_at_us just "
            f"before its transaction, which committed at most {ms(rev.committed - rev.stamped)} "
            f"ms later (in this run). The CLI ran {rev.ended - rev.started:.2f} s in all (a new "
            f"Python process: imports, then the store). The load meanwhile: {len(load):,} "
            "requests with the limited key."
        ],
    )
    refused_everywhere = all(r[4] != "-" for r in rows)
    checks = [
        Check(
            "b. slowest replica to refuse the revoked key (from the commit)",
            ms(worst) + " ms" if math.isfinite(worst) else "never",
            f"<= {1000 * REVOCATION_TARGET_S:.0f} ms",
            refused_everywhere and worst <= REVOCATION_TARGET_S,
        ),
        Check(
            "b. probes admitted after their replica's first 401",
            str(readmitted),
            "0",
            readmitted == 0,
        ),
        *health_checks("b", answers),
    ]
    return Findings([table], checks, [])


def shared_part(
    args: argparse.Namespace,
    prodgate: list[str],
    spec: Path,
    work: Path,
    base_env: dict[str, str],
    bodies: list[object],
    pinning: Pinning,
) -> Findings:
    prefix = unique_name("prodgate-bench-") + ":"
    env = base_env | {
        "PRODGATE_REDIS_URL": args.redis,
        "PRODGATE_REDIS_PREFIX": prefix,
        "PRODGATE_LIMIT_FAIL": "closed",
    }
    keys = {
        "limited": create_key(prodgate, env, "bench-limited", SERVICE, "--rpm", str(args.rpm)),
        "probe": create_key(prodgate, env, "bench-probe", SERVICE),
        "warm": create_key(prodgate, env, "bench-warm", SERVICE),
    }
    servers = [replica(prodgate, spec, work, i + 1, env, pinning) for i in range(args.replicas)]
    print(f"starting {len(servers)} replicas (Redis {args.redis}, prefix {prefix}) ...")
    try:
        with running_all(servers):
            for s in servers:
                print(f"  {s.name} (pid {s.pid}) on {s.base}, HOME {work / s.name / 'home'}")
            limited, t0, revocation, times, skipped, cpu = run(
                shared_scenario(args, servers, bodies, keys, prodgate, env)
            )
    finally:
        delete_prefix(args.redis, prefix)
    dump(args.answers, "a", limited)
    dump(args.answers, "b", revocation)
    out = Findings([], [], [])
    if "a" in args.parts:
        audit = admissions(base_env["PRODGATE_DATABASE_URL"], keys["limited"][0])
        # Admissions of part b (the window reopens after 60 s) are not part a's.
        end_a = max((a.received for a in limited), default=t0)
        audit = [s for s in audit if s[0] <= end_a]
        out.add(limit_findings(args, len(servers), limited, t0, audit, skipped))
        out.notes.append(f"a: {cpu}.")
    if times is not None:
        out.add(revocation_findings(len(servers), revocation, times))
    return out


# -- c: a Redis outage -------------------------------------------------------------------------


@dataclass
class Timeline:
    start: float
    killed: float  # Redis gone (SIGKILL, waited for)
    restarting: float  # redis-server started again
    answering: float  # ... and answering PING
    end: float


async def outage_scenario(
    args: argparse.Namespace,
    servers: Sequence[Server],
    bodies: list[object],
    streams: list[Stream],
    redis: RedisServer,
) -> tuple[list[Answer], Timeline, str]:
    async with Client([s.base for s in servers], PREDICT_PATH, bodies) as client:
        await client.run([Stream("warm-up", streams[-1].token, 20.0)], 1.0)
        client.take()
        before = await asyncio.to_thread(scrape_all, servers)
        start = time.time()
        meter = CpuMeter(servers)
        load = asyncio.create_task(client.run(streams, args.before + args.outage + args.after))
        await asyncio.sleep(args.before)
        killed = await asyncio.to_thread(redis.kill)
        print(f"   Redis killed at +{killed - start:.2f} s", flush=True)
        await asyncio.sleep(max(0.0, killed + args.outage - time.time()))
        restarting = time.time()
        answering = await asyncio.to_thread(redis.start)
        print(f"   Redis answering again at +{answering - start:.2f} s", flush=True)
        await load
        timeline = Timeline(start, killed, restarting, answering, time.time())
        cpu = meter.describe()
        cpu += "; " + commits(before, await asyncio.to_thread(scrape_all, servers))
        return client.take(), timeline, cpu


def degraded(a: Answer) -> bool:
    """A limited key's answer the limiter did not count (the fail mode's)."""
    return a.status in (200, 429) and not a.rate_limit


def steady_rate(audit: Sequence[tuple[float, float]], begin: float, end: float) -> float:
    """Admissions per second that arrived in [begin + 1 s, end) by the gateways'
    records: a fresh window's first period (the whole limit at once) left out."""
    span = end - (begin + 1.0)
    if span <= 0:
        return math.nan
    return sum(1 for arrived, _ in audit if begin + 1.0 <= arrived < end) / span


def outage_findings(
    args: argparse.Namespace,
    mode: str,
    n: int,
    answers: list[Answer],
    tl: Timeline,
    tight_audit: list[tuple[float, float]],
) -> Findings:
    limited_streams = ("generous", "tight")
    # By when each request was sent and answered: its limit check lay in between.
    phases: dict[str, list[Answer]] = {
        "before": [],
        "across the kill": [],
        "Redis dead": [],
        "across the restart": [],
        "after": [],
    }
    for a in answers:
        if a.received < tl.killed:
            phases["before"].append(a)
        elif a.sent < tl.killed:
            phases["across the kill"].append(a)
        elif a.received < tl.restarting:
            phases["Redis dead"].append(a)
        elif a.sent < tl.answering:
            phases["across the restart"].append(a)
        else:
            phases["after"].append(a)
    rows = []
    for phase, mine in phases.items():
        for stream in (*limited_streams, "no limits"):
            sub = [a for a in mine if a.stream == stream]
            if not sub:
                continue
            rows.append(
                [
                    phase,
                    stream,
                    f"{len(sub):,}",
                    f"{count(sub, 200):,}",
                    f"{count(sub, 429):,}",
                    f"{sum(1 for a in sub if a.status == 429 and a.retry_after):,}",
                    f"{sum(1 for a in sub if degraded(a)):,}" if stream != "no limits" else "-",
                    f"{server_errors(sub) + no_answer(sub):,}",
                    latency(sub, 50),
                    latency(sub, 99),
                ]
            )
    table = Table(
        f"c. Redis killed under load, PRODGATE_LIMIT_FAIL={mode}: Redis dead from "
        f"+{tl.killed - tl.start:.1f} s, started again at +{tl.restarting - tl.start:.1f} s, "
        f"answering at +{tl.answering - tl.start:.2f} s",
        [
            "phase",
            "key",
            "requests",
            "200",
            "429",
            "429 with Retry-After",
            "uncounted (fail mode)",
            "5xx or no answer",
            "p50 ms",
            "p99 ms",
        ],
        rows,
        [
            "A request's limit check lies between its sending and its answer, so phases go "
            "by both: 'before', answered before Redis was killed; 'Redis dead', sent after "
            "it was killed and answered before it was started again; 'after', sent once it "
            "answered PING; the requests that straddle a kill or a restart are shown apart. "
            "An answer to a limited key without the RateLimit field is 'uncounted': the "
            "limiter could not reach Redis and the fail mode answered."
        ],
    )
    # Recovery, per replica: the limited requests sent after Redis answered that were
    # still answered in the fail mode; from the last of them on, every one was counted.
    rec_rows = []
    worst = 0.0
    after_limited = [a for a in phases["after"] if a.stream in limited_streams]
    for r in range(n):
        mine = [a for a in after_limited if a.replica == r]
        late = [a for a in mine if degraded(a)]
        first_counted = min((a.received for a in mine if not degraded(a)), default=math.nan)
        recovered = max((a.sent for a in late), default=tl.answering) - tl.answering
        worst = max(worst, recovered)
        rec_rows.append(
            [
                f"replica {r + 1}",
                str(len(late)),
                ms(recovered) if late else "-",
                ms(first_counted - tl.answering),
            ]
        )
    recovery = Table(
        f"c. ({mode}) Counting again after Redis answers PING: per replica, ms after that",
        [
            "replica",
            "limited requests answered in the fail mode",
            "the last of them sent at",
            "first counted answer received at",
        ],
        rec_rows,
    )
    limit = args.tight_rps
    recovered_at = tl.answering + worst
    before = [s for s in tight_audit if s[1] < tl.killed]
    after = [s for s in tight_audit if s[0] >= recovered_at]
    before_rate = steady_rate(before, tl.start, tl.killed)
    after_rate = steady_rate(after, recovered_at, tl.end)
    before_max = certain_max_in_window(before, 1.0)
    after_max = certain_max_in_window(after, 1.0)
    ratio = after_rate / before_rate if before_rate else math.nan
    uncounted_before = sum(
        1 for a in phases["before"] if a.stream in limited_streams and degraded(a)
    )
    notes = [
        f"c ({mode}): by the gateways' records the tight key ({limit} requests/s) was admitted "
        f"{before_rate:.2f}/s before the outage and {after_rate:.2f}/s once every replica "
        f"counted again (steady state: the first second of each left out); at most "
        f"{before_max} and {after_max} admissions certainly inside any one second."
    ]
    dead = phases["Redis dead"]
    dead_limited = [a for a in dead if a.stream in limited_streams]
    dead_free = [a for a in dead if a.stream == "no limits"]
    if mode == "closed":
        refused = sum(1 for a in dead_limited if a.status == 429 and a.retry_after)
        fail_check = Check(
            f"c ({mode}). limited keys while Redis was dead: 429 with Retry-After",
            f"{refused:,} of {len(dead_limited):,}",
            "all",
            bool(dead_limited) and refused == len(dead_limited),
        )
    else:
        passed = count(dead_limited, 200)
        fail_check = Check(
            f"c ({mode}). limited keys while Redis was dead: 200 (let through)",
            f"{passed:,} of {len(dead_limited):,}",
            "all",
            bool(dead_limited) and passed == len(dead_limited),
        )
    free = [a for a in answers if a.stream == "no limits"]
    checks = [
        Check(
            f"c ({mode}). limited answers uncounted while Redis was up ('before')",
            str(uncounted_before),
            "0",
            uncounted_before == 0,
        ),
        fail_check,
        Check(
            f"c ({mode}). key without limits: 200 throughout (while Redis was dead)",
            f"{count(free, 200):,} of {len(free):,} ({count(dead_free, 200):,} of "
            f"{len(dead_free):,})",
            "all",
            bool(dead_free) and count(free, 200) == len(free),
        ),
        Check(
            f"c ({mode}). every limited request counted again, sent from (slowest replica)",
            f"+{ms(worst)} ms",
            f"<= {1000 * RECOVERY_TARGET_S:.0f} ms",
            worst <= RECOVERY_TARGET_S,
        ),
        Check(
            f"c ({mode}). tight key's rate after / before the outage",
            f"{ratio:.2f}x",
            f"{RATE_RATIO[0]:g}x..{RATE_RATIO[1]:g}x",
            RATE_RATIO[0] <= ratio <= RATE_RATIO[1],
        ),
        Check(
            f"c ({mode}). tight key after recovery: admitted in any 1 s window",
            str(after_max),
            f"<= {limit}",
            after_max <= limit,
        ),
        *health_checks(f"c ({mode})", answers),
    ]
    return Findings([table, recovery], checks, notes)


def outage_part(
    args: argparse.Namespace,
    prodgate: list[str],
    spec: Path,
    work: Path,
    base_env: dict[str, str],
    bodies: list[object],
    pinning: Pinning,
    versions: dict[str, str],
) -> Findings:
    redis = RedisServer(work)
    redis.start()
    versions["Redis (c)"] = redis_version(redis.url)
    out = Findings([], [], [])
    try:
        keys = {
            "generous": create_key(
                prodgate, base_env, "bench-generous", SERVICE, "--rpm", "10000000"
            ),
            "tight": create_key(
                prodgate, base_env, "bench-tight", SERVICE, "--rps", str(args.tight_rps)
            ),
            "no limits": create_key(prodgate, base_env, "bench-free", SERVICE),
        }
        streams = [
            Stream("generous", keys["generous"][1], args.outage_rate / 3, args.concurrency),
            Stream("tight", keys["tight"][1], args.outage_rate, args.concurrency),
            Stream("no limits", keys["no limits"][1], args.outage_rate / 3, args.concurrency),
        ]
        for mode in args.modes:
            env = base_env | {
                "PRODGATE_REDIS_URL": redis.url,
                "PRODGATE_REDIS_PREFIX": unique_name("prodgate-bench-") + ":",
                "PRODGATE_LIMIT_FAIL": mode,
            }
            servers = [
                replica(prodgate, spec, work, i + 1, env, pinning, label=f"{mode}-replica")
                for i in range(args.replicas)
            ]
            print(
                f"c. PRODGATE_LIMIT_FAIL={mode}: {len(servers)} new replicas on a private Redis "
                f"({redis.url}); {args.before:g} s, kill Redis, {args.outage:g} s, start it, "
                f"{args.after:g} s ...",
                flush=True,
            )
            with running_all(servers):
                answers, timeline, cpu = run(outage_scenario(args, servers, bodies, streams, redis))
            dump(args.answers, f"c {mode}", answers)
            if args.answers is not None:
                with open(args.answers, "ab") as fh:
                    line = {"part": f"c {mode}", "timeline": dataclasses.asdict(timeline)}
                    fh.write(orjson.dumps(line) + b"\n")
            tight_audit = admissions(base_env["PRODGATE_DATABASE_URL"], keys["tight"][0])
            tight_audit = [t for t in tight_audit if t[0] >= timeline.start]
            out.add(outage_findings(args, mode, len(servers), answers, timeline, tight_audit))
            out.notes.append(f"c ({mode}): {cpu}.")
    finally:
        redis.stop()
    return out


# -- the run ---------------------------------------------------------------------------------


def benchmark(arguments: list[str]) -> int:
    args = parse_args(arguments)
    prodgate = prodgate_command()
    pinning = Pinning(note="no CPU pinning")
    warn_if_disturbed()
    bodies: list[object] = [{"inputs": row} for row in claims(args.rows, args.seed)]
    findings = Findings([], [], [])
    with (
        tempfile.TemporaryDirectory(prefix="prodgate-bench-") as tmp,
        postgres_database(args.pg) as db,
    ):
        work = Path(tmp)
        base_env = {"PRODGATE_DATABASE_URL": db}
        builder = work / "ci-home"
        print(f"building the claims-triage example on {db.rsplit('/', 1)[-1]} ...", flush=True)
        build_example(prodgate, builder, base_env)
        load_policies(prodgate, builder, args.rows, args.seed, base_env)
        spec = builder / "example" / "prodgate.yaml"
        versions = {"PostgreSQL": postgres_version(db)}
        if set(args.parts) & set("ab"):
            versions["Redis (a, b)"] = redis_version(args.redis)
            findings.add(shared_part(args, prodgate, spec, work, base_env, bodies, pinning))
        if "c" in args.parts:
            findings.add(
                outage_part(args, prodgate, spec, work, base_env, bodies, pinning, versions)
            )
        audit = cli(prodgate, base_env, "--home", str(builder), "audit", "verify").strip()
    findings.notes.append(f"prodgate audit verify on the run's database: {audit.splitlines()[-1]}")
    info = machine(None, LIBRARIES)
    info["servers"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    report = TablesReport(
        "Replicas, one limit, revocation and a Redis outage",
        findings.tables,
        findings.checks,
        load=(
            f"{args.replicas} `prodgate serve` processes (each its own empty HOME and spec copy) "
            f"on one PostgreSQL database; a Python client (asyncio on uvloop, keep-alive "
            f"HTTP/1.1), requests sent on a "
            f"fixed schedule round-robin over the replicas, bodies cycled from {args.rows:,} "
            f"generated claims; all processes share the machine's CPUs ({pinning.note})"
        ),
        command=command_line("bench/replicas_limits.py", arguments),
        machine=info,
        notes=findings.notes,
    )
    return emit(report, args.markdown)


if __name__ == "__main__":
    sys.exit(run_main(benchmark))
