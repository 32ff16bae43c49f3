"""The recorder: audit records committed by group commit before responses go out.

Every request hands its records to :meth:`Recorder.record` and waits. One writer
task takes everything waiting (up to ``record_batch_size``) and appends it to the
audit log in one store transaction, in a thread of its own; while it commits, the
next group gathers. A caller is released only after its transaction committed, so
a response the client saw always has a durable record behind it.

When the store cannot be reached (:class:`StoreUnreachableError`), a group goes to
the local journal instead (:mod:`prodgate.pipeline.journal`, fsynced before the
callers are released), and so do the groups after it while a backlog waits, which
keeps the order. The recorder tries the store at most every ``retry_s`` seconds and,
once it answers, replays the backlog a transaction's worth at a time between new
groups, so a long outage does not hold up the requests that follow it. A statement
the store refuses (not an outage) is not journalled: its callers get the
:class:`StoreError` (503), as they do when the journal cannot be written either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.engine import Connection
from sqlalchemy.exc import InterfaceError, OperationalError

from prodgate.audit import log
from prodgate.audit.record import Record
from prodgate.exceptions import StoreError, StoreUnreachableError
from prodgate.monitor import tally as tally_module
from prodgate.monitor.tally import Tally
from prodgate.pipeline import review_entry as entry
from prodgate.pipeline.journal import DEAD_LETTER, Journal
from prodgate.pipeline.metrics import Metrics
from prodgate.store.engine import Store, now_us

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
        adopt_every_s: float = 30.0,
        tally: Tally | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.max_batch = max_batch
        self.journal = journal
        self.retry_s = retry_s
        self.adopt_every_s = adopt_every_s
        self._retry_at = 0.0  # monotonic time before which the store is not tried again
        self._warned_at = -WARN_EVERY_S
        self._queue: deque[tuple[Sequence[Record], asyncio.Future[None]]] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._task: asyncio.Task[None] | None = None
        #: The production windows counted from durable groups (None: monitoring off).
        self.tally = tally
        self._adopted_at = time.monotonic()
        self._flush_warned_at = -WARN_EVERY_S

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
        # A caller that stops waiting (cancelled) does not withdraw its records: they
        # are committed with their group, and the writer skips settling a done future.
        await fut

    # -- in the writer thread ---------------------------------------------------------

    def _persist(self, records: list[Record]) -> tuple[str, float]:
        """Commit *records*, or journal them while the store is away or a backlog waits
        (so that order is kept). Replays a slice of the backlog first when it is time.
        Returns where *records* went and the seconds it took."""
        started = time.perf_counter()
        journal = self.journal
        if journal is not None and journal.pending:
            if time.monotonic() >= self._retry_at:
                try:
                    self._replay(journal)
                except Exception as exc:  # unreachable again, or the journal unreadable
                    self._away(exc, journal, len(records))
            if journal.pending:
                journal.append(records)
                self._observe(records)
                return JOURNAL, time.perf_counter() - started
        tally = self.tally
        flush = tally.pending(now_us()) if tally is not None and tally.due() else None
        flushed = False
        try:
            if records:
                with self.store.write() as conn:
                    log.append(self.store, conn, records)
                    entry.enter(conn, records)
                    if flush:
                        flushed = self._write_windows(conn, flush)
        except StoreUnreachableError as exc:
            if tally is not None and flush:
                tally.failed()
            if journal is None:
                raise
            self._away(exc, journal, len(records))
            journal.append(records)
            self._observe(records)
            return JOURNAL, time.perf_counter() - started
        if flush is not None and tally is not None and records:
            if flushed:
                tally.written(flush)
            else:
                tally.failed()
        self._observe(records)
        return STORE, time.perf_counter() - started

    def _observe(self, records: list[Record]) -> None:
        """Count a durable group into the windows; counting never fails a group."""
        if self.tally is not None and records:
            try:
                self.tally.observe(records)
            except Exception:  # a bug here must not cost a record or an answer
                logger.exception("counting a group into the monitoring windows failed")

    def _write_windows(self, conn: Connection, flush: tally_module.Pending) -> bool:
        """The windows' rows in the group's transaction, behind a savepoint: a statement
        the store refuses costs the flush (logged), never the group's records."""
        try:
            with conn.begin_nested():
                tally_module.write(conn, flush)
        except StoreUnreachableError:
            raise
        except Exception as exc:
            lost = isinstance(exc, (OperationalError, InterfaceError)) or getattr(
                exc, "connection_invalidated", False
            )
            if lost:  # the store went away: the group's transaction fails with it
                raise
            logger.error("writing the monitoring windows failed: %s", exc)
            return False
        return True

    def _flush(self) -> None:
        """Write the windows' running totals in a transaction of their own (no group to
        ride on); while the store is away they stay in memory for the next try."""
        tally = self.tally
        if tally is None or not tally.dirty:
            return
        flush = tally.pending(now_us())
        try:
            with self.store.write() as conn:
                tally_module.write(conn, flush)
        except Exception as exc:
            now = time.monotonic()
            if now - self._flush_warned_at >= WARN_EVERY_S:
                self._flush_warned_at = now
                logger.warning("monitoring windows not written yet (kept in memory): %s", exc)
            tally.failed()
            return
        tally.written(flush)

    def _away(self, exc: Exception, journal: Journal, waiting: int) -> None:
        """The store cannot take records now: try again in ``retry_s``; say so at times."""
        now = time.monotonic()
        self._retry_at = now + self.retry_s
        if not journal.pending or now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            logger.warning(
                "the store is unreachable; %d audit records wait in %s: %s",
                journal.pending + waiting,
                journal.folder,
                exc,
            )

    def _replay(self, journal: Journal) -> None:
        """Replay one slice of the journal (a transaction's worth) into the audit log."""
        records, cursor = journal.take(self.max_batch)
        if not records:  # nothing readable is left (a torn last line at most)
            journal.clear()
            return
        try:
            with self.store.write() as conn:
                log.append_missing(self.store, conn, records)
                entry.enter(conn, records, replay=True)
        except StoreUnreachableError:
            raise
        except Exception as exc:  # the store (or its driver) refuses something: find it
            logger.error("replaying the journal: %s; retrying record by record", exc)
            for record in records:
                try:
                    with self.store.write() as conn:
                        log.append_missing(self.store, conn, [record])
                        entry.enter(conn, [record], replay=True)
                except StoreUnreachableError:
                    raise
                except Exception as refused:
                    journal.dead_letter(record)
                    logger.error(
                        "audit record %s refused by the store (%s); kept in %s",
                        record.id,
                        refused,
                        journal.folder / DEAD_LETTER,
                    )
        journal.done(len(records), cursor)
        if not journal.pending:
            logger.warning("the store is back: the journal is replayed")

    # -- on the event loop --------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.spooled:  # go on replaying, or retry the store, even without traffic
                due = max(0.0, self._retry_at - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), due)
            else:
                timeout = self.adopt_every_s if self.journal is not None else None
                flush_in = self.tally.due_in() if self.tally is not None else None
                if flush_in is not None:
                    timeout = flush_in if timeout is None else min(timeout, flush_in)
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                except TimeoutError:  # idle: flush the windows, adopt dead journals
                    if self.tally is not None and self.tally.due():
                        await loop.run_in_executor(self._executor, self._flush)
                    now = time.monotonic()
                    if self.journal is not None and now - self._adopted_at >= self.adopt_every_s:
                        self._adopted_at = now
                        await loop.run_in_executor(self._executor, self.journal.adopt)
                        self.metrics.journal_records.set(self.spooled)
                    continue
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
                    for fut in owners:
                        if not fut.done():
                            fut.set_result(None)
                self.metrics.journal_records.set(self.spooled)
            if self._closing and not self._queue:
                return

    async def close(self) -> None:
        """Commit what is queued, then stop (a journal still waiting is kept on disk)."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.tally is not None:  # the last counts, if the store takes them
            await asyncio.get_running_loop().run_in_executor(self._executor, self._flush)
        self._executor.shutdown(wait=True)
        if self.journal is not None:
            self.journal.close()
