"""What every benchmark program shares on the command line and around its run.

The same options mean the same thing in every benchmark (``--duration``,
``--warmup``, ``--connections``, ``--threads``, ``--no-pin``, ``--markdown [FILE]``),
the same exit codes (2: wrk missing, 1: a target or check failed or the run was
aborted, 0: all passed), and the same warnings before a run that would be disturbed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence

from .procs import NOISE_LIMIT, machine_idle_check
from .report import Report, TablesReport
from .wrk import WRK_MISSING, find_wrk

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_NO_WRK = 2


def add_load_arguments(
    parser: argparse.ArgumentParser,
    duration: float = 20.0,
    warmup: float = 5.0,
    connections: int = 64,
    threads: int = 2,
) -> None:
    """The options of the load and of the report, with this benchmark's defaults."""
    p = parser
    p.add_argument(
        "--duration",
        type=float,
        default=duration,
        help=f"measured seconds per server [{duration:g}]",
    )
    p.add_argument(
        "--warmup", type=float, default=warmup, help=f"warm-up seconds per server [{warmup:g}]"
    )
    p.add_argument(
        "--connections", type=int, default=connections, help=f"wrk connections [{connections}]"
    )
    p.add_argument("--threads", type=int, default=threads, help=f"wrk threads [{threads}]")
    p.add_argument("--no-pin", action="store_true", help="do not pin wrk and the server to CPUs")
    p.add_argument(
        "--markdown",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="print a Markdown results section, or append it to FILE",
    )


def command_line(script: str, arguments: Sequence[str]) -> str:
    """How to rerun this benchmark, from the repository root."""
    return shlex.join([".venv/bin/python", script, *arguments])


def require_wrk() -> str | None:
    """wrk's path, or None after saying how to install it."""
    wrk = find_wrk()
    if wrk is None:
        print(WRK_MISSING, file=sys.stderr)
    return wrk


def warn_if_disturbed() -> None:
    """Say so before the run if the machine is busy or PRODGATE_* settings are ignored."""
    idle = machine_idle_check()
    if idle > NOISE_LIMIT:
        print(
            f"warning: the machine is busy before the benchmark starts ({idle:.0%} of a CPU); "
            "the figures will be disturbed",
            flush=True,
        )
    dropped = sorted(k for k in os.environ if k.startswith("PRODGATE_"))
    if dropped:
        print(f"note: ignoring {', '.join(dropped)}: prodgate runs on its defaults here")


def emit(report: Report | TablesReport, markdown: str | None) -> int:
    """Print *report*; with *markdown* print its Markdown section ("-") or append it to
    that file. The exit code of the benchmark: 0 if every check passed, else 1."""
    print()
    print(report.text())
    if markdown:
        section = report.markdown()
        if markdown == "-":
            print("\n" + section)
        else:
            with open(markdown, "a", encoding="utf-8") as fh:
                fh.write("\n" + section)
            print(f"\nappended the results to {markdown}")
    return EXIT_PASSED if report.passed else EXIT_FAILED


def run_main(benchmark: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """Run *benchmark* on the command line's arguments; a failed run is one line, exit 1."""
    try:
        return benchmark(list(sys.argv[1:] if argv is None else argv))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"benchmark aborted: {exc}", file=sys.stderr)
        return EXIT_FAILED
