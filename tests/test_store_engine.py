"""The store on both engines: what a failed write tells its callers."""

from __future__ import annotations

import pytest

from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.exceptions import StoreError
from prodgate.store.engine import Store, now_us

SECRET = "sk-live-0123456789abcdef"


def _record(record_id: str | None = None, secret: str = "") -> Record:
    extra = {"id": record_id} if record_id else {}
    return Record(
        kind=KIND_INFERENCE,
        action="predict",
        ts_us=now_us(),
        payload={"input": {"api_key": secret, "x": 1}},
        service="svc",
        **extra,
    )


def test_a_failed_write_says_one_line_without_sql_or_inputs(store: Store) -> None:
    first = _record()
    with store.write() as conn:
        log.append(store, conn, [first])
    # A group commit in which another caller's input (holding a secret) sits next to a
    # record whose id is already taken: the unique constraint fails the whole statement.
    with pytest.raises(StoreError) as info, store.write() as conn:
        log.append(store, conn, [_record(secret=SECRET), _record(first.id)])
    text = str(info.value)
    assert "\n" not in text
    assert "[SQL" not in text
    assert "[parameters" not in text
    assert "Background on this error" not in text
    assert SECRET not in text
    assert "unique" in text.lower()
    # The chained SQLAlchemy error (what a logged traceback shows) hides parameters too.
    assert SECRET not in str(info.value.__cause__)
