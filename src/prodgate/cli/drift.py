"""``drift``: distribution drift of data against a reference.

``drift compare`` works on two files, no service or store needed. The group has room
for the commands that read a service's production windows.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from prodgate.exceptions import UsageError


# A plain click group: the root group prints prodgate's errors as one line. This module
# imports nothing of the store or the server (cli.context does), so a comparison only
# pays for numpy and pyarrow.
@click.group("drift")
def drift() -> None:
    """Drift of data against a reference: per column, and for the dataset."""


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise UsageError("--columns: give column names separated by commas")
    return names


def _overrides(methods: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``COLUMN=METHOD[:THRESHOLD]`` options as the spec's per-column overrides."""
    out: dict[str, dict[str, Any]] = {}
    for item in methods:
        column, sep, rest = item.partition("=")
        if not sep or not column or not rest:
            raise UsageError(f"--method {item!r}: expected COLUMN=METHOD[:THRESHOLD]")
        method, _, threshold = rest.partition(":")
        spec: dict[str, Any] = {"method": method}
        if threshold:
            try:
                spec["threshold"] = float(threshold)
            except ValueError:
                raise UsageError(f"--method {item!r}: {threshold!r} is not a number") from None
        out[column.strip()] = spec
    return out


@drift.command("compare")
@click.argument("reference", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("current", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a self-contained HTML report to this file.",
)
@click.option("--columns", help="Compare only these columns (comma separated).")
@click.option("--categorical", help="Treat these numeric columns as categories (comma separated).")
@click.option(
    "--share",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="The dataset drifts when this share of its columns drifts.",
)
@click.option(
    "--method",
    "methods",
    multiple=True,
    metavar="COLUMN=METHOD[:THRESHOLD]",
    help="A column's test (ks, wasserstein, jensenshannon, chisquare, z, psi); repeatable.",
)
def compare(
    reference: Path,
    current: Path,
    as_json: bool,
    html_path: Path | None,
    columns: str | None,
    categorical: str | None,
    share: float,
    methods: tuple[str, ...],
) -> None:
    """Compare CURRENT data with REFERENCE data (Parquet or CSV files; REFERENCE may also
    be a saved profile, .json): each column's drift test (chosen as Evidently chooses
    it), its verdict and PSI, and whether the dataset drifted."""
    from prodgate.monitor.compare import compare as run

    _lean_memory()
    result = run(
        reference,
        current,
        columns=_names(columns),
        categorical=_names(categorical) or [],
        overrides=_overrides(methods),
        share=share,
    )
    if html_path is not None:
        from prodgate.monitor.html import render
        from prodgate.monitor.quality import quality

        page = render(
            result.reference,
            result.current,
            result.drift,
            quality(result.reference, result.current),
            title=f"Drift: {current.name} against {reference.name}",
        )
        html_path.write_text(page, encoding="utf-8")
    report = result.drift
    if as_json:
        import orjson

        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    from prodgate.cli.context import table

    rows = [
        [
            c.column,
            c.kind,
            c.method or "-",
            _fmt(c.statistic),
            _fmt(c.threshold),
            "DRIFT" if c.drifted else ("-" if c.method is None else "ok"),
            _fmt(c.psi),
        ]
        for c in report.columns
    ]
    click.echo(table(rows, ["COLUMN", "KIND", "METHOD", "STATISTIC", "THRESHOLD", "DRIFT", "PSI"]))
    drifted = len(report.drifted_columns)
    click.echo(
        f"\nDataset drift: {'yes' if report.dataset_drift else 'no'} "
        f"({drifted} of {len(report.columns)} columns drifted, "
        f"{report.share_drifted:.0%}; threshold {report.share:.0%})"
    )
    if html_path is not None:
        click.echo(f"HTML report: {html_path}")


def _lean_memory() -> None:
    """Keep the peak near one column's arrays: Arrow's buffers come from the system
    allocator (freed buffers go back to the heap glibc reuses, not to a pool of their
    own), and glibc's mmap threshold is fixed at 16 MiB instead of rising with every
    freed buffer, so arrays of a larger column are given back to the system at once.
    (A lower threshold saves a little more memory for much more time in page faults.)"""
    import ctypes

    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    # M_MMAP_THRESHOLD (glibc); another C library keeps its own policy.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(-3, 16 << 20)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


COMMANDS = [drift]
