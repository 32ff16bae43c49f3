"""The review queue on ``/metrics``: items by state, the oldest waiting item's age and
the overdue items of each service that declares review.

A custom collector: a scrape reads the queue from the store (one grouped query over
every reviewed service, on the items' (service, state) index) and keeps the answer
for :data:`TTL_S` seconds, so scrapes from several Prometheus servers, or a fast
scrape interval, cost one query per TTL. A store that cannot answer leaves the
series out of that scrape (Prometheus marks them stale) rather than failing it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from prodgate.review.stats import STATES, Queue, queues
from prodgate.spec import Spec
from prodgate.store.engine import Store
from prodgate.store.engine import now_us as wall_clock_us

logger = logging.getLogger("prodgate.review.metrics")

#: How long one reading of the queue serves scrapes, in seconds.
TTL_S = 5.0


class ReviewCollector(Collector):
    """``prodgate_review_items{service,state}``, ``prodgate_review_oldest_age_seconds``
    and ``prodgate_review_overdue_items`` (by service), read through *store* (a
    callable: the server opens its store when it starts, after the registry exists)."""

    def __init__(
        self,
        services: list[str],
        store: Callable[[], Store | None],
        *,
        ttl_s: float = TTL_S,
        clock: Callable[[], float] = time.monotonic,
        now_us: Callable[[], int] = wall_clock_us,
    ) -> None:
        self.services = services
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock
        self.now_us = now_us
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._queues: dict[str, Queue] = {}
        self.reads = 0  # store queries made (for tests and curiosity)

    def _current(self) -> dict[str, Queue] | None:
        with self._lock:
            now = self.clock()
            if self._read_at is not None and now - self._read_at < self.ttl_s:
                return self._queues
            store = self.store()
            if store is None:
                return None
            try:
                with store.read() as conn:
                    self._queues = queues(conn, self.services, self.now_us())
            except Exception:
                logger.exception("reading the review queues for /metrics failed")
                return None
            self.reads += 1
            self._read_at = now
            return self._queues

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families({}))  # no store query when registered

    def collect(self) -> Iterator[GaugeMetricFamily]:
        current = self._current()
        if current is None:
            return iter(())
        return iter(self._families(current))

    @staticmethod
    def _families(current: dict[str, Queue]) -> list[GaugeMetricFamily]:
        items = GaugeMetricFamily(
            "prodgate_review_items",
            "Review items by service and state (open, adjudication, decided).",
            labels=["service", "state"],
        )
        oldest = GaugeMetricFamily(
            "prodgate_review_oldest_age_seconds",
            "Age of the oldest review item waiting for a person (0 when none waits).",
            labels=["service"],
        )
        overdue = GaugeMetricFamily(
            "prodgate_review_overdue_items",
            "Review items waiting past their deadline.",
            labels=["service"],
        )
        for service, queue in sorted(current.items()):
            counts = {"open": queue.open, "adjudication": queue.adjudication}
            counts["decided"] = queue.decided
            for state in STATES:
                items.add_metric([service, state], counts[state])
            oldest.add_metric([service], queue.oldest_age_s or 0.0)
            overdue.add_metric([service], queue.overdue)
        return [items, oldest, overdue]


def register(
    registry: CollectorRegistry, spec: Spec, store: Callable[[], Store | None]
) -> ReviewCollector | None:
    """Put the review series in *registry* when a service of *spec* declares review."""
    services = sorted(s.name for s in spec.services.values() if s.review.on)
    if not services:
        return None
    collector = ReviewCollector(services, store)
    registry.register(collector)
    return collector
