"""Shadow copies: a request's rows also run on the shadow version, answering nobody.

The copy runs after the caller's own answer is computed and never delays or fails
it; its decisions are recorded (action ``shadow``) so the shadow version can be
judged on production traffic before it takes any.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from prodgate.exceptions import ProdgateError
from prodgate.pipeline.decision import REJECTED
from prodgate.pipeline.fleet import Live
from prodgate.pipeline.recorder import Recorder
from prodgate.pipeline.records import decided, inference_record
from prodgate.store.engine import now_us


class Shadows:
    """Runs shadow copies in the background and waits for them on close."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._tasks: set[asyncio.Task[None]] = set()

    def copy(
        self,
        live: Live,
        rows: Sequence[Mapping[str, Any]],
        started: float,
        recorded: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Start running *rows* on the shadow version *live*; return at once. *recorded*:
        the rows as records keep them, when the input guard masked them."""
        task = asyncio.get_running_loop().create_task(
            self._run(live, rows, started, rows if recorded is None else recorded)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        live: Live,
        rows: Sequence[Mapping[str, Any]],
        started: float,
        recorded: Sequence[Mapping[str, Any]],
    ) -> None:
        service, number = live.spec, live.version.number
        try:
            assert live.batcher is not None  # a model version
            predictions = await live.batcher.predict(rows)
        except Exception as exc:  # a shadow's failure must never touch the caller
            records = [
                inference_record(
                    action="shadow",
                    service=service.name,
                    version=number,
                    status=500,
                    decision=REJECTED,
                    payload={"input": recorded, "error": f"{type(exc).__name__}: {exc}"},
                    ts_us=now_us(),
                    latency_ms=round((time.perf_counter() - started) * 1000.0, 3),
                )
            ]
        else:
            latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
            records = decided(
                "shadow",
                service.name,
                number,
                recorded,
                predictions,
                service.escalation_below,
                now_us(),
                latency_ms,
            )
        with contextlib.suppress(ProdgateError):
            await self.recorder.record(records)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
