"""The recorder: audit records committed by group commit before responses go out.

Every request hands its records to :meth:`Recorder.record` and waits. One writer
task takes everything waiting (up to ``record_batch_size``) and appends it to the
audit log in one store transaction, in a thread of its own; while it commits, the
next group gathers. A caller is released only after its transaction committed, so
a response the client saw always has a durable record behind it.

When the store cannot be reached, a group goes to the local journal instead
(:mod:`prodgate.pipeline.journal`, fsynced before the callers are released), and
so do the groups after it until the store answers again: the recorder tries the
store at most every ``retry_s`` seconds, replays the journal into the audit log in
order, and only then writes new groups to the store. Only when the journal cannot
be written either does a caller get the :class:`StoreError` (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from prodgate.audit import log
from prodgate.audit.record import Record
from prodgate.exceptions import StoreError
from prodgate.pipeline.journal import Journal
from prodgate.pipeline.metrics import Metrics
from prodgate.store.engine import Store

logger = logging.getLogger("prodgate.recorder")

STORE, JOURNAL = "store", "journal"  # where a group went
WARN_EVERY_S = 60.0  # how often an outage that goes on is logged again


class Recorder:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        max_batch: int = 1024,
        journal: Journal | None = None,
        retry_s: float = 1.0,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.max_batch = max_batch
        self.journal = journal
        self.retry_s = retry_s
        self._retry_at = 0.0  # monotonic time before which the store is not tried again
        self._warned_at = -WARN_EVERY_S
        self._queue: deque[tuple[Sequence[Record], asyncio.Future[None]]] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.journal is not None:
            self.journal.open()  # adopts journals left by a process that died
            self.metrics.journal_records.set(self.journal.pending)
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def spooled(self) -> int:
        """Records in the local journal, waiting for the store."""
        return self.journal.pending if self.journal is not None else 0

    async def record(self, records: Sequence[Record]) -> None:
        """Return once *records* are durable; raise StoreError if they could not be."""
        if self._closing:
            raise StoreError("the recorder is shutting down")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((records, fut))
        self._wakeup.set()
        await asyncio.shield(fut)

    # -- in the writer thread ---------------------------------------------------------

    def _persist(self, records: list[Record]) -> tuple[str, float]:
        """Replay the journal if it is time, then commit *records*; on a store outage,
        journal them. Returns where they went and the seconds it took."""
        started = time.perf_counter()
        journal = self.journal
        if journal is not None and journal.pending and time.monotonic() < self._retry_at:
            journal.append(records)  # keep the order: the store has not been back yet
            return JOURNAL, time.perf_counter() - started
        try:
            if journal is not None and journal.pending:
                self._replay(journal)
            if records:
                with self.store.write() as conn:
                    log.append(self.store, conn, records)
        except StoreError as exc:
            if journal is None:
                raise
            now = time.monotonic()
            if not journal.pending or now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                logger.warning(
                    "the store is unreachable; %d audit records wait in %s: %s",
                    journal.pending + len(records),
                    journal.folder,
                    exc,
                )
            self._retry_at = now + self.retry_s
            journal.append(records)
            return JOURNAL, time.perf_counter() - started
        return STORE, time.perf_counter() - started

    def _replay(self, journal: Journal) -> None:
        chunk: list[Record] = []
        replayed = 0
        for record in journal.records():
            chunk.append(record)
            if len(chunk) >= self.max_batch:
                replayed += self._replay_chunk(chunk)
                chunk = []
        if chunk:
            replayed += self._replay_chunk(chunk)
        logger.warning("the store is back: %d journalled records replayed", replayed)
        journal.clear()

    def _replay_chunk(self, chunk: list[Record]) -> int:
        with self.store.write() as conn:
            return log.append_missing(self.store, conn, chunk)

    # -- on the event loop --------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.spooled:  # wake up to retry the store even without traffic
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.retry_s)
            else:
                await self._wakeup.wait()
            batch: list[Record] = []
            owners: list[asyncio.Future[None]] = []
            while self._queue and (
                not batch or len(batch) + len(self._queue[0][0]) <= self.max_batch
            ):
                records, fut = self._queue.popleft()
                batch.extend(records)
                owners.append(fut)
            if not self._queue:
                self._wakeup.clear()
            if batch or (self.spooled and time.monotonic() >= self._retry_at):
                try:
                    where, seconds = await loop.run_in_executor(
                        self._executor, self._persist, batch
                    )
                except Exception as exc:
                    err = (
                        exc
                        if isinstance(exc, StoreError)
                        else StoreError(f"audit write failed: {exc}")
                    )
                    for fut in owners:
                        if not fut.done():
                            fut.set_exception(err)
                else:
                    if where == STORE and batch:
                        self.metrics.audit_commit.observe(len(batch))
                        self.metrics.audit_commit_seconds.observe(seconds)
                    elif where == JOURNAL:
                        self.metrics.audit_spooled.inc(len(batch))
                    self.metrics.journal_records.set(self.spooled)
                    for fut in owners:
                        if not fut.done():
                            fut.set_result(None)
            if self._closing and not self._queue:
                return

    async def close(self) -> None:
        """Commit what is queued, then stop (a journal still waiting is kept on disk)."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)
        if self.journal is not None:
            self.journal.close()
