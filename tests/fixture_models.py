"""Python-callable models for gateway tests (importable as ``fixture_models:NAME``)."""

from __future__ import annotations

import threading
import time
from typing import Any

CALLS: list[int] = []  # batch sizes seen by ``claims``
_lock = threading.Lock()


def claims(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """P(adjuster) grows with the amount: 0.5 at 5,000, sure at 10,000 and above."""
    with _lock:
        CALLS.append(len(rows))
    out = []
    for row in rows:
        p = min(0.99, max(0.01, float(row["amount"]) / 10_000))
        out.append({"routine": 1 - p, "adjuster": p})
    return out


NOTES: list[Any] = []  # the notes ``noting`` was given, as the model saw them


def noting(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """``claims``, keeping the free-text notes it saw (what the input guard let in)."""
    with _lock:
        NOTES.extend(row.get("note") for row in rows)
    return claims(rows)


def echo_note(rows: list[dict[str, Any]]) -> list[str]:
    """Answers each row's note back as its label (a model that answers in text)."""
    return [str(row.get("note") or "nothing to say") for row in rows]


def claims_v2(rows: list[dict[str, Any]]) -> list[str]:
    """A second version: always 'adjuster', no probabilities."""
    return ["adjuster" for _ in rows]


def flaky(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    if any(row["amount"] == 13 for row in rows):
        raise ValueError("unlucky amount")
    return claims(rows)


def slow(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    time.sleep(0.2)
    return claims(rows)


SEEN: list[dict[str, Any]] = []  # the rows ``by_policy`` was given, as the model saw them


def by_policy(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """``claims``, made surer by the policy's prior claims (a feature from a view)."""
    with _lock:
        SEEN.extend(dict(row) for row in rows)
    out = []
    for row in rows:
        p = float(row["amount"]) / 10_000 + 0.1 * float(row.get("prior_claims") or 0)
        p = min(0.99, max(0.01, p))
        out.append({"routine": 1 - p, "adjuster": p})
    return out
