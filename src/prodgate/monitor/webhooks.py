"""Delivering events to webhooks (alert transitions; decided review items): a JSON
POST, retried with backoff.

:meth:`Webhooks.send` only puts the delivery on a bounded queue and returns: nothing
that calls it (the monitor's loop, let alone a request) waits for a receiver. A task
of its own takes deliveries off the queue and runs each in a task (at most
``concurrency`` at once), so one receiver that is down and being retried does not hold
up the others. A delivery is tried up to ``attempts`` times, waiting ``backoff_s``,
then twice that, and so on up to ``max_backoff_s``, between tries; any answer but a
2xx counts as a failure. Every outcome is counted
(``prodgate_alert_webhook_deliveries{outcome}``) and failures are logged with the
receiver's scheme and host only: webhook URLs often carry a token in their path.

Deliveries live in memory: those still queued or being retried when the server stops
(after a short grace period) are dropped, counted and logged; the transition itself
is in the audit log either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from prodgate.monitor.alerts import AlertMetrics

logger = logging.getLogger("prodgate.monitor.webhooks")

USER_AGENT = "prodgate-alerts"


def where(url: str) -> str:
    """*url* as logs may show it: scheme and host, without path, query or credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/..."


class Webhooks:
    """The sender: :meth:`start` it in the server's event loop, :meth:`send` from that
    loop, :meth:`stop` it on shutdown."""

    def __init__(
        self,
        metrics: AlertMetrics | None = None,
        *,
        attempts: int = 8,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        timeout_s: float = 10.0,
        queue_size: int = 1000,
        concurrency: int = 8,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.metrics = metrics
        self.user_agent = user_agent
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(queue_size)
        self._client: httpx.AsyncClient | None = None
        self._worker: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)

    def _count(self, outcome: str, n: int = 1) -> None:
        if self.metrics is not None and n:
            self.metrics.webhooks.labels(outcome).inc(n)

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self.timeout_s, headers={"user-agent": self.user_agent}, follow_redirects=False
        )
        self._worker = asyncio.get_running_loop().create_task(self._work())

    def send(self, payload: Mapping[str, Any], urls: tuple[str, ...]) -> None:
        """Queue *payload* for each of *urls*; never waits (a full queue drops it)."""
        body = orjson.dumps(payload)
        for url in urls:
            try:
                self._queue.put_nowait((url, body))
            except asyncio.QueueFull:
                self._count("dropped")
                logger.error("webhook %s: queue full, delivery dropped", where(url))

    async def _work(self) -> None:
        while True:
            url, body = await self._queue.get()
            await self._slots.acquire()
            task = asyncio.get_running_loop().create_task(self._deliver(url, body))
            self._running.add(task)
            task.add_done_callback(self._done)
            self._queue.task_done()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number *attempt* (0-based), with jitter."""
        base = min(self.max_backoff_s, self.backoff_s * 2.0**attempt)
        return float(base * random.uniform(0.9, 1.1))  # spreads retries of many replicas

    async def _deliver(self, url: str, body: bytes) -> None:
        assert self._client is not None
        why = ""
        for attempt in range(self.attempts):
            try:
                response = await self._client.post(
                    url, content=body, headers={"content-type": "application/json"}
                )
                if 200 <= response.status_code < 300:
                    self._count("ok")
                    return
                why = f"answered {response.status_code}"
            except httpx.HTTPError as exc:
                why = type(exc).__name__
            if attempt + 1 < self.attempts:
                self._count("retry")
                logger.info("webhook %s: %s; trying again", where(url), why)
                await asyncio.sleep(self.delay(attempt))
        self._count("failed")
        logger.error("webhook %s: %s after %d tries; not delivered", where(url), why, self.attempts)

    async def drain(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for every queued delivery to finish; whether
        they all did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self._queue.qsize() or self._running) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return not (self._queue.qsize() or self._running)

    async def stop(self, grace_s: float = 2.0) -> None:
        """Let deliveries under way finish for up to *grace_s*, then drop the rest."""
        await self.drain(grace_s)
        left = self._queue.qsize() + len(self._running)
        if left:
            self._count("dropped", left)
            logger.error("stopping with %d webhook deliveries undone", left)
        tasks = [t for t in (self._worker, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
