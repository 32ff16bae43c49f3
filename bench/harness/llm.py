"""LLM gateways under test: the mock upstream, chat bodies, prodgate's LLM service, and
a wrk run that also accounts for the upstream's CPU.

Every gateway of an LLM benchmark stands in front of the same upstream,
``prodgate mock-llm`` (a local OpenAI-compatible server), and gets the same load:
OpenAI chat bodies cycled from a pool, streaming or not. On a small machine the
gateway gets CPUs of its own and the load generator shares the others with the mock
(:func:`llm_pinning`): the mock and wrk are the same for every gateway, so what
differs from one run to the next is the gateway alone. The direct run (wrk against
the mock itself) is the latency every gateway adds to: overhead is a gateway's
latency minus the direct one, at the same load.
"""

from __future__ import annotations

import http.client
import math
import shlex
import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from .gateway import cli, create_key
from .procs import (
    Pinning,
    Server,
    clean_env,
    cpu_seconds,
    free_port,
    metric_sum,
    scrape,
    usable_cpus,
)
from .wrk import Load, WrkResult

CHAT_PATH = "/v1/chat/completions"
#: What the mock serves and the price prodgate and LiteLLM both charge for it.
UPSTREAM_MODEL = "mock-large"
PRICE = (5.0, 15.0)  # USD per million input and output tokens
MAX_TOKENS = 16

_TOPICS = (
    "a water leak in the kitchen",
    "a cracked windscreen",
    "a stolen bicycle",
    "hail damage to the roof",
    "a delayed flight",
    "a broken phone screen",
    "a burst pipe in winter",
    "a dented car door",
)


# -- pinning ---------------------------------------------------------------------------------


def llm_pinning(enabled: bool) -> Pinning:
    """The gateway on the first half of the CPUs, wrk and the mock on the other half.

    ``Pinning.server`` is the gateway's side and ``Pinning.load`` the load's (wrk and
    the upstream it stands for)."""
    if not enabled:
        return Pinning(note="CPU pinning disabled (--no-pin)")
    if shutil.which("taskset") is None:
        return Pinning(
            note="taskset not found (util-linux): the gateway, wrk and the mock share the CPUs"
        )
    cpus = sorted(usable_cpus())
    if len(cpus) < 2:
        return Pinning(note="only one CPU: the gateway, wrk and the mock share it")
    half = len(cpus) // 2
    gateway = ",".join(map(str, cpus[:half]))
    load = ",".join(map(str, cpus[half:]))
    return Pinning(
        load, gateway, f"gateway pinned to CPU {gateway}, wrk and the mock to CPU {load} (taskset)"
    )


# -- the upstream ------------------------------------------------------------------------------


def mock_server(
    prodgate: Sequence[str], work: Path, pinning: Pinning, command: str | None = None
) -> Server:
    """``prodgate mock-llm`` on a free port, on the load's CPUs; its base URL is
    ``server.base + "/v1"``. *command* runs another OpenAI-compatible server instead,
    ``{port}`` in it replaced by the port (it must answer ``GET /v1/models``)."""
    port = free_port()
    if command:
        argv = shlex.split(command.replace("{port}", str(port)))
    else:
        argv = [*prodgate, "mock-llm", "--port", str(port)]
    return Server(
        "mock LLM",
        pinning.load(argv),
        f"http://127.0.0.1:{port}",
        "/v1/models",
        work / "mock-llm.log",
        clean_env(),
    )


# -- bodies ----------------------------------------------------------------------------------


def chat_bodies(model: str, stream: bool, n: int = 200) -> list[dict[str, Any]]:
    """*n* different OpenAI chat bodies for *model* (no upstream can answer from a cache)."""
    out = []
    for i in range(n):
        body: dict[str, Any] = {
            "model": model,
            "messages": [
                {
                    "role": "user",
                    "content": f"Claim {i:04d}: a customer reports {_TOPICS[i % len(_TOPICS)]}. "
                    "Which team handles it, in a few words?",
                }
            ],
            "max_tokens": MAX_TOKENS,
        }
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        out.append(body)
    return out


