"""Walking the audit chain: each record must hash to itself and follow the one before."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from prodgate.audit.log import HEAD_KEY
from prodgate.audit.record import GENESIS, chain_hash, leaf_hash
from prodgate.store.engine import Store
from prodgate.store.tables import audit_log, state


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    head: str
    problem: str = ""
    seq: int | None = None
    id: str | None = None


def verify(store: Store, progress: Callable[[int], None] | None = None) -> Verdict:
    """Check the whole chain; stop at the first record that was changed, removed or moved.

    The head and the records are read in one snapshot, so records that writers append
    while the walk runs are neither seen nor mistaken for a truncated log.
    """
    with store.read(snapshot=True) as conn:
        recorded_head = conn.execute(
            sa.select(state.c.value).where(state.c.key == HEAD_KEY)
        ).scalar()
        result = conn.execution_options(yield_per=5000).execute(
            sa.select(audit_log).order_by(audit_log.c.seq)
        )
        try:
            return _walk(result, recorded_head, progress)
        finally:
            result.close()


def _walk(
    result: Iterable[Any], recorded_head: int | None, progress: Callable[[int], None] | None
) -> Verdict:
    expected_seq, prev, checked = 1, GENESIS, 0
    if True:
        for row in result:
            m = dict(row._mapping)
            seq, rid = int(m["seq"]), str(m["id"])
            if seq != expected_seq:
                missing = (
                    f"seq {expected_seq}"
                    if seq == expected_seq + 1
                    else f"seq {expected_seq}..{seq - 1}"
                )
                return Verdict(
                    False,
                    checked,
                    prev,
                    f"record {missing} was removed (the log jumps to seq {seq}, id {rid})",
                    expected_seq,
                    None,
                )
            if leaf_hash(m) != m["leaf_hash"]:
                return Verdict(
                    False,
                    checked,
                    prev,
                    f"record seq {seq} (id {rid}) was changed: its content does not match its hash",
                    seq,
                    rid,
                )
            if chain_hash(prev, m["leaf_hash"]) != m["chain_hash"]:
                return Verdict(
                    False,
                    checked,
                    prev,
                    f"record seq {seq} (id {rid}) does not follow seq {seq - 1}: records were "
                    "removed, inserted or reordered",
                    seq,
                    rid,
                )
            prev = m["chain_hash"]
            expected_seq += 1
            checked += 1
            if progress and checked % 10000 == 0:
                progress(checked)
    if recorded_head is not None and int(recorded_head) != checked:
        return Verdict(
            False,
            checked,
            prev,
            f"the log ends at seq {checked} but its head says seq {recorded_head}: "
            "records at the end were removed",
            checked + 1,
            None,
        )
    return Verdict(True, checked, prev)
