"""Choosing the version that answers a request: the traffic split and sticky routing.

A request with a routing key (a customer id, a claim number) is routed
deterministically: the key is hashed together with the service and the canary
version to a number ``u`` uniform in [0, 1), and goes to the canary when
``u < weight``. So one key always meets the same version while the split stands,
and raising the weight only moves keys *toward* the canary (a key on the canary at
25% is still on it at 50%), which is what keeps a customer's experience stable
through a rollout. The canary version is part of the hash so that each new canary
samples a fresh set of keys rather than always the same unlucky customers.

A request without a key is routed at random with the canary's probability.

This runs on the request path: one blake2b of a short string and a comparison,
about a microsecond; no allocation beyond the key's bytes.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

_SCALE = 1.0 / float(1 << 64)


@dataclass(frozen=True, slots=True)
class Split:
    """A service's traffic split as a gateway holds it in memory.

    ``production`` answers every request the canary does not take; ``canary`` takes
    ``canary_weight`` (0..1) of them; ``shadow`` sees copies and answers nobody.
    """

    production: int | None
    canary: int | None = None
    canary_weight: float = 0.0
    shadow: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.canary_weight <= 1.0:
            raise ValueError(f"canary_weight must be within 0..1, not {self.canary_weight}")


def bucket(service: str, canary: int | None, key: str) -> float:
    """The key's position in [0, 1) for this service and canary (uniform, stable)."""
    digest = hashlib.blake2b(f"{service}:{canary}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") * _SCALE


class Router:
    """Picks the version for each request from a :class:`Split`.

    *rng* serves requests without a routing key; pass a seeded ``random.Random`` in
    tests. ``Random.random`` is one C call under the GIL, so sharing it between
    threads is safe.
    """

    __slots__ = ("_random",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = (rng or random.Random()).random

    def choose(self, service: str, split: Split, key: str | None = None) -> int | None:
        """The version that answers: the canary or production (None if neither)."""
        canary, weight = split.canary, split.canary_weight
        if canary is None or weight <= 0.0:
            return split.production
        if weight >= 1.0:
            return canary
        # Production may be None (not loaded): its share then fails visibly with 503
        # rather than silently moving all traffic onto an unproven canary.
        u = bucket(service, canary, key) if key is not None else self._random()
        return canary if u < weight else split.production