# -- one sample, read and checked ------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One answer read to its end: what it said, and how it came."""

    status: int
    content_type: str
    text: str  # the answer's content (a stream's deltas concatenated)
    chunks: int  # SSE events before [DONE] (0 when not streamed)
    usage: dict[str, Any] | None
    done: bool  # a stream ended with ``data: [DONE]``
    raw: bytes

    def problem(self, stream: bool) -> str:
        """What is wrong with it as an OpenAI answer, or ''."""
        if self.status != 200:
            return f"status {self.status}: {self.raw[:300]!r}"
        if stream and not (self.content_type.startswith("text/event-stream") and self.done):
            return f"not an SSE stream ending with [DONE]: {self.raw[:300]!r}"
        if not self.text:
            return f"no content in the answer: {self.raw[:300]!r}"
        if not self.usage:
            return "no usage in the answer"
        return ""

    def describe(self) -> str:
        usage = self.usage or {}
        how = f"{self.chunks} chunks" if self.chunks else "one JSON"
        return (
            f"{how}, {usage.get('prompt_tokens')} + {usage.get('completion_tokens')} tokens: "
            f"{self.text[:40]!r}"
        )


def ask(url: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> Sample:
    """POST *body* to *url* and read the answer to its end (a stream event by event)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request(
            "POST",
            parts.path,
            orjson.dumps(body),
            {"Content-Type": "application/json", **headers},
        )
        resp = conn.getresponse()
        raw = resp.read()
        content_type = resp.getheader("Content-Type", "")
    finally:
        conn.close()
    if resp.status != 200:
        return Sample(resp.status, content_type, "", 0, None, False, raw)
    if not content_type.startswith("text/event-stream"):
        answer = orjson.loads(raw)
        text = answer["choices"][0]["message"].get("content") or ""
        return Sample(resp.status, content_type, text, 0, answer.get("usage"), False, raw)
    text, chunks, usage, done = "", 0, None, False
    for event in raw.split(b"\n\n"):
        data = event.strip().removeprefix(b"data:").strip()
        if not data:
            continue
        if data == b"[DONE]":
            done = True
            break
        chunk = orjson.loads(data)
        chunks += 1
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
    return Sample(resp.status, content_type, text, chunks, usage, done, raw)


# -- prodgate's LLM service ------------------------------------------------------------------------

SERVICE = "bench-llm"

SPEC = """\
providers:
  mock:
    base_url: {upstream}
    models: {{{model}: {{input: {input}, output: {output}}}}}
services:
  {service}:
    kind: llm
    owner: {{name: Bench, contact: bench@example.com}}
    contract:
      input: {{type: object, properties: {{message: {{type: string}}}}, required: [message]}}
    limits: {{rpm: 100000000, tokens_per_minute: 1000000000}}
    llm: {{budgets: {{day: 1000000}}}}
{guard}"""

PROMPT = """\
model: mock/{model}
messages:
  - {{role: system, content: "You answer briefly."}}
  - {{role: user, content: "{{{{ message }}}}"}}
parameters: {{max_tokens: {max_tokens}}}
"""


def prodgate_llm(
    prodgate: Sequence[str], home: Path, upstream: str, *, rails: bool = True
) -> tuple[Path, str]:
    """An LLM service in front of *upstream* in a new *home*: the spec (limits and a
    budget on; the default guard rails, or none without *rails*), a prompt version
    registered, approved by another person and deployed, and a key with (generous)
    limits: requests and tokens per minute, a day's budget. Returns the spec's path and
    the key."""
    home.mkdir(parents=True, exist_ok=True)
    spec = home / "prodgate.yaml"
    spec.write_text(
        SPEC.format(
            upstream=upstream,
            model=UPSTREAM_MODEL,
            input=PRICE[0],
            output=PRICE[1],
            service=SERVICE,
            guard="" if rails else "    guard: off\n",
        )
    )
    prompt = home / "prompt.yaml"
    prompt.write_text(PROMPT.format(model=UPSTREAM_MODEL, max_tokens=MAX_TOKENS))
    env = {"PRODGATE_HOME": str(home), "PRODGATE_CONFIG": str(spec)}
    cli(prodgate, env, "register", SERVICE, str(prompt), "--by", "bench-author")
    # Approval asks for a passing evaluation; what the prompt answers is not what this
    # measures, so the approver overrides the gates and says why (it is recorded).
    cli(
        prodgate,
        env,
        "approve",
        SERVICE,
        "1",
        "--by",
        "bench-approver",
        "--override-gates",
        "--reason",
        "benchmark of the gateway: the answers are not evaluated",
    )
    cli(prodgate, env, "deploy", SERVICE, "1", "--by", "bench-approver")
    _, key = create_key(
        prodgate,
        env,
        "bench",
        SERVICE,
        "--rpm",
        "100000000",
        "--tokens-per-minute",
        "1000000000",
        "--budget-day",
        "1000000",
    )
    return spec, key


@dataclass(frozen=True)
class Spending:
    """What prodgate's ``/metrics`` say its LLM calls used and cost."""

    calls: float  # answered calls (outcome ok)
    input_tokens: float
    output_tokens: float
    cost_usd: float

    @classmethod
    def scrape(cls, base: str) -> Spending:
        m = scrape(base)
        return cls(
            calls=metric_sum(m, "prodgate_llm_calls_total", outcome="ok"),
            input_tokens=metric_sum(m, "prodgate_llm_tokens_total", kind="input"),
            output_tokens=metric_sum(m, "prodgate_llm_tokens_total", kind="output"),
            cost_usd=metric_sum(m, "prodgate_llm_cost_usd_total"),
        )

    @property
    def priced_usd(self) -> float:
        """The cost of the counted tokens at :data:`PRICE`."""
        return (self.input_tokens * PRICE[0] + self.output_tokens * PRICE[1]) / 1e6

    @property
    def consistent(self) -> bool:
        """The recorded cost is the counted tokens' (each call's cost is rounded to
        1e-9 USD)."""
        return self.calls > 0 and abs(self.cost_usd - self.priced_usd) <= 1e-9 * self.calls + 1e-12

    def describe(self) -> str:
        return (
            f"prodgate's /metrics: {self.calls:,.0f} LLM calls answered, "
            f"{self.input_tokens:,.0f} input and {self.output_tokens:,.0f} output tokens, "
            f"${self.cost_usd:.6f} recorded (${self.priced_usd:.6f} at the price table)"
        )


# -- a wrk run with the upstream's CPU -----------------------------------------------------------


@dataclass
class Run:
    """One wrk run against a gateway, with the CPU the upstream used meanwhile."""

    result: WrkResult
    upstream_cpu: float  # share of one CPU the mock used

    @property
    def p50(self) -> float:
        return self.result.latency_ms["50"]

    @property
    def p99(self) -> float:
        return self.result.latency_ms["99"]


def run(load: Load, url: str, seconds: float, server_pid: int, upstream_pid: int) -> Run:
    """:meth:`Load.run`, and the share of the mock in it. For the direct run
    (*server_pid* the mock's) the upstream's share is the server's; for a gateway the
    mock's share is taken out of "other CPU"."""
    before, started = cpu_seconds(upstream_pid), time.monotonic()
    result = load.run(url, seconds, server_pid)
    elapsed = time.monotonic() - started
    used = cpu_seconds(upstream_pid) - before
    share = used / elapsed if elapsed > 0 else math.nan
    if server_pid != upstream_pid:
        result.other_cpu = max(0.0, result.other_cpu - share)
    return Run(result, share)


def combined(runs: Sequence[Run]) -> Run:
    """Runs of one gateway under one load as one: requests and seconds summed, each
    latency percentile the median of the runs', the CPU shares their means."""
    results = [r.result for r in runs]
    requests = sum(r.requests for r in results)
    seconds = sum(r.seconds for r in results)
    sockets: dict[str, int] = {}
    for r in results:
        for k, v in r.socket_errors.items():
            sockets[k] = sockets.get(k, 0) + v
    result = WrkResult(
        requests=requests,
        seconds=seconds,
        rps=requests / seconds if seconds else 0.0,
        latency_ms={
            q: statistics.median(r.latency_ms[q] for r in results) for q in ("50", "75", "90", "99")
        },
        non2xx=sum(r.non2xx for r in results),
        socket_errors=sockets,
        server_cpu=statistics.fmean(r.server_cpu for r in results),
        other_cpu=statistics.fmean(r.other_cpu for r in results),
    )
    return Run(result, statistics.fmean(r.upstream_cpu for r in runs))


def settle(pids: Sequence[int], timeout: float = 15.0, below: float = 0.1) -> float:
    """Wait until the processes *pids* are idle (under *below* of a CPU each over
    200 ms): a gateway left with answers in flight when wrk stopped would still be
    working on them, on the CPU the next gateway is measured on. The seconds waited."""
    window = 0.2
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = [cpu_seconds(p) for p in pids]
        time.sleep(window)
        if all(cpu_seconds(p) - b < below * window for p, b in zip(pids, before, strict=True)):
            break
    return time.monotonic() - started
