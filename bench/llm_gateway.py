"""Benchmark: prodgate's LLM gateway against LiteLLM's proxy and a bare passthrough.

Three gateways stand in front of the same upstream, a ``prodgate mock-llm`` (a local
OpenAI-compatible server), and get the same load with OpenAI chat bodies
(``max_tokens`` 16), not streamed and streamed (``stream_options.include_usage``):

- **prodgate**: ``prodgate serve`` (one process) with an LLM service whose prompt
  version is registered, approved by another person (over its gates, with a reason:
  its answers are not evaluated here) and deployed; every request carries an API key
  with limits on requests, tokens per minute and a day's spending, the service has a
  rate limit, a tokens-per-minute limit and a day's budget (so each call reserves its
  worst-case cost and settles the real one), and each answer is released only after
  its audit record is committed.
- **LiteLLM**: LiteLLM's proxy (``litellm --num_workers 1``) installed by the benchmark
  into its own virtual environment (``bench/.venvs/litellm``, once), without a
  database: a master key on every request, the model priced so each call is costed, no
  callbacks, health checks or telemetry (``bench/harness/litellm.py``).
- **passthrough**: ``bench/llm_passthrough.py``, a bare aiohttp app that forwards the
  body to the mock with one ``ClientSession`` and returns or streams its answer: the
  floor of a Python gateway.
- **direct**: wrk against the mock itself: the latency every gateway adds to.

All of them are started first (an idle one takes no CPU) and each is asked once per
mode, its answer read to the end and checked. Then wrk loads them in turn at 1
connection (the latency a lone caller sees) and at 64 connections (throughput and
tail), not streamed then streamed, ``--warmup`` then ``--duration`` seconds each, in
``--rounds`` rounds (the gateways one way, then the other way round), each run after
the gateway before it has gone idle; the figures of a gateway under one load are its
runs together (latency percentiles: the median of the runs'). wrk reads each answer to
its end, so a streamed request counts when its stream is done. The gateway under test
is pinned to CPU 0 and wrk and the mock share CPU 1 (``taskset``; half of the CPUs
each on a larger machine): the mock and the load are the same for every gateway. A
gateway's overhead is its latency minus the direct latency at the same load and mode.

- **prodgate, rails off** (only when ``--only`` names ``prodgate-no-rails``): the same
  prodgate with ``guard: off``, so that the cost of the default guard rails (injection,
  secrets and PII at the door; a planted canary and secrets on the way out, streams
  scanned as they go) is measured against no rails in the same run.

Targets (issue 8), each for streamed and non-streamed requests: prodgate's overhead
p50 at 1 connection at most 1/10 of LiteLLM's and at most 2x the passthrough's; its
throughput at 64 connections at least 20x LiteLLM's and at least 0.5x the
passthrough's; its p99 at 64 connections at most 1/10 of LiteLLM's. prodgate answers
no non-2xx, ``prodgate audit verify`` finds a record for every 2xx it sent, and the
cost its ``/metrics`` recorded is that of the tokens they counted at the price table.

Target (issue 9): the default rails cost at most 15% of prodgate's throughput at 64
connections (``make bench-guard``).

Run it from the repository root (about 4 minutes, plus a few minutes once to install
LiteLLM)::

    make bench-llm
    # or
    .venv/bin/python bench/llm_gateway.py [--only litellm,passthrough,direct] [--markdown]

It needs ``wrk`` (``apt-get install wrk``; ``brew install wrk`` on macOS) and pip's
access to PyPI for LiteLLM the first time. It exits 2 when wrk is missing, 1 when a
target or check fails (or a gateway could not be measured), 0 when all pass.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    BENCH_DIR,
    EXIT_NO_WRK,
    NOISE_LIMIT,
    AuditCheck,
    Check,
    Load,
    Pinning,
    Server,
    add_load_arguments,
    clean_env,
    command_line,
    emit,
    free_port,
    lua_script,
    machine,
    prodgate_command,
    prodgate_server,
    ratio,
    require_wrk,
    run_main,
    running,
    verify_audit,
    warn_if_disturbed,
)
from harness import litellm as lite
from harness.llm import (
    CHAT_PATH,
    MAX_TOKENS,
    PRICE,
    SERVICE,
    UPSTREAM_MODEL,
    Run,
    Spending,
    ask,
    chat_bodies,
    combined,
    llm_pinning,
    mock_server,
    prodgate_llm,
    run,
    settle,
)
from harness.report import Table, TablesReport

DIRECT, BARE, LITELLM, PRODGATE = "direct", "passthrough", "litellm", "prodgate"
#: prodgate with its guard rails off (``guard: off``): what the default rails cost.
OPEN = "prodgate-no-rails"
TARGETS = (DIRECT, BARE, LITELLM, OPEN, PRODGATE)  # the order they run in
#: Run unless --only names them: the comparison of issue 8 does not need it.
DEFAULT_TARGETS = (DIRECT, BARE, LITELLM, PRODGATE)
LABELS = {
    DIRECT: "direct to the mock",
    BARE: "bare aiohttp passthrough",
    LITELLM: "LiteLLM proxy",
    OPEN: "prodgate, rails off",
    PRODGATE: "prodgate",
}
MODES = ("json", "stream")
PASSTHROUGH_APP = BENCH_DIR / "llm_passthrough.py"
LIBRARIES = ("prodgate", "aiohttp", "uvicorn", "uvloop", "httptools", "starlette", "orjson")

# Targets of issue 8, prodgate against each baseline.
OVERHEAD_VS_LITELLM = 0.1  # overhead p50 at 1 connection <= 1/10 of LiteLLM's
OVERHEAD_VS_PASSTHROUGH = 2.0  # ... and <= 2x the passthrough's
THROUGHPUT_VS_LITELLM = 20.0  # req/s at 64 connections >= 20x LiteLLM's
THROUGHPUT_VS_PASSTHROUGH = 0.5  # ... and >= 0.5x the passthrough's
P99_VS_LITELLM = 0.1  # p99 at 64 connections <= 1/10 of LiteLLM's
# Target of issue 9: the default guard rails cost at most 15% of the throughput.
THROUGHPUT_WITH_RAILS = 0.85


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="prodgate's LLM gateway against LiteLLM's proxy and a bare aiohttp "
        "passthrough, in front of one mock upstream, under wrk.",
    )
    add_load_arguments(p, duration=5.0, warmup=1.0, connections=64, threads=2)
    p.add_argument("--rounds", type=int, default=2, help="runs of each gateway under each load [2]")
    p.add_argument(
        "--only",
        default=",".join(DEFAULT_TARGETS),
        metavar="LIST",
        help=f"which to run, comma-separated, of {', '.join(TARGETS)} "
        f"[{','.join(DEFAULT_TARGETS)}]",
    )
    p.add_argument(
        "--litellm",
        default=lite.REQUIREMENT,
        metavar="REQUIREMENT",
        help=f"what pip installs into bench/.venvs/litellm [{lite.REQUIREMENT}]",
    )
    p.add_argument(
        "--prodgate-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for prodgate's server, e.g. PRODGATE_SQLITE_SYNCHRONOUS=NORMAL "
        "(repeatable; the report names them)",
    )
    p.add_argument(
        "--upstream-command",
        default=None,
        metavar="CMD",
        help="run this OpenAI-compatible server as the upstream instead of "
        "'prodgate mock-llm' ({port} is replaced by its port)",
    )
    args = p.parse_args(argv)
    only = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = sorted(set(only) - set(TARGETS))
    if unknown or not only:
        p.error(f"--only takes some of {', '.join(TARGETS)}, not {args.only!r}")
    args.targets = [t for t in TARGETS if t in only]
    bad = [e for e in args.prodgate_env if "=" not in e or not e.startswith("PRODGATE_")]
    if bad:
        p.error(f"--prodgate-env takes PRODGATE_NAME=VALUE, not {bad[0]!r}")
    args.prodgate_env = dict(e.split("=", 1) for e in args.prodgate_env)
    if args.rounds < 1:
        p.error("--rounds is at least 1")
    return args


@dataclass
class Gateway:
    """A server to measure (None: the mock itself), how to call it, and what it did:
    runs per (mode, connections), or why it could not be measured."""

    target: str
    server: Server | None
    model: str
    headers: dict[str, str]
    runs: dict[tuple[str, int], list[Run]] = field(default_factory=dict)
    warmups: list[Run] = field(default_factory=list)
    samples: dict[str, str] = field(default_factory=dict)  # mode -> what the sample said
    loads: dict[tuple[str, int], Load] = field(default_factory=dict)
    failure: str = ""

    @property
    def label(self) -> str:
        return LABELS[self.target]

    @property
    def ok(self) -> bool:
        return not self.failure

    def url(self, mock: Server) -> str:
        return (self.server or mock).base + CHAT_PATH

    def run(self, mode: str, connections: int) -> Run:
        """Its runs under this load as one."""
        return combined(self.runs[(mode, connections)])

    @property
    def errors(self) -> int:
        """Non-2xx and socket errors over every run, warm-up included."""
        runs = [*self.warmups, *(r for rs in self.runs.values() for r in rs)]
        return sum(r.result.errors for r in runs)

    @property
    def acknowledged(self) -> int:
        """2xx answers over every run, warm-up and samples included."""
        runs = [*self.warmups, *(r for rs in self.runs.values() for r in rs)]
        return sum(r.result.ok for r in runs) + len(self.samples)

    def check_alive(self) -> None:
        server = self.server
        if server is not None and server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"it exited with {server.proc.returncode}; see {server.log}")

    def fail(self, exc: BaseException) -> None:
        self.failure = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        print(f"!!! {self.label} could not be measured: {exc}", flush=True)


def check_answers(gateway: Gateway, mock: Server) -> None:
    """Ask *gateway* once per mode and read the answer to its end: it must be a right
    OpenAI answer (a stream of chunks ending with [DONE], with usage)."""
    for mode in MODES:
        stream = mode == "stream"
        sample = ask(gateway.url(mock), chat_bodies(gateway.model, stream)[0], gateway.headers)
        problem = sample.problem(stream)
        if problem:
            raise RuntimeError(f"{gateway.label} answered a {mode} request wrongly: {problem}")
        gateway.samples[mode] = sample.describe()


def make_loads(
    gateway: Gateway, wrk: str, work: Path, args: argparse.Namespace, pinning: Pinning
) -> None:
    """wrk at 1 and at ``--connections`` connections, not streamed and streamed."""
    for mode in MODES:
        script = work / f"{gateway.target}-{mode}.lua"
        script.write_text(lua_script(chat_bodies(gateway.model, mode == "stream"), gateway.headers))
        for n in (1, args.connections):
            threads = max(1, min(args.threads, n))
            gateway.loads[(mode, n)] = Load(wrk, script, n, threads, pinning, gateway.headers)


def schedule(
    targets: Sequence[str], rounds: int, connections: int
) -> list[tuple[str, int, list[str]]]:
    """(mode, connections, gateways in order) for each round: every gateway under one
    load before the next load, in turn one way then the other, so that a drift in the
    machine's speed meets them all alike."""
    out = []
    for r in range(rounds):
        for mode in MODES:
            for n in (1, connections):
                out.append((mode, n, list(targets if r % 2 == 0 else reversed(targets))))
    return out


