"""The batcher's prepare step: one call per batch, a caller refused alone, shadows'
rows (no context) untouched."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from prodgate.exceptions import FeatureUnavailableError, Violation
from prodgate.pipeline.batcher import Batcher
from prodgate.runtime.base import Prediction

pytestmark = pytest.mark.anyio


class Echo:
    """Answers each row's ``x`` back; keeps every batch it was given."""

    flavor = "callable"
    labels = None

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[Prediction]:
        self.batches.append([dict(r) for r in rows])
        return [Prediction(value=row["x"]) for row in rows]


def batcher(model: Echo, prepare: Any) -> Batcher:
    # A wait long enough that the callers below share one batch.
    return Batcher(model, max_batch_size=64, max_wait_ms=50, max_queue=1000, prepare=prepare)


async def test_one_prepare_per_batch_and_a_caller_refused_alone() -> None:
    calls: list[list[Any]] = []

    async def prepare(units: Sequence[tuple[Any, Any]]) -> list[Any]:
        calls.append([ctx for _, ctx in units])
        out: list[Any] = []
        for rows, ctx in units:
            if ctx == "bad":
                out.append(FeatureUnavailableError([Violation("/inputs/k", "no such key")]))
            else:
                out.append([{**row, "x": row["x"] * 10} for row in rows])
        return out

    model = Echo()
    b = batcher(model, prepare)
    b.start()
    try:
        results = await asyncio.gather(
            b.predict([{"x": 1}], "a"),
            b.predict([{"x": 2}, {"x": 3}], "b"),
            b.predict([{"x": 4}], "bad"),
            b.predict([{"x": 5}]),  # a shadow's copy: already prepared, no context
            return_exceptions=True,
        )
    finally:
        await b.close()
    assert calls == [["a", "b", "bad"]]  # one prepare for the batch, context callers only
    assert [p.value for p in results[0]] == [10]
    assert [p.value for p in results[1]] == [20, 30]
    assert isinstance(results[2], FeatureUnavailableError)
    assert [p.value for p in results[3]] == [5]
    assert model.batches == [[{"x": 10}, {"x": 20}, {"x": 30}, {"x": 5}]]  # never row 4
    assert not b._contexts


async def test_a_failing_prepare_refuses_its_callers_only() -> None:
    async def prepare(units: Sequence[tuple[Any, Any]]) -> list[Any]:
        raise RuntimeError("the store went away")

    model = Echo()
    b = batcher(model, prepare)
    b.start()
    try:
        first, shadow = await asyncio.gather(
            b.predict([{"x": 1}], "a"), b.predict([{"x": 2}]), return_exceptions=True
        )
    finally:
        await b.close()
    assert isinstance(first, RuntimeError)
    assert [p.value for p in shadow] == [2]


async def test_a_caller_that_gave_up_leaves_no_context_behind() -> None:
    async def prepare(units: Sequence[tuple[Any, Any]]) -> list[Any]:
        return [rows for rows, _ in units]

    model = Echo()
    b = batcher(model, prepare)
    b.start()
    try:
        gone = asyncio.ensure_future(b.predict([{"x": 1}], "a"))
        await asyncio.sleep(0)
        gone.cancel()
        kept = await b.predict([{"x": 2}], "b")
    finally:
        await b.close()
    assert [p.value for p in kept] == [2]
    assert not b._contexts
