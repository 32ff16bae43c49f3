"""What every LLM route of one gateway shares: the providers' clients and the breakers.

One HTTP client (connection pool) per provider, and one circuit breaker per provider
and model, whichever services and versions call them: a provider that fails opens its
breaker for every route that uses it. Breaker changes move the
``prodgate_llm_breaker_state`` gauge, are logged, and are audit records (action
``breaker``, naming this gateway), so ``prodgate status`` can tell what the gateways
last saw of each provider without asking each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prodgate.audit.record import ACTION_BREAKER, KIND_ACTION, Record
from prodgate.llm.breaker import Breakers, BreakerState
from prodgate.llm.route import Route
from prodgate.llm.upstream import Upstreams
from prodgate.pipeline.metrics import Metrics
from prodgate.spec import Spec
from prodgate.spec.llm import LlmService, ModelRef
from prodgate.store.engine import now_us

logger = logging.getLogger("prodgate.llm")


class LlmRuntime:
    def __init__(self, spec: Spec, metrics: Metrics) -> None:
        self.metrics = metrics
        #: Set by the gateway once its recorder exists: how breaker changes are recorded.
        self.record: Callable[[list[Record]], Awaitable[None]] | None = None
        self.gateway = f"{socket.gethostname()}:{os.getpid()}"
        self._pending: set[asyncio.Task[None]] = set()
        self.upstreams = Upstreams.from_spec(spec.providers)
        self.breakers = Breakers(spec.providers, on_change=self._changed)
        for provider in spec.providers.values():
            for model in provider.models:
                metrics.llm.breaker.labels(provider.name, model).set(0)

    def route(self, targets: Sequence[ModelRef], llm: LlmService) -> Route:
        """The route of a prompt version: its models in order, the service's retries
        and timeouts, the shared clients and breakers."""
        return Route(targets, self.upstreams, self.breakers, llm.retry, llm.timeouts)

    def _changed(self, provider: str, model: str, state: BreakerState) -> None:
        self.metrics.llm.breaker.labels(provider, model).set(int(state.value))
        log = logger.warning if state is BreakerState.OPEN else logger.info
        log("circuit breaker of %s/%s is %s", provider, model, state.name.lower())
        if self.record is None:
            return
        record = Record(
            kind=KIND_ACTION,
            action=ACTION_BREAKER,
            ts_us=now_us(),
            payload={
                "provider": provider,
                "model": model,
                "state": state.name.lower(),
                "gateway": self.gateway,
            },
            actor="gateway",
        )
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to record with
            task = asyncio.get_running_loop().create_task(self._keep(record))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _keep(self, record: Record) -> None:
        assert self.record is not None
        try:
            await self.record([record])
        except Exception:  # the store is down: the log line and the gauge remain
            logger.warning("could not record the breaker change of %s", record.payload)

    def breaker_states(self) -> list[dict[str, Any]]:
        return self.breakers.snapshot()

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.upstreams.close()