def measure(gateways: Sequence[Gateway], mock: Server, args: argparse.Namespace) -> None:
    """Every gateway under every load, ``--rounds`` times: warm-up, then the measured
    run, each after the gateway measured before it has gone idle."""
    plan = schedule([g.target for g in gateways], args.rounds, args.connections)
    by_target = {g.target: g for g in gateways}
    for i, (mode, n, order) in enumerate(plan):
        live = [by_target[t] for t in order if by_target[t].ok]
        print(
            f"[{i + 1}/{len(plan)}] {mode}, {n} connection(s): " + ", ".join(g.label for g in live),
            flush=True,
        )
        for g in live:
            pid = (g.server or mock).pid
            # The gateway measured before may still be busy with answers left in flight.
            settle([mock.pid, *(x.server.pid for x in live if x.server is not None)])
            load, url = g.loads[(mode, n)], g.url(mock)
            try:
                g.warmups.append(run(load, url, args.warmup, pid, mock.pid))
                g.runs.setdefault((mode, n), []).append(
                    run(load, url, args.duration, pid, mock.pid)
                )
                g.check_alive()
            except RuntimeError as exc:
                g.fail(exc)


def row(g: Gateway, direct: Gateway | None, mode: str, connections: int) -> list[str]:
    r = g.run(mode, connections)
    lat = r.result.latency_ms
    base = direct.run(mode, connections) if direct and g.target != DIRECT else None
    over = [f"{r.p50 - base.p50:.2f}", f"{r.p99 - base.p99:.2f}"] if base else ["", ""]
    return [
        g.label,
        mode,
        str(connections),
        f"{r.result.rps:,.0f}",
        f"{lat['50']:.2f}",
        f"{lat['90']:.2f}",
        f"{lat['99']:.2f}",
        *over,
        r.result.describe_errors(),
        f"{r.result.server_cpu:.0%}" if g.server is not None else "",
        f"{r.upstream_cpu:.0%}",
        f"{r.result.other_cpu:.0%}",
    ]


