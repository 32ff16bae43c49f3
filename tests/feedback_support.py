"""Ground truth written straight into the store, for tests that build their own records."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.engine import Connection

from prodgate.store.tables import feedback


def insert_truth(
    conn: Connection,
    inference_id: str,
    truth: Any,
    at_us: int,
    *,
    version: int | None = None,
    source: str = "test",
) -> None:
    """One feedback row for *inference_id* of the ``claims`` service, observed at *at_us*."""
    conn.execute(
        feedback.insert().values(
            inference_id=inference_id,
            service="claims",
            version=version,
            value=orjson.dumps(truth).decode(),
            source=source,
            observed_at_us=at_us,
            received_at_us=at_us,
        )
    )
