"""What a benchmark prints: servers measured, checks against targets, the machine.

A :class:`Report` is rows of servers (req/s, latency percentiles, requests, non-2xx,
CPU) and rows of checks (a figure, its target, PASS or FAIL), rendered as text for
the terminal and as a Markdown section for ``docs/benchmarks.md``. The figures only
mean something next to the machine that produced them and the load it was under,
so the Markdown section carries both, and the command that reproduces it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import math
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .procs import NOISE_LIMIT, usable_cpus
from .wrk import WrkResult, wrk_version

SERVER_HEADERS = [
    "server",
    "req/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "requests",
    "non-2xx",
    "server CPU",
    "other CPU",
]
CHECK_HEADERS = ["check", "figure", "target", "result"]
CPU_NOTE = (
    '"server CPU" is the server process\'s CPU time over the run, as a share of one CPU; '
    '"other CPU" is what the rest of the machine (neither the server nor wrk) used meanwhile.'
)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.inf


@dataclass(frozen=True)
class Check:
    """One line of the verdict: what is checked, the figure, the target, and whether it holds."""

    name: str
    figure: str
    target: str
    ok: bool

    @classmethod
    def at_least(cls, name: str, value: float, target: float) -> Check:
        """A ratio that must be at least *target*."""
        return cls(name, f"{value:.2f}x", f">= {target:g}x", value >= target)

    @classmethod
    def at_most(cls, name: str, value: float, target: float) -> Check:
        """A ratio that must be at most *target*."""
        return cls(name, f"{value:.2f}x", f"<= {target:g}x", value <= target)


@dataclass
class Report:
    servers: list[tuple[str, WrkResult]]
    checks: list[Check]
    load: str  # how the load was made, one sentence
    command: str
    machine: dict[str, str]
    notes: list[str] = field(default_factory=list)  # a few lines after the checks

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def noise_warning(self) -> str:
        worst = max((r.other_cpu for _, r in self.servers), default=0.0)
        if not worst > NOISE_LIMIT:
            return ""
        return (
            f"WARNING: other processes used up to {worst:.0%} of a CPU during the runs "
            "(column 'other CPU'); the figures are disturbed. Rerun on a quiet machine."
        )

    def server_rows(self) -> list[list[str]]:
        return [server_row(name, r) for name, r in self.servers]

    def check_rows(self) -> list[list[str]]:
        return [[c.name, c.figure, c.target, verdict(c.ok)] for c in self.checks]

    def text(self) -> str:
        lines = [
            *aligned([SERVER_HEADERS, *self.server_rows()]),
            "",
            *aligned([CHECK_HEADERS, *self.check_rows()]),
        ]
        if self.notes:
            lines += ["", *self.notes]
        lines += ["", f"overall: {verdict(self.passed)}"]
        if self.noise_warning:
            lines += ["", self.noise_warning]
        return "\n".join(lines)

    def markdown(self) -> str:
        today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            f"## Results, {today}",
            "",
            *markdown_table(SERVER_HEADERS, self.server_rows()),
            "",
            *markdown_table(CHECK_HEADERS, self.check_rows(), numeric=(1, 2)),
            "",
            " ".join([*self.notes, CPU_NOTE]),
            "",
            *([f"**{self.noise_warning}**", ""] if self.noise_warning else []),
            *_provenance(self.load, self.command, self.machine),
        ]
        return "\n".join(lines)


@dataclass
class Table:
    """A table of a benchmark's own figures, with a title and a few lines after it."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def text(self) -> list[str]:
        lines = [self.title, "", *aligned([self.headers, *self.rows])]
        return lines + (["", *self.notes] if self.notes else [])

    def markdown(self) -> list[str]:
        lines = [f"**{self.title}**", "", *markdown_table(self.headers, self.rows)]
        return lines + (["", " ".join(self.notes)] if self.notes else [])


@dataclass
class TablesReport:
    """A report for a scenario that is not one wrk run per server: tables of figures
    the benchmark measured itself, then checks, load, command and machine, as
    :class:`Report` has them."""

    title: str
    tables: list[Table]
    checks: list[Check]
    load: str
    command: str
    machine: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    def check_rows(self) -> list[list[str]]:
        return [[c.name, c.figure, c.target, verdict(c.ok)] for c in self.checks]

    def text(self) -> str:
        lines: list[str] = []
        for table in self.tables:
            lines += [*table.text(), ""]
        lines += aligned([CHECK_HEADERS, *self.check_rows()])
        if self.notes:
            lines += ["", *self.notes]
        lines += ["", f"overall: {verdict(self.passed)}"]
        return "\n".join(lines)

    def markdown(self) -> str:
        today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines = [f"### {self.title}, {today}", ""]
        for table in self.tables:
            lines += [*table.markdown(), ""]
        lines += [*markdown_table(CHECK_HEADERS, self.check_rows(), numeric=(1, 2)), ""]
        if self.notes:
            lines += [" ".join(self.notes), ""]
        lines += _provenance(self.load, self.command, self.machine)
        return "\n".join(lines)


def server_row(name: str, r: WrkResult) -> list[str]:
    lat = r.latency_ms
    return [
        name,
        f"{r.rps:,.0f}",
        f"{lat['50']:.1f}",
        f"{lat['90']:.1f}",
        f"{lat['99']:.1f}",
        f"{r.requests:,}",
        r.describe_errors(),
        f"{r.server_cpu:.0%}",
        f"{r.other_cpu:.0%}",
    ]


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """*rows* (the first one the headers) as columns padded to the same width."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def markdown_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Iterable[int] | None = None
) -> list[str]:
    """A Markdown table; *numeric* columns (all but the first by default) right-aligned."""
    right = set(range(1, len(headers)) if numeric is None else numeric)
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    return [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


# -- the machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def prodgate_source() -> str:
    """Where the prodgate under test is imported from, and its git revision there."""
    import prodgate

    package = Path(prodgate.__file__).resolve().parent
    where = str(package)
    try:
        root = _git("-C", str(package), "rev-parse", "--show-toplevel")
        head = _git("-C", root, "rev-parse", "--short", "HEAD")
        # Changed or new files in the package itself count; the rest of the tree does not.
        dirty = _git("-C", root, "status", "--porcelain", "--", str(package))
    except (OSError, subprocess.CalledProcessError):
        return f"{where} (not a git checkout)"
    with contextlib.suppress(ValueError):  # name it within the checkout, not the machine
        where = str(package.relative_to(root))
    return f"{where}, git {head}" + (" with uncommitted changes" if dirty else "")


def machine(wrk: str | None, libraries: Sequence[str]) -> dict[str, str]:
    """The machine, the versions of *libraries* and of wrk (if one was used), and the
    prodgate under test."""
    out = {
        "CPUs": f"{os.cpu_count()} (nproc {len(usable_cpus())})",
        "CPU model": _cpu_model(),
        "RAM": _ram(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "libraries": ", ".join(f"{d} {_version(d)}" for d in libraries),
    }
    if wrk is not None:
        out["wrk"] = wrk_version(wrk)
    out["prodgate source"] = prodgate_source()
    return out


def _provenance(load: str, command: str, machine: Mapping[str, str]) -> list[str]:
    """The closing lines of a report: the load, the command and the machine."""
    return [
        f"Load: {load}.",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
        "Machine:",
        "",
        *(f"- {k}: {v}" for k, v in machine.items()),
        "",
    ]
