"""Configurations of one server measured in alternating rounds.

On a shared machine the speed of the CPU drifts, so an A-against-B benchmark loads its
servers in short rounds, alternating the order (A, B; then B, A; ...), so both meet the
same drifts, and the spread of the per-round ratios says how far one comparison can be
trusted. Used by the on-against-off benchmarks (monitoring, review).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .gateway import PREDICT_PATH
from .procs import Server, scrape
from .wrk import Load, WrkResult


def order(configs: Sequence[str], rounds: int) -> list[str]:
    """*configs* in order, then reversed, and so on, for *rounds* rounds."""
    out: list[str] = []
    for r in range(rounds):
        out += list(configs if r % 2 == 0 else reversed(configs))
    return out


@dataclass
class Rounds:
    """What the rounds measured, per configuration."""

    runs: dict[str, list[WrkResult]]
    warm: dict[str, WrkResult]
    before: dict[str, dict[str, float]]  # each server's /metrics before the rounds
    after: dict[str, dict[str, float]]  # and after


def alternate(
    load: Load, servers: Mapping[str, Server], rounds: int, duration: float, warmup: float
) -> Rounds:
    """Warm each server up, then load them in :func:`order` for *rounds* rounds of
    *duration* seconds, scraping their metrics before and after."""
    configs = list(servers)
    warm = {c: load.run(s.base + PREDICT_PATH, warmup, s.pid) for c, s in servers.items()}
    before = {c: scrape(s.base) for c, s in servers.items()}
    runs: dict[str, list[WrkResult]] = {c: [] for c in configs}
    for n, config in enumerate(order(configs, rounds)):
        if n % len(configs) == 0:
            print(f"round {n // len(configs) + 1} of {rounds} ...", flush=True)
        server = servers[config]
        runs[config].append(load.run(server.base + PREDICT_PATH, duration, server.pid))
    after = {c: scrape(s.base) for c, s in servers.items()}
    return Rounds(runs, warm, before, after)
