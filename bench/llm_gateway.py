"""Benchmark: prodgate's LLM gateway against LiteLLM's proxy and a bare passthrough.

Three gateways, one after another, stand in front of the same upstream, a
``prodgate mock-llm`` (a local OpenAI-compatible server), and get the same load with
OpenAI chat bodies (``max_tokens`` 16), not streamed and streamed
(``stream_options.include_usage``):

- **prodgate**: ``prodgate serve`` (one process) with an LLM service whose deployed
  prompt version (registered, approved by another person, deployed) calls the mock;
  every request carries an API key with a rate limit, the service has a rate limit, a
  tokens-per-minute limit and a daily budget (so each call reserves and settles its
  cost), and each answer is released only after its audit record is committed.
- **LiteLLM**: LiteLLM's proxy (``litellm --num_workers 1``) installed by the benchmark
  into its own virtual environment (``bench/.venvs/litellm``, once), without a
  database: a master key on every request, the model priced so each call is costed, no
  callbacks, health checks or telemetry (``bench/harness/litellm.py``).
- **passthrough**: ``bench/llm_passthrough.py``, a bare aiohttp app that forwards the
  body to the mock with one ``ClientSession`` and returns or streams its answer: the
  floor of a Python gateway.
- **direct**: wrk against the mock itself: the latency every gateway adds to.

Each is loaded by wrk at 1 connection (the latency a lone caller sees) and at 64
connections (throughput and tail), for ``--duration`` seconds after a ``--warmup``; wrk
reads each answer to its end, so a streamed request counts when its stream is done.
The gateway under test is pinned to CPU 0 and wrk and the mock share CPU 1
(``taskset``; half of the CPUs each on a larger machine): the mock and the load are the
same for every gateway. A gateway's overhead is its latency minus the direct latency
at the same load and mode.

Targets (issue 8), each for streamed and non-streamed requests: prodgate's overhead
p50 at 1 connection at most 1/10 of LiteLLM's and at most 2x the passthrough's; its
throughput at 64 connections at least 20x LiteLLM's and at least 0.5x the
passthrough's; its p99 at 64 connections at most 1/10 of LiteLLM's. prodgate answers
no non-2xx, and ``prodgate audit verify`` finds a record for every 2xx it sent.

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
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    BENCH_DIR,
    EXIT_NO_WRK,
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
    ask,
    chat_bodies,
    llm_pinning,
    mock_server,
    prodgate_llm,
    run,
)
from harness.report import Table, TablesReport

DIRECT, PASSTHROUGH_, LITELLM, PRODGATE = "direct", "passthrough", "litellm", "prodgate"
TARGETS = (DIRECT, PASSTHROUGH_, LITELLM, PRODGATE)  # the order they run in
LABELS = {
    DIRECT: "direct to the mock",
    PASSTHROUGH_: "bare aiohttp passthrough",
    LITELLM: "LiteLLM proxy",
    PRODGATE: "prodgate",
}
MODES = ("json", "stream")
PASSTHROUGH = BENCH_DIR / "llm_passthrough.py"
LIBRARIES = ("prodgate", "aiohttp", "uvicorn", "uvloop", "httptools", "starlette", "orjson")

# Targets of issue 8, prodgate against each baseline.
OVERHEAD_VS_LITELLM = 0.1  # overhead p50 at 1 connection <= 1/10 of LiteLLM's
OVERHEAD_VS_PASSTHROUGH = 2.0  # ... and <= 2x the passthrough's
THROUGHPUT_VS_LITELLM = 20.0  # req/s at 64 connections >= 20x LiteLLM's
THROUGHPUT_VS_PASSTHROUGH = 0.5  # ... and >= 0.5x the passthrough's
P99_VS_LITELLM = 0.1  # p99 at 64 connections <= 1/10 of LiteLLM's


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="prodgate's LLM gateway against LiteLLM's proxy and a bare aiohttp "
        "passthrough, in front of one mock upstream, under wrk.",
    )
    add_load_arguments(p, duration=10.0, warmup=2.0, connections=64, threads=2)
    p.add_argument(
        "--only",
        default=",".join(TARGETS),
        metavar="LIST",
        help=f"which to run, comma-separated, of {', '.join(TARGETS)} [all]",
    )
    p.add_argument(
        "--litellm",
        default=lite.REQUIREMENT,
        metavar="REQUIREMENT",
        help=f"what pip installs into bench/.venvs/litellm [{lite.REQUIREMENT}]",
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
    return args


@dataclass
class Figures:
    """What one gateway did: a run per (mode, connections), or why it could not run."""

    target: str
    runs: dict[tuple[str, int], Run] = field(default_factory=dict)
    warmups: dict[tuple[str, int], Run] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)  # mode -> what the sample said
    failure: str = ""

    @property
    def errors(self) -> int:
        """Non-2xx and socket errors over every run, warm-up included."""
        return sum(r.result.errors for r in [*self.runs.values(), *self.warmups.values()])

    @property
    def acknowledged(self) -> int:
        """2xx answers over every run, warm-up and samples included."""
        runs = [*self.runs.values(), *self.warmups.values()]
        return sum(r.result.ok for r in runs) + len(self.samples)


@dataclass
class Gateway:
    """A server to measure (None: the mock itself) and how to call it."""

    target: str
    server: Server | None
    model: str
    headers: dict[str, str]


def measure(
    gateway: Gateway,
    mock: Server,
    wrk: str,
    work: Path,
    args: argparse.Namespace,
    pinning: Pinning,
) -> Figures:
    """Ask *gateway* once per mode, then warm it up and measure it at 1 and at
    ``--connections`` connections, not streamed then streamed."""
    figures = Figures(gateway.target)
    server = gateway.server or mock
    url = server.base + CHAT_PATH
    label = LABELS[gateway.target]
    for mode in MODES:
        bodies = chat_bodies(gateway.model, stream=mode == "stream")
        sample = ask(url, bodies[0], gateway.headers)
        problem = sample.problem(stream=mode == "stream")
        if problem:
            raise RuntimeError(f"{label} answered a {mode} request wrongly: {problem}")
        figures.samples[mode] = sample.describe()
        script = work / f"{gateway.target}-{mode}.lua"
        script.write_text(lua_script(bodies, gateway.headers))
        for connections in (1, args.connections):
            threads = max(1, min(args.threads, connections))
            load = Load(wrk, script, connections, threads, pinning, gateway.headers)
            print(f"{label}: {mode}, {connections} connection(s) ...", flush=True)
            key = (mode, connections)
            figures.warmups[key] = run(load, url, args.warmup, server.pid, mock.pid)
            figures.runs[key] = run(load, url, args.duration, server.pid, mock.pid)
    return figures


@contextlib.contextmanager
def started(server: Server | None) -> Iterator[None]:
    if server is None:
        yield
    else:
        with running(server):
            yield


def row(f: Figures, direct: Figures | None, mode: str, connections: int) -> list[str]:
    r = f.runs[(mode, connections)]
    lat = r.result.latency_ms
    base = direct.runs.get((mode, connections)) if direct and f.target != DIRECT else None
    over = [f"{r.p50 - base.p50:.2f}", f"{r.p99 - base.p99:.2f}"] if base else ["", ""]
    return [
        LABELS[f.target],
        mode,
        str(connections),
        f"{r.result.rps:,.0f}",
        f"{lat['50']:.2f}",
        f"{lat['90']:.2f}",
        f"{lat['99']:.2f}",
        *over,
        r.result.describe_errors(),
        f"{r.result.server_cpu:.0%}" if f.target != DIRECT else "",
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

    def __init__(self, figures: dict[str, Figures], connections: int) -> None:
        self.figures = figures
        self.n = connections

    def measured(self, target: str) -> bool:
        f = self.figures.get(target)
        return f is not None and not f.failure

    def overhead(self, target: str, mode: str, q: str = "50") -> float:
        """Latency at 1 connection minus the direct one, ms."""
        r = self.figures[target].runs[(mode, 1)].result.latency_ms[q]
        d = self.figures[DIRECT].runs[(mode, 1)].result.latency_ms[q]
        return r - d

    def rps(self, target: str, mode: str) -> float:
        return self.figures[target].runs[(mode, self.n)].result.rps

    def p99(self, target: str, mode: str) -> float:
        return self.figures[target].runs[(mode, self.n)].p99

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
            if self.measured(DIRECT):
                if self.measured(LITELLM):
                    out.append(
                        Check.at_most(
                            f"{mode}: overhead p50 at 1 conn, prodgate / LiteLLM",
                            ratio(self.overhead(PRODGATE, mode), self.overhead(LITELLM, mode)),
                            OVERHEAD_VS_LITELLM,
                        )
                    )
                if self.measured(PASSTHROUGH_):
                    out.append(
                        Check.at_most(
                            f"{mode}: overhead p50 at 1 conn, prodgate / passthrough",
                            ratio(self.overhead(PRODGATE, mode), self.overhead(PASSTHROUGH_, mode)),
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
            if self.measured(PASSTHROUGH_):
                out.append(
                    Check.at_least(
                        f"{mode}: req/s at {self.n} conns, prodgate / passthrough",
                        ratio(self.rps(PRODGATE, mode), self.rps(PASSTHROUGH_, mode)),
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
        pairs = [(PRODGATE, LITELLM), (PRODGATE, PASSTHROUGH_), (PASSTHROUGH_, LITELLM)]
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
    litellm_exe = lite.ensure_venv(args.litellm) if LITELLM in args.targets else None
    warn_if_disturbed()
    figures: dict[str, Figures] = {}
    audit = None
    with tempfile.TemporaryDirectory(prefix="prodgate-bench-llm-") as tmp:
        work = Path(tmp)
        mock = mock_server(prodgate, work, pinning, args.upstream_command)
        with running(mock):
            upstream = mock.base + "/v1"
            print(
                f"mock upstream {upstream} (pid {mock.pid}); {pinning.note}; wrk at 1 and "
                f"{args.connections} connections, {args.warmup:g} s warm-up + "
                f"{args.duration:g} s measured each, not streamed and streamed",
                flush=True,
            )
            for target in args.targets:
                try:
                    gateway = prepare(target, prodgate, work, upstream, pinning, litellm_exe)
                    with started(gateway.server):
                        figures[target] = measure(gateway, mock, wrk, work, args, pinning)
                except (RuntimeError, OSError) as exc:
                    print(f"!!! {LABELS[target]} could not be measured: {exc}", flush=True)
                    figures[target] = Figures(target, failure=str(exc).splitlines()[0])
            if PRODGATE in figures and not figures[PRODGATE].failure:
                home = work / "prodgate-home"
                audit = verify_audit(prodgate, home, figures[PRODGATE].acknowledged)
                print(f"prodgate audit verify: {audit.summary}", flush=True)
    took = time.monotonic() - began
    return emit(report(args, arguments, figures, audit, pinning, wrk, took), args.markdown)


def prepare(
    target: str,
    prodgate: list[str],
    work: Path,
    upstream: str,
    pinning: Pinning,
    litellm_exe: Path | None,
) -> Gateway:
    """The server of *target* (not started) in front of *upstream*, and how to call it."""
    if target == DIRECT:
        return Gateway(DIRECT, None, UPSTREAM_MODEL, {})
    if target == PASSTHROUGH_:
        port = free_port()
        argv = [sys.executable, str(PASSTHROUGH), "--port", str(port), "--upstream", upstream]
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
        assert litellm_exe is not None
        config = work / "litellm.yaml"
        config.write_text(lite.config(SERVICE, upstream, UPSTREAM_MODEL, PRICE))
        server = lite.server(litellm_exe, config, work, pinning)
        return Gateway(target, server, SERVICE, {"Authorization": f"Bearer {lite.MASTER_KEY}"})
    home = work / "prodgate-home"
    print(f"preparing prodgate's {SERVICE} service in {home} ...", flush=True)
    spec, key = prodgate_llm(prodgate, home, upstream)
    server = prodgate_server(prodgate, home, work, pinning, spec=spec)
    return Gateway(target, server, SERVICE, {"Authorization": f"Bearer {key}"})


def report(
    args: argparse.Namespace,
    arguments: list[str],
    figures: dict[str, Figures],
    audit: Any,
    pinning: Pinning,
    wrk: str,
    took: float,
) -> TablesReport:
    direct = figures.get(DIRECT)
    if direct is not None and direct.failure:
        direct = None
    rows = [
        row(f, direct, mode, n)
        for f in figures.values()
        if not f.failure
        for mode in MODES
        for n in (1, args.connections)
    ]
    compare = Comparison(figures, args.connections)
    checks = compare.checks()
    failed = [f for f in figures.values() if f.failure]
    checks += [
        Check(f"{LABELS[f.target]} measured", f.failure[:60], "measured", False) for f in failed
    ]
    gw = figures.get(PRODGATE)
    if gw is not None and not gw.failure:
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
    notes = [
        "Overhead: the latency minus the direct one at the same load and mode. "
        "'gateway CPU' is the gateway process's CPU time over the run as a share of one "
        "CPU, 'mock CPU' the mock's, 'other CPU' the rest of the machine's but wrk's.",
    ]
    for f in figures.values():
        if f.failure:
            continue
        if f.target != PRODGATE and f.errors:
            notes.append(f"WARNING: {LABELS[f.target]} failed {f.errors} requests.")
        notes.append(
            f"{LABELS[f.target]} sample answers: "
            + "; ".join(f"{m}: {s}" for m, s in f.samples.items())
            + "."
        )
    notes.append(f"The run took {took:.0f} s.")
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
    if LITELLM in figures:
        libraries["LiteLLM"] = f"{lite.version()} (its own virtual environment: {args.litellm})"
    return TablesReport(
        title="LLM gateway: prodgate, LiteLLM and a bare passthrough",
        tables=tables,
        checks=checks,
        load=(
            f"wrk at 1 connection (1 thread) and at {args.connections} connections "
            f"({args.threads} threads), {args.warmup:g} s warm-up then {args.duration:g} s "
            f"measured for each mode (not streamed, streamed with include_usage), OpenAI chat "
            f"bodies with max_tokens {MAX_TOKENS} cycled from a pool of 200; upstream: "
            f"{args.upstream_command or 'prodgate mock-llm'}; {pinning.note}"
        ),
        command=command_line("bench/llm_gateway.py", arguments),
        machine=libraries,
        notes=notes,
    )


if __name__ == "__main__":
    sys.exit(run_main(benchmark))
