"""The micro-batcher: concurrent requests share one model call.

Requests queue their rows; one task per model takes everything waiting, up to
``max_batch_size`` rows, waiting at most ``max_wait_ms`` for a batch to fill, and
runs the model once in a thread of its own so the event loop keeps serving. While
the model runs, the next batch gathers by itself, so under load batches grow
without any waiting. The queue is bounded: past ``max_queue`` rows a request is
shed at once with :class:`OverloadedError` (503 with Retry-After) rather than
waiting ever longer.

When a shared model call raises, the batcher cannot tell whose rows caused it, so
if the batch held more than one caller it bisects: each half of the callers is tried
in a call of its own and a failing half is halved again (in the same worker, one hop
off the event loop for all of it). Only the callers whose own rows fail get the
error, the others get their answers, and one bad row costs about 2 log2(n) extra
calls rather than one per caller, which matters for a model that is slow per call.
The extra calls are capped, so a model that fails on everything costs a few calls
more, not one per caller.

A service that reads feature views gives its batchers a *prepare* step: each batch
taken goes through it before the model call (one feature lookup for the whole batch,
:mod:`prodgate.pipeline.enrichment`), which gives each caller's rows back as the model
sees them, or the error that refuses that caller alone. Rows sent without a context
(a shadow's copies, already enriched) skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prodgate.exceptions import OverloadedError
from prodgate.runtime.base import Model, Prediction

Rows = Sequence[Mapping[str, Any]]
Waiter = tuple[Rows, asyncio.Future[list[Prediction]]]  # a caller's rows, its answer
#: Each caller's rows and its context in, its prepared rows (or its refusal) out.
Prepare = Callable[[Sequence[tuple[Rows, Any]]], Awaitable[list[Rows | Exception]]]


class Batcher:
    def __init__(
        self,
        model: Model,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        on_batch: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        name: str = "model",
        prepare: Prepare | None = None,
    ) -> None:
        self.model = model
        self._prepare = prepare
        self._contexts: dict[int, Any] = {}  # id of a waiter's future -> its context
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._on_depth = on_depth
        self._queue: deque[Waiter] = deque()
        self._pending = 0
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        # One thread per model: a model runs one batch at a time, off the event loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def pending_rows(self) -> int:
        return self._pending

    async def predict(self, rows: Rows, context: Any = None) -> list[Prediction]:
        """Predict *rows* in some shared batch; raises OverloadedError when full. With a
        *context* (the request's exchange), the batch's prepare step sees the rows first."""
        if self._closing:
            raise OverloadedError("this model version is being replaced; retry", retry_after=1)
        n = len(rows)
        if self._pending + n > self.max_queue:
            raise OverloadedError(
                f"the model's queue is full ({self._pending} rows waiting); retry shortly",
                retry_after=1,
            )
        fut: asyncio.Future[list[Prediction]] = asyncio.get_running_loop().create_future()
        if context is not None and self._prepare is not None:
            self._contexts[id(fut)] = context
        self._queue.append((rows, fut))
        self._pending += n
        self._wakeup.set()
        if self._pending >= self.max_batch_size:
            self._full.set()
        return await fut

    def _take(self) -> tuple[list[Mapping[str, Any]], list[Waiter]]:
        rows: list[Mapping[str, Any]] = []
        owners: list[Waiter] = []
        while self._queue:
            unit, fut = self._queue[0]
            if rows and len(rows) + len(unit) > self.max_batch_size:
                break
            self._queue.popleft()
            self._pending -= len(unit)
            if fut.cancelled():
                self._contexts.pop(id(fut), None)
                continue
            rows.extend(unit)
            owners.append((unit, fut))
        if self._pending < self.max_batch_size:
            self._full.clear()
        if not self._queue:
            self._wakeup.clear()
        return rows, owners

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            if self.max_wait > 0 and self._pending < self.max_batch_size and not self._closing:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.max_wait):
                        await self._full.wait()
            rows, owners = self._take()
            if self._on_depth:
                self._on_depth(self._pending)
            if self._contexts and owners:
                rows, owners = await self._prepared(owners)
            if not rows:
                if self._closing and not self._queue:
                    return
                continue
            try:
                predictions = await loop.run_in_executor(self._executor, self._call, rows)
            except Exception as exc:
                self._observe(len(rows))  # a failed call is a model call too
                if len(owners) == 1:
                    _settle(owners[0][1], exc)
                else:
                    await self._bisect(loop, owners, exc)
            else:
                self._observe(len(rows))
                start = 0
                for unit, fut in owners:
                    _settle(fut, predictions[start : start + len(unit)])
                    start += len(unit)
            if self._closing and not self._queue:
                return

    async def _prepared(self, owners: list[Waiter]) -> tuple[list[Mapping[str, Any]], list[Waiter]]:
        """The batch after its prepare step: each caller with a context gets its rows
        replaced by the prepared ones, or its refusal and leaves the batch."""
        assert self._prepare is not None
        contexts = self._contexts
        asked = [
            (i, unit, contexts.pop(id(fut)))
            for i, (unit, fut) in enumerate(owners)
            if id(fut) in contexts
        ]
        if not asked:
            return [row for unit, _ in owners for row in unit], owners
        try:
            prepared = await self._prepare([(unit, ctx) for _, unit, ctx in asked])
        except Exception as exc:  # the step's own failure: every caller it was for gets it
            prepared = [exc] * len(asked)
        kept = list(owners)
        for (i, _, _), result in zip(asked, prepared, strict=True):
            fut = owners[i][1]
            if isinstance(result, Exception):
                _settle(fut, result)
                kept[i] = ((), fut)  # answered: no rows in the model call
            else:
                kept[i] = (result, fut)
        kept = [(unit, fut) for unit, fut in kept if not fut.done()]  # refused, or gone
        return [row for unit, _ in kept for row in unit], kept

    def _call(self, rows: Rows) -> list[Prediction]:
        predictions = self.model.predict(rows)
        if len(predictions) != len(rows):
            raise RuntimeError(
                f"the model returned {len(predictions)} predictions for {len(rows)} rows"
            )
        return predictions

    def _find_failing(
        self, units: list[Rows], error: Exception
    ) -> list[list[Prediction] | Exception]:
        """Each unit's answer, after their shared call failed with *error*.

        Halves are tried in calls of their own and a failing half is halved again.
        One bad unit costs 2 log2(n) calls; the calls are capped (a model that fails
        on everything would otherwise take 2n - 1), and units left when the cap is
        reached get the last error.
        """
        budget = 2 * len(units).bit_length() + 2
        last = error

        def together(group: list[Rows]) -> list[list[Prediction] | Exception]:
            nonlocal budget, last
            if budget <= 0:
                return [last] * len(group)
            budget -= 1
            rows = [row for unit in group for row in unit]
            try:
                predictions = self._call(rows)
            except Exception as exc:
                self._observe(len(rows))  # a failed call is a model call too
                last = exc
                return [exc] if len(group) == 1 else halves(group)
            self._observe(len(rows))
            out: list[list[Prediction] | Exception] = []
            start = 0
            for unit in group:
                out.append(predictions[start : start + len(unit)])
                start += len(unit)
            return out

        def halves(group: list[Rows]) -> list[list[Prediction] | Exception]:
            mid = len(group) // 2
            if mid == 0:
                return together(group)
            return together(group[:mid]) + together(group[mid:])

        return halves(units)

    async def _bisect(
        self, loop: asyncio.AbstractEventLoop, owners: list[Waiter], error: Exception
    ) -> None:
        """After a shared call failed, find whose rows fail it: one hop to the worker."""
        waiting = [(unit, fut) for unit, fut in owners if not fut.done()]
        if not waiting:
            return
        results = await loop.run_in_executor(
            self._executor, self._find_failing, [unit for unit, _ in waiting], error
        )
        for (_, fut), result in zip(waiting, results, strict=True):
            _settle(fut, result)

    def _observe(self, rows: int) -> None:
        if self._on_batch:
            self._on_batch(rows)

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        self._full.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False)


def _settle(fut: asyncio.Future[list[Prediction]], result: list[Prediction] | Exception) -> None:
    """Answer a waiting caller, unless it stopped waiting."""
    if fut.done():
        return
    if isinstance(result, Exception):
        fut.set_exception(result)
    else:
        fut.set_result(result)
