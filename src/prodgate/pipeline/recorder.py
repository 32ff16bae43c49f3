"""The recorder: audit records committed by group commit before responses go out.

Every request hands its records to :meth:`Recorder.record` and waits. One writer
task takes everything waiting (up to ``record_batch_size``) and appends it to the
audit log in one store transaction, in a thread of its own; while it commits, the
next group gathers. A caller is released only after its transaction committed, so
a response the client saw always has a durable record behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from prodgate.audit import log
from prodgate.audit.record import Record
from prodgate.exceptions import StoreError
from prodgate.pipeline.metrics import Metrics
from prodgate.store.engine import Store


class Recorder:
    def __init__(self, store: Store, metrics: Metrics, max_batch: int = 1024) -> None:
        self.store = store
        self.metrics = metrics
        self.max_batch = max_batch
        self._queue: deque[tuple[Sequence[Record], asyncio.Future[None]]] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def record(self, records: Sequence[Record]) -> None:
        """Return once *records* are committed; raise StoreError if they could not be."""
        if self._closing:
            raise StoreError("the recorder is shutting down")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((records, fut))
        self._wakeup.set()
        await asyncio.shield(fut)

    def _write(self, records: list[Record]) -> float:
        started = time.perf_counter()
        with self.store.write() as conn:
            log.append(self.store, conn, records)
        return time.perf_counter() - started

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
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
            if batch:
                try:
                    seconds = await loop.run_in_executor(self._executor, self._write, batch)
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
                    self.metrics.audit_commit.observe(len(batch))
                    self.metrics.audit_commit_seconds.observe(seconds)
                    for fut in owners:
                        if not fut.done():
                            fut.set_result(None)
            if self._closing and not self._queue:
                return

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)