FIGURE_HEADERS = [
    "server",
    "mode",
    "conns",
    "req/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "overhead p50 ms",
    "overhead p99 ms",
    "non-2xx",
    "gateway CPU",
    "mock CPU",
    "other CPU",
]
RATIO_HEADERS = [
    "ratio",
    "mode",
    "overhead p50 at 1",
    "overhead p99 at 1",
    "req/s at {n}",
    "p99 at {n}",
]


class Comparison:
    """Overheads and ratios between the measured gateways."""

    def __init__(self, gateways: dict[str, Gateway], connections: int) -> None:
        self.gateways = gateways
        self.n = connections

    def measured(self, target: str) -> bool:
        g = self.gateways.get(target)
        return g is not None and g.ok

    def overhead(self, target: str, mode: str, q: str = "50") -> float:
        """Latency at 1 connection minus the direct one, ms."""
        r = self.gateways[target].run(mode, 1).result.latency_ms[q]
        d = self.gateways[DIRECT].run(mode, 1).result.latency_ms[q]
        return r - d

    def rps(self, target: str, mode: str) -> float:
        return self.gateways[target].run(mode, self.n).result.rps

    def p99(self, target: str, mode: str) -> float:
        return self.gateways[target].run(mode, self.n).p99

    def ratios(self, a: str, b: str, mode: str) -> list[str]:
        """*a* against *b*: overheads (with direct), throughput and p99."""
        out = []
        if self.measured(DIRECT):
            for q in ("50", "99"):
                out.append(f"{ratio(self.overhead(a, mode, q), self.overhead(b, mode, q)):.3f}x")
        else:
            out += ["(no direct run)", ""]
        out.append(f"{ratio(self.rps(a, mode), self.rps(b, mode)):.2f}x")
        out.append(f"{ratio(self.p99(a, mode), self.p99(b, mode)):.3f}x")
        return out

    def checks(self) -> list[Check]:
        """The targets of issue 8 that this run can answer."""
        if not self.measured(PRODGATE):
            return []
        out: list[Check] = []
        for mode in MODES:
            if self.measured(OPEN):
                out.append(
                    Check.at_least(
                        f"{mode}: req/s at {self.n} conns, prodgate / prodgate with rails off",
                        ratio(self.rps(PRODGATE, mode), self.rps(OPEN, mode)),
                        THROUGHPUT_WITH_RAILS,
                    )
                )
            if self.measured(DIRECT):
                if self.measured(LITELLM):
                    out.append(
                        Check.at_most(
                            f"{mode}: overhead p50 at 1 conn, prodgate / LiteLLM",
                            ratio(self.overhead(PRODGATE, mode), self.overhead(LITELLM, mode)),
                            OVERHEAD_VS_LITELLM,
                        )
                    )
                if self.measured(BARE):
                    out.append(
                        Check.at_most(
                            f"{mode}: overhead p50 at 1 conn, prodgate / passthrough",
                            ratio(self.overhead(PRODGATE, mode), self.overhead(BARE, mode)),
                            OVERHEAD_VS_PASSTHROUGH,
                        )
                    )
            if self.measured(LITELLM):
                out.append(
                    Check.at_least(
                        f"{mode}: req/s at {self.n} conns, prodgate / LiteLLM",
                        ratio(self.rps(PRODGATE, mode), self.rps(LITELLM, mode)),
                        THROUGHPUT_VS_LITELLM,
                    )
                )
            if self.measured(BARE):
                out.append(
                    Check.at_least(
                        f"{mode}: req/s at {self.n} conns, prodgate / passthrough",
                        ratio(self.rps(PRODGATE, mode), self.rps(BARE, mode)),
                        THROUGHPUT_VS_PASSTHROUGH,
                    )
                )
            if self.measured(LITELLM):
                out.append(
                    Check.at_most(
                        f"{mode}: p99 at {self.n} conns, prodgate / LiteLLM",
                        ratio(self.p99(PRODGATE, mode), self.p99(LITELLM, mode)),
                        P99_VS_LITELLM,
                    )
                )
        return out

    def ratio_rows(self) -> list[list[str]]:
        pairs = [(PRODGATE, LITELLM), (PRODGATE, BARE), (BARE, LITELLM), (PRODGATE, OPEN)]
        rows = []
        for a, b in pairs:
            if self.measured(a) and self.measured(b):
                for mode in MODES:
                    rows.append([f"{LABELS[a]} / {LABELS[b]}", mode, *self.ratios(a, b, mode)])
        return rows


