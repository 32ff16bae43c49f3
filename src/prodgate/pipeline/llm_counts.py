"""The Prometheus figures of an LLM service's calls, moved once per call.

An answered call moves eight series; their children are looked up once per version,
model and key and kept (a label lookup takes a lock and a dict). Failures, rarer, look
theirs up each time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prodgate.exceptions import OutputContractError, ProdgateError
from prodgate.llm.route import Completion
from prodgate.llm.tokens import Usage
from prodgate.pipeline.metrics import Metrics

CLIENT_CLOSED = 499  # the caller went away before the stream ended (nginx's code)

Labels = tuple[str, str, str, str, str]  # service, version, provider, model, key


class CallCounts:
    """The call metrics of one LLM service."""

    def __init__(self, service: str, metrics: Metrics) -> None:
        self.name = service
        self.metrics = metrics
        self._counts: dict[Labels, _OkCounts] = {}

    def count(
        self,
        version: str,
        key: str,
        prompt_model: str,
        c: Completion,
        usage: Usage,
        cost: float,
        status: int,
        failure: ProdgateError | None,
        latency_ms: float,
    ) -> None:
        """What one call moves: requests, latency, tokens, cost, outcome, attempts,
        fallbacks, time to first token. *key* is the caller's key id (``-``: none)."""
        m = self.metrics
        labels = (self.name, version, c.provider, c.model, key)
        if failure is None and status == 200 and c.provider:
            # The common case, its metrics looked up once per version, model and key (a
            # label lookup takes a lock and a dict, and an answer moves eight).
            counts = self._counts.get(labels) or self._count_ok(labels)
            counts.answered.inc()
            counts.latency.observe(latency_ms / 1000.0)
            counts.input.inc(usage.input_tokens)
            counts.output.inc(usage.output_tokens)
            if usage.cached_tokens:
                counts.cached.inc(usage.cached_tokens)
            counts.cost.inc(cost)
            counts.ok.inc()
            if len(c.attempts) > 1 or prompt_model != f"{c.provider}/{c.model}":
                self._count_attempts(prompt_model, c, version)
            else:
                counts.attempt_ok.inc()
            if c.ttft_ms is not None:
                counts.ttft.observe(c.ttft_ms / 1000.0)
            return
        m.requests.labels(self.name, version, str(status)).inc()
        m.latency.labels(self.name).observe(latency_ms / 1000.0)
        llm = m.llm
        if usage.input_tokens:
            llm.tokens.labels(*labels, "input").inc(usage.input_tokens)
        if usage.output_tokens:
            llm.tokens.labels(*labels, "output").inc(usage.output_tokens)
        if usage.cached_tokens:
            llm.tokens.labels(*labels, "cached").inc(usage.cached_tokens)
        if cost:
            llm.cost.labels(*labels).inc(cost)
        if failure is None and status == 200:
            outcome = "ok"
        elif isinstance(failure, OutputContractError):
            outcome = "output_contract"
        elif status == CLIENT_CLOSED:
            outcome = "client_closed"
        else:
            outcome = "error"
        llm.calls.labels(*labels, outcome).inc()
        self._count_attempts(prompt_model, c, version)
        if c.ttft_ms is not None:
            llm.ttft.labels(self.name, version).observe(c.ttft_ms / 1000.0)

    def _count_attempts(self, prompt_model: str, c: Completion, version: str) -> None:
        llm = self.metrics.llm
        for a in c.attempts:
            llm.attempts.labels(a.provider, a.model, a.outcome).inc()
        if c.provider and f"{c.provider}/{c.model}" != prompt_model:
            llm.fallbacks.labels(self.name, version).inc()

    def _count_ok(self, labels: Labels) -> _OkCounts:
        m, llm = self.metrics, self.metrics.llm
        name, version, provider, model, _ = labels
        counts = _OkCounts(
            answered=m.requests.labels(name, version, "200"),
            latency=m.latency.labels(name),
            input=llm.tokens.labels(*labels, "input"),
            output=llm.tokens.labels(*labels, "output"),
            cached=llm.tokens.labels(*labels, "cached"),
            cost=llm.cost.labels(*labels),
            ok=llm.calls.labels(*labels, "ok"),
            attempt_ok=llm.attempts.labels(provider, model, "ok"),
            ttft=llm.ttft.labels(name, version),
        )
        self._counts[labels] = counts
        return counts


@dataclass(frozen=True, slots=True)
class _OkCounts:
    """The metrics an answered call moves, for one version, model and key."""

    answered: Any
    latency: Any
    input: Any
    output: Any
    cached: Any
    cost: Any
    ok: Any
    attempt_ok: Any
    ttft: Any
