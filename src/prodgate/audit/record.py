"""One audit record, its canonical form and its hashes.

A record's *leaf hash* is ``sha256(0x00 || canonical JSON)`` (the RFC 6962 leaf
prefix, so a Merkle tree over leaves can be built later); its *chain hash* is
``sha256(previous chain hash || leaf hash)``, starting from 64 zeros. The canonical
JSON holds every column but the two hashes, with sorted keys and no spaces, and the
payload as the exact text stored, so verification needs no re-serialisation.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import orjson

GENESIS = "0" * 64

KIND_INFERENCE = "inference"
KIND_ACTION = "action"
#: A reviewer's act on a review item (claim, decide, adjudicate, skip, refused).
KIND_REVIEW = "review"
#: The action a gateway records when an LLM model's circuit breaker changes state.
ACTION_BREAKER = "breaker"


def new_id() -> str:
    """A random (version 4) UUID as 32 hex digits, as ``uuid.uuid4().hex`` spells it.

    Built from ``os.urandom`` directly: ``uuid.uuid4()`` costs about 8 us in Python's
    UUID class, and every inference needs one.
    """
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    return b.hex()


def dumps(obj: Any) -> str:
    """Canonical JSON text: sorted keys, compact, numpy scalars allowed."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


@dataclass
class Record:
    """What the recorder stores; ``seq`` and the hashes are set when it is written."""

    kind: str
    action: str
    ts_us: int
    payload: dict[str, Any]
    service: str | None = None
    version: int | None = None
    actor: str | None = None
    status: int | None = None
    decision: str | None = None
    confidence: float | None = None
    latency_ms: float | None = None
    id: str = field(default_factory=new_id)

    def row(self, seq: int, payload_text: str | None = None) -> dict[str, Any]:
        """The record as a table row without hashes."""
        return {
            "seq": seq,
            "id": self.id,
            "ts_us": self.ts_us,
            "kind": self.kind,
            "service": self.service,
            "version": self.version,
            "action": self.action,
            "actor": self.actor,
            "status": self.status,
            "decision": self.decision,
            "confidence": self.confidence,
            "latency_ms": self.latency_ms,
            "payload": payload_text if payload_text is not None else dumps(self.payload),
        }


HASHED_COLUMNS = (
    "seq",
    "id",
    "ts_us",
    "kind",
    "service",
    "version",
    "action",
    "actor",
    "status",
    "decision",
    "confidence",
    "latency_ms",
    "payload",
)


def leaf_hash(row: dict[str, Any]) -> str:
    body = orjson.dumps({k: row[k] for k in HASHED_COLUMNS}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(b"\x00" + body).hexdigest()


def chain_hash(prev: str, leaf: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev) + bytes.fromhex(leaf)).hexdigest()


def seal(rows: list[dict[str, Any]], prev: str) -> str:
    """Set ``leaf_hash`` and ``chain_hash`` on *rows* (in order); return the new head.

    Each row holds exactly :data:`HASHED_COLUMNS` (as :meth:`Record.row` makes it), so
    its canonical JSON is the row itself; :func:`leaf_hash` picks the columns for rows
    read back with their hashes.
    """
    sha256, sort = hashlib.sha256, orjson.OPT_SORT_KEYS
    chain = bytes.fromhex(prev)
    for row in rows:
        leaf = sha256(b"\x00" + orjson.dumps(row, option=sort)).digest()
        chain = sha256(chain + leaf).digest()
        row["leaf_hash"] = leaf.hex()
        row["chain_hash"] = chain.hex()
    return chain.hex()