def benchmark(arguments: list[str]) -> int:
    args = parse_args(arguments)
    wrk = require_wrk()
    if wrk is None:
        return EXIT_NO_WRK
    began = time.monotonic()
    pinning = llm_pinning(not args.no_pin)
    prodgate = prodgate_command()
    litellm: Path | str = ""  # its executable, or why there is none
    if LITELLM in args.targets:
        try:
            litellm = lite.ensure_venv(args.litellm)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            litellm = f"LiteLLM could not be installed: {exc}"
            print(f"!!! {litellm}", flush=True)
    warn_if_disturbed()
    gateways: dict[str, Gateway] = {}
    audit = None
    spending = None
    with tempfile.TemporaryDirectory(prefix="prodgate-bench-llm-") as tmp:
        work = Path(tmp)
        mock = mock_server(prodgate, work, pinning, args.upstream_command)
        with running(mock), contextlib.ExitStack() as stack:
            upstream = mock.base + "/v1"
            print(f"mock upstream {upstream} (pid {mock.pid}); {pinning.note}", flush=True)
            for target in args.targets:
                g = gateways[target] = Gateway(target, None, "", {})
                try:
                    g = gateways[target] = prepare(
                        target, prodgate, work, upstream, pinning, litellm, args.prodgate_env
                    )
                    if g.server is not None:
                        print(f"starting {g.label} ...", flush=True)
                        stack.enter_context(running(g.server))
                    check_answers(g, mock)
                    make_loads(g, wrk, work, args, pinning)
                except (RuntimeError, OSError) as exc:
                    g.fail(exc)
            print(
                f"wrk at 1 and {args.connections} connections, not streamed and streamed, "
                f"{args.warmup:g} s warm-up + {args.duration:g} s measured each, "
                f"{args.rounds} round(s)",
                flush=True,
            )
            measure([g for g in gateways.values() if g.ok], mock, args)
            prodgate_gw = gateways.get(PRODGATE)
            if prodgate_gw is not None and prodgate_gw.ok and prodgate_gw.server is not None:
                spending = Spending.scrape(prodgate_gw.server.base)
        if prodgate_gw is not None and prodgate_gw.ok:
            audit = verify_audit(prodgate, work / "prodgate-home", prodgate_gw.acknowledged)
            print(f"prodgate audit verify: {audit.summary}", flush=True)
    took = time.monotonic() - began
    figures = report(args, arguments, gateways, audit, spending, pinning, wrk, took)
    code = emit(figures, args.markdown)
    if args.markdown != "-":  # the Markdown section has them already
        print("\n" + "\n".join(provenance(figures)))
    return code


