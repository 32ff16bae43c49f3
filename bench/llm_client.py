"""Benchmark: which HTTP client the LLM gateway calls its upstreams with, by measurement.

A gateway in front of an LLM API spends its CPU on the upstream side: sending each
request, reading each answer, and for a stream, every server-sent event. httpx is
known to be slow under concurrency (encode/httpx#3215), and LiteLLM moved its
OpenAI-compatible calls to aiohttp for that reason (BerriAI/litellm#11097). This
measures it here, on the workload of ``prodgate.llm.upstream``: chat completions
against the mock LLM (``prodgate mock-llm``), plain JSON answers and streamed ones
(22 SSE events of OpenAI's chunk format, about 4.4 kB, with the usage chunk), with
64 requests in flight.

The clients, each reading every answer fully and parsing it with orjson (a stream:
every ``data:`` line):

- **aiohttp**: one ``aiohttp.ClientSession``, a ``TCPConnector`` as large as the
  concurrency; stream lines read with ``async for line in resp.content``.
- **httpx**: one ``httpx.AsyncClient`` with the same pool size; stream lines read
  with ``aiter_lines()``.
- **prodgate Upstream**: ``prodgate.llm.upstream.Upstream`` itself (aiohttp with
  prodgate's incremental SSE parser, deadlines and error mapping): what the gateway
  runs, against the bare aiohttp it is built on.

Each client sends the same ``--requests`` (5,000) per mode from ``--concurrency``
(64) workers in a closed loop, after a warm-up, in ``--rounds`` alternating rounds
(aiohttp, httpx, Upstream; then the other way round) so that a drift of the machine
meets them all; figures are over all rounds together. The mock runs in its own
process pinned to one CPU, this process on another (``taskset`` / sched_setaffinity;
``--no-pin`` turns that off), on uvloop as the gateway runs (``--loop asyncio`` for
the standard loop). Printed per client and mode: requests/s, p50 and p99 latency (a
stream: until its last event), this process's CPU per request, the mock's CPU share,
and the errors; then the ratios. Every answer is checked against the expected text.

Targets: aiohttp at least as fast as httpx in both modes (the choice it justifies),
and the Upstream at least 0.85x bare aiohttp's throughput in both modes (what
prodgate's parsing and deadlines may cost).

Run it from the repository root (about a minute)::

    .venv/bin/python bench/llm_client.py [--requests 5000] [--rounds 3] [--markdown [FILE]]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from harness import (
    Check,
    Server,
    Table,
    TablesReport,
    clean_env,
    command_line,
    emit,
    free_port,
    machine,
    prodgate_command,
    ratio,
    run_main,
    running,
    warn_if_disturbed,
)
from harness.procs import cpu_seconds, usable_cpus
from prodgate.llm.upstream import Upstream
from prodgate.spec.llm import Provider, Timeouts

LIBRARIES = ("prodgate", "aiohttp", "httpx", "httpcore", "orjson", "uvloop")
CLIENTS = ("aiohttp", "httpx", "prodgate Upstream")
MODES = ("plain", "stream")
MODEL = "gpt-4.1-mini"
CHOICE_TARGET = 1.0  # aiohttp req/s >= 1.0x httpx
UPSTREAM_TARGET = 0.85  # prodgate Upstream req/s >= 0.85x bare aiohttp
TIMEOUTS = Timeouts(connect_ms=5000, first_token_ms=30000, total_ms=60000)
MESSAGES = [
    "My car was hit while parked outside my house last night; please help me file a claim.",
    "A pipe burst in the kitchen and the floor is ruined. Am I covered for the damage?",
    "Someone stole my bicycle from the garage. What do I need to send you?",
    "Hail dented the roof of my car during the storm on Tuesday.",
    "I slipped on ice in front of a shop and broke my wrist; the owner says to call you.",
    "My phone fell in the sea on holiday. Does my travel policy pay for a new one?",
    "The neighbour's tree fell on our fence and the shed behind it.",
    "Water came through the ceiling from the flat upstairs while we were away.",
]


def body(n: int, stream: bool) -> dict[str, Any]:
    b: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": MESSAGES[n % len(MESSAGES)]}],
    }
    if stream:
        b["stream"] = True
        b["stream_options"] = {"include_usage": True}
    return b


# The bodies as dicts: each client serializes its request, as the gateway must.
BODIES = {mode: [body(n, mode == "stream") for n in range(len(MESSAGES))] for mode in MODES}
HEADERS = {"Content-Type": "application/json"}


def text_of(answer: dict[str, Any]) -> str:
    return str(answer["choices"][0]["message"]["content"])


def text_of_chunks(chunks: Sequence[dict[str, Any]]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )


def chunks_of_lines(lines: Sequence[bytes]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        if line.startswith(b"data: ") and line[6:] != b"[DONE]":
            out.append(orjson.loads(line[6:]))
    return out


# -- the clients: (mode, n) -> the answer's text ------------------------------------------

Call = Callable[[str, int], Awaitable[str]]


@dataclass
class Client:
    name: str
    call: Call
    close: Callable[[], Awaitable[None]]


def aiohttp_client(url: str, concurrency: int) -> Client:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=60),
    )
    endpoint = url + "/chat/completions"

    async def call(mode: str, n: int) -> str:
        payload = orjson.dumps(BODIES[mode][n % len(MESSAGES)])
        async with session.post(endpoint, data=payload, headers=HEADERS) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            if mode == "plain":
                return text_of(orjson.loads(await resp.read()))
            lines = [line.rstrip(b"\r\n") async for line in resp.content]
            return text_of_chunks(chunks_of_lines(lines))

    return Client("aiohttp", call, session.close)


def httpx_client(url: str, concurrency: int) -> Client:
    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        timeout=60.0,
    )
    endpoint = url + "/chat/completions"

    async def call(mode: str, n: int) -> str:
        payload = orjson.dumps(BODIES[mode][n % len(MESSAGES)])
        if mode == "plain":
            resp = await client.post(endpoint, content=payload, headers=HEADERS)
            if resp.status_code != 200:
                raise RuntimeError(f"HTTP {resp.status_code}")
            return text_of(orjson.loads(resp.content))
        async with client.stream("POST", endpoint, content=payload, headers=HEADERS) as resp:
            if resp.status_code != 200:
                raise RuntimeError(f"HTTP {resp.status_code}")
            lines = [line.encode() async for line in resp.aiter_lines()]
        return text_of_chunks(chunks_of_lines(lines))

    return Client("httpx", call, client.aclose)


def upstream_client(url: str, concurrency: int) -> Client:
    upstream = Upstream(Provider("mock", url, max_connections=concurrency), api_key=None)
    bodies = {mode: [body(n, False) for n in range(len(MESSAGES))] for mode in MODES}

    async def call(mode: str, n: int) -> str:
        b = bodies[mode][n % len(MESSAGES)]
        if mode == "plain":
            return text_of(await upstream.complete(MODEL, b, TIMEOUTS))
        return text_of_chunks([c async for c in upstream.stream(MODEL, b, TIMEOUTS)])

    return Client("prodgate Upstream", call, upstream.close)


MAKERS: dict[str, Callable[[str, int], Client]] = {
    "aiohttp": aiohttp_client,
    "httpx": httpx_client,
    "prodgate Upstream": upstream_client,
}


# -- a run ---------------------------------------------------------------------------------


@dataclass
class Figures:
    """Everything measured for one client in one mode, over all rounds."""

    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_s: float = 0.0
    mock_cpu_s: float = 0.0
    errors: int = 0
    wrong: int = 0
    first_error: str = ""

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.errors

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_request(self) -> float:
        return self.cpu_s / self.requests if self.requests else 0.0

    def percentile(self, p: float) -> float:
        if len(self.latencies_ms) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies_ms, n=1000, method="inclusive")[
            round(p * 10) - 1
        ]


async def load(
    client: Client, mode: str, requests: int, concurrency: int, expected: list[str], into: Figures
) -> None:
    """*requests* calls from *concurrency* workers; figures added to *into*."""
    next_n = 0

    async def worker() -> None:
        nonlocal next_n
        while next_n < requests:
            n = next_n
            next_n += 1
            t0 = time.perf_counter()
            try:
                text = await client.call(mode, n)
            except Exception as exc:  # counted and shown, the run goes on
                into.errors += 1
                into.first_error = into.first_error or f"{type(exc).__name__}: {exc}"
                continue
            into.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
            if text != expected[n % len(MESSAGES)]:
                into.wrong += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(
    url: str, mock_pid: int, requests: int, concurrency: int, rounds: int, warmup: int
) -> dict[tuple[str, str], Figures]:
    reference = aiohttp_client(url, 4)
    expected = [await reference.call("plain", n) for n in range(len(MESSAGES))]
    await reference.close()
    figures = {(c, m): Figures() for c in CLIENTS for m in MODES}
    for r in range(rounds):
        order = CLIENTS if r % 2 == 0 else tuple(reversed(CLIENTS))
        for name in order:
            client = MAKERS[name](url, concurrency)
            try:
                for mode in MODES:
                    await load(client, mode, warmup, concurrency, expected, Figures())
                    fig = figures[(name, mode)]
                    cpu0, mock0, t0 = (
                        time.process_time(),
                        cpu_seconds(mock_pid),
                        time.perf_counter(),
                    )
                    share = requests // rounds + (1 if r < requests % rounds else 0)
                    await load(client, mode, share, concurrency, expected, fig)
                    fig.seconds += time.perf_counter() - t0
                    fig.cpu_s += time.process_time() - cpu0
                    fig.mock_cpu_s += cpu_seconds(mock_pid) - mock0
                    print(
                        f"round {r + 1}/{rounds} {name:<18} {mode:<6} "
                        f"{len(fig.latencies_ms):>6} answered so far",
                        flush=True,
                    )
            finally:
                await client.close()
    return figures


def run_loop(kind: str, main: Awaitable[Any]) -> Any:
    if kind == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)  # type: ignore[arg-type]
    return asyncio.run(main)  # type: ignore[arg-type]


# -- the program -------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=5000, help="requests per client and mode")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight [64]")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds [3]")
    p.add_argument("--warmup", type=int, default=300, help="warm-up requests per round [300]")
    p.add_argument(
        "--chunk-delay-ms",
        type=float,
        default=0.0,
        help="the mock's pause between stream events [0: all events in one write]",
    )
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--no-pin", action="store_true", help="do not pin the mock and the client")
    p.add_argument(
        "--markdown",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="print a Markdown results section, or append it to FILE",
    )
    return p.parse_args(argv)


def pin(enabled: bool) -> tuple[list[str], str]:
    """The mock's taskset prefix, after pinning this process; and a note saying how."""
    cpus = sorted(usable_cpus())
    if not enabled:
        return [], "no CPU pinning (--no-pin)"
    if len(cpus) < 2:
        return [], "one CPU: the client and the mock share it"
    os.sched_setaffinity(0, {cpus[0]})
    return ["taskset", "-c", str(cpus[1])], f"client on CPU {cpus[0]}, mock on CPU {cpus[1]}"