def provenance(figures: TablesReport) -> list[str]:
    """When, where and how the figures were made, as the Markdown section says it."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"Date: {when}",
        f"Load: {figures.load}.",
        f"Command: {figures.command}",
        "Machine:",
        *(f"- {k}: {v}" for k, v in figures.machine.items()),
    ]


def prepare(
    target: str,
    prodgate: list[str],
    work: Path,
    upstream: str,
    pinning: Pinning,
    litellm: Path | str,
    prodgate_env: Mapping[str, str] | None = None,
) -> Gateway:
    """The server of *target* (not started) in front of *upstream*, and how to call it."""
    if target == DIRECT:
        return Gateway(DIRECT, None, UPSTREAM_MODEL, {})
    if target == BARE:
        port = free_port()
        argv = [sys.executable, str(PASSTHROUGH_APP), "--port", str(port), "--upstream", upstream]
        server = Server(
            LABELS[target],
            pinning.server(argv),
            f"http://127.0.0.1:{port}",
            "/healthz",
            work / "passthrough.log",
            clean_env(),
        )
        return Gateway(target, server, UPSTREAM_MODEL, {})
    if target == LITELLM:
        if not isinstance(litellm, Path):
            raise RuntimeError(litellm)
        config = work / "litellm.yaml"
        config.write_text(lite.config(SERVICE, upstream, UPSTREAM_MODEL, PRICE))
        server = lite.server(litellm, config, work, pinning)
        return Gateway(target, server, SERVICE, {"Authorization": f"Bearer {lite.MASTER_KEY}"})
    home = work / ("prodgate-home" if target == PRODGATE else "prodgate-open-home")
    print(f"preparing {LABELS[target]}'s {SERVICE} service in {home} ...", flush=True)
    spec, key = prodgate_llm(prodgate, home, upstream, rails=target == PRODGATE)
    server = prodgate_server(prodgate, home, work, pinning, spec=spec, env=prodgate_env)
    return Gateway(target, server, SERVICE, {"Authorization": f"Bearer {key}"})


def report(
    args: argparse.Namespace,
    arguments: list[str],
    gateways: dict[str, Gateway],
    audit: AuditCheck | None,
    spending: Spending | None,
    pinning: Pinning,
    wrk: str,
    took: float,
) -> TablesReport:
    direct = gateways.get(DIRECT)
    if direct is not None and not direct.ok:
        direct = None
    rows = [
        row(g, direct, mode, n)
        for g in gateways.values()
        if g.ok
        for mode in MODES
        for n in (1, args.connections)
    ]
    compare = Comparison(gateways, args.connections)
    checks = compare.checks()
    checks += [
        Check(f"{g.label} measured", g.failure[:60], "measured", False)
        for g in gateways.values()
        if not g.ok
    ]
    gw = gateways.get(PRODGATE)
    if gw is not None and gw.ok:
        checks.append(
            Check(
                "prodgate non-2xx and socket errors (warm-up included)",
                str(gw.errors),
                "0",
                gw.errors == 0,
            )
        )
        if audit is not None:
            checks += audit.checks()
        if spending is not None:
            checks.append(
                Check(
                    "prodgate's recorded cost vs its counted tokens at the price table",
                    f"${spending.cost_usd:.6f} vs ${spending.priced_usd:.6f}",
                    "equal",
                    spending.consistent,
                )
            )
    notes = [
        "Overhead: the latency minus the direct one at the same load and mode. "
        "'gateway CPU' is the gateway process's CPU time over the run as a share of one "
        "CPU, 'mock CPU' the mock's, 'other CPU' the rest of the machine's but wrk's.",
    ]
    for g in gateways.values():
        if not g.ok:
            continue
        if g.target != PRODGATE and g.errors:
            notes.append(f"WARNING: {g.label} failed {g.errors} requests.")
        for (mode, n), runs in g.runs.items():
            if not sum(r.result.requests for r in runs):
                notes.append(
                    f"WARNING: {g.label} completed no request ({mode}, {n} connections): its "
                    "latency there is no figure; lengthen --duration."
                )
        notes.append(
            f"{g.label} sample answers: "
            + "; ".join(f"{m}: {s}" for m, s in g.samples.items())
            + "."
        )
    if spending is not None:
        notes.append(spending.describe() + ".")
    notes.append(f"The run took {took:.0f} s.")
    worst = max(
        (
            g.run(m, n).result.other_cpu
            for g in gateways.values()
            if g.ok
            for m in MODES
            for n in (1, args.connections)
        ),
        default=0.0,
    )
    if worst > NOISE_LIMIT:
        notes.append(
            f"WARNING: other processes used up to {worst:.0%} of a CPU during the runs "
            "(column 'other CPU'); the figures are disturbed. Rerun on a quiet machine."
        )
    tables = [
        Table(
            "Gateways in front of one mock upstream (latency over whole answers, streams read "
            "to [DONE])",
            FIGURE_HEADERS,
            rows,
        )
    ]
    ratio_rows = compare.ratio_rows()
    if ratio_rows:
        tables.append(
            Table(
                "Ratios (overhead at 1 connection; throughput and p99 at "
                f"{args.connections} connections)",
                [h.format(n=args.connections) for h in RATIO_HEADERS],
                ratio_rows,
            )
        )
    libraries = machine(wrk, LIBRARIES)
    if LITELLM in gateways:
        libraries["LiteLLM"] = f"{lite.version()} (its own virtual environment: {args.litellm})"
    return TablesReport(
        title="LLM gateway: prodgate, LiteLLM and a bare passthrough",
        tables=tables,
        checks=checks,
        load=(
            f"wrk at 1 connection (1 thread) and at {args.connections} connections "
            f"({args.threads} threads), {args.warmup:g} s warm-up then {args.duration:g} s "
            f"measured under each load, not streamed and streamed (with include_usage), in "
            f"{args.rounds} round(s) taking the gateways in turn, one way then the other; OpenAI "
            f"chat bodies with max_tokens {MAX_TOKENS} cycled from a pool of 200; upstream: "
            f"{args.upstream_command or 'prodgate mock-llm'}; {pinning.note}; prodgate's "
            "settings: "
            + (
                ", ".join(f"{k}={v}" for k, v in args.prodgate_env.items())
                or "its defaults (SQLite, synchronous FULL: every commit fsynced)"
            )
        ),
        command=command_line("bench/llm_gateway.py", arguments),
        machine=libraries,
        notes=notes,
    )


if __name__ == "__main__":
    sys.exit(run_main(benchmark))