def mock_server(work: Path, taskset: list[str], chunk_delay_ms: float) -> Server:
    port = free_port()
    argv = [*prodgate_command(), "mock-llm", "--port", str(port)]
    if chunk_delay_ms:
        argv += ["--chunk-delay-ms", f"{chunk_delay_ms:g}"]
    return Server(
        "mock LLM",
        [*taskset, *argv],
        f"http://127.0.0.1:{port}",
        "/v1/models",
        work / "mock.log",
        clean_env(),
    )


def render(
    figures: dict[tuple[str, str], Figures],
    args: argparse.Namespace,
    note: str,
    arguments: list[str],
    host: dict[str, str],
) -> TablesReport:
    rows = []
    for mode in MODES:
        for name in CLIENTS:
            f = figures[(name, mode)]
            rows.append(
                [
                    mode,
                    name,
                    f"{f.rps:,.0f}",
                    f"{f.percentile(50):.1f}",
                    f"{f.percentile(99):.1f}",
                    f"{f.cpu_per_request * 1e6:,.0f}",
                    f"{f.mock_cpu_s / f.seconds:.0%}" if f.seconds else "-",
                    f"{f.errors + f.wrong}",
                ]
            )
    table = Table(
        f"{args.concurrency} requests in flight, {args.requests:,} requests per client and mode",
        ["mode", "client", "req/s", "p50 ms", "p99 ms", "client CPU us/req", "mock CPU", "errors"],
        rows,
        notes=[
            '"client CPU" is this process\'s CPU time per request (sending, reading and '
            'parsing the answer); "mock CPU" the mock\'s CPU time as a share of one CPU; '
            '"errors" counts failed requests and answers whose text was not the expected one.'
        ],
    )
    checks = []
    for mode in MODES:
        a, h, u = (figures[(c, mode)] for c in CLIENTS)
        checks.append(Check.at_least(f"{mode}: req/s aiohttp / httpx", ratio(a.rps, h.rps),
                                     CHOICE_TARGET))  # fmt: skip
        checks.append(
            Check.at_least(
                f"{mode}: req/s Upstream / aiohttp", ratio(u.rps, a.rps), UPSTREAM_TARGET
            )
        )
    bad = sum(f.errors + f.wrong for f in figures.values())
    checks.append(Check("failed or wrong answers", str(bad), "0", bad == 0))
    ratios = []
    for mode in MODES:
        a, h, u = (figures[(c, mode)] for c in CLIENTS)
        cpu = a.cpu_per_request
        ratios.append(
            f"{mode}: p99 httpx / aiohttp {ratio(h.percentile(99), a.percentile(99)):.2f}x; "
            f"client CPU per request httpx / aiohttp {ratio(h.cpu_per_request, cpu):.2f}x, "
            f"Upstream / aiohttp {ratio(u.cpu_per_request, cpu):.2f}x."
        )
    errors = [f"{c} {m}: {f.first_error}" for (c, m), f in figures.items() if f.first_error]
    delay = (
        f"the mock pausing {args.chunk_delay_ms:g} ms between stream events"
        if args.chunk_delay_ms
        else "the mock sending a stream's events in one write"
    )
    return TablesReport(
        title="LLM upstream client: aiohttp vs httpx",
        tables=[table],
        checks=checks,
        load=(
            f"{args.requests:,} chat completions per client and mode ({args.rounds} alternating "
            f"rounds, {args.warmup} warm-up requests each), {args.concurrency} in flight, "
            f"{args.loop} event loop, {note}, {delay}"
        ),
        command=command_line("bench/llm_client.py", arguments),
        machine=host,
        notes=[*ratios, *(f"first error: {e}" for e in errors)],
    )


def benchmark(arguments: list[str]) -> int:
    args = parse_args(arguments)
    host = machine(None, LIBRARIES)  # before pinning: the CPUs the machine gives
    taskset, note = pin(not args.no_pin)
    warn_if_disturbed()
    print(f"{note}; {args.concurrency} in flight, {args.requests:,} requests per client and mode")
    with tempfile.TemporaryDirectory(prefix="prodgate-bench-") as tmp:
        server = mock_server(Path(tmp), taskset, args.chunk_delay_ms)
        with running(server):
            figures = run_loop(
                args.loop,
                measure(
                    server.base + "/v1",
                    server.pid,
                    args.requests,
                    args.concurrency,
                    args.rounds,
                    args.warmup,
                ),
            )
    return emit(render(figures, args, note, arguments, host), args.markdown)


if __name__ == "__main__":
    sys.exit(run_main(benchmark))
