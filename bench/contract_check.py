"""Benchmark: ``contract check`` (column by column) against the per-row validator.

The same million claims (the bundled example's generator, with about 1% of claims of a
type the contract does not know, 1% with an empty ``police_report`` and 0.5% with a
negative amount) in Parquet, CSV and JSON Lines, checked against the claims-triage
contract two ways:

- **batch**: :func:`prodgate.contract_batch.check_file`, the file read in batches
  and every rule checked over whole columns (what ``prodgate contract check`` runs);
- **per row**: the gateway's :class:`~prodgate.contract.Contract` on each row, as a
  loop over the file's rows would do it: the rows read as dicts the quickest way
  (pyarrow's ``to_pylist`` for Parquet and CSV, orjson for JSON Lines), then
  ``Contract.violations`` on each, tallied per field. Reported with and without the
  time to read the dicts ("validate": the validator alone, the floor of any per-row
  check).

Both must find the same rows with violations. Prints rows/s of each and the ratio.
Run it from the repository root (about a minute; the machine's other load shows)::

    .venv/bin/python bench/contract_check.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from prodgate.contract import Contract
from prodgate.contract_batch import Report, check_file
from prodgate.contract_read import DataFile
from prodgate.examples.claims_triage.generate import CALLER_FIELDS, generate
from prodgate.examples.claims_triage.spec import CONTRACT


def make_files(rows: int, folder: Path) -> list[Path]:
    # What callers send (the policy's features are the gateway's to add).
    frame = generate(rows, seed=7, new_claim_type_rate=0.01, empty_field_rate=0.01)
    frame = frame[CALLER_FIELDS]
    rng = np.random.default_rng(7)
    negative = rng.random(rows) < 0.005
    frame.loc[negative, "claim_amount"] = -frame.loc[negative, "claim_amount"]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    parquet, csv, jsonl = folder / "claims.parquet", folder / "claims.csv", folder / "claims.jsonl"
    pq.write_table(table, parquet, row_group_size=128_000)
    pacsv.write_csv(table, csv)
    with jsonl.open("wb") as f:
        for row in table.to_pylist():
            f.write(orjson.dumps(row) + b"\n")
    return [parquet, csv, jsonl]


# CPU seconds of this process: on a shared machine, wall time measures the neighbours
# too (both are printed; the ratios use CPU time).
clock = time.process_time


def best(repeat: int, fn: Callable[[], Report]) -> tuple[float, float, Report]:
    """The best CPU and wall seconds of *repeat* runs, and the last result."""
    cpu, wall = [], []
    result = None
    for _ in range(repeat):
        c, w = clock(), time.perf_counter()
        result = fn()
        cpu.append(clock() - c)
        wall.append(time.perf_counter() - w)
    assert result is not None
    return min(cpu), min(wall), result


def _bodies(path: Path) -> Iterator[list[Any]]:
    """The file's rows as dicts, the quickest way there is: pyarrow's ``to_pylist``
    (Parquet, CSV with Arrow's own type inference), orjson (JSON Lines)."""
    if path.suffix == ".jsonl":
        for batch in DataFile(path, {}).batches():
            yield batch.rows()
        return
    if path.suffix == ".parquet":
        for record in pq.ParquetFile(path).iter_batches(batch_size=65_536):
            yield record.to_pylist()
        return
    convert = pacsv.ConvertOptions(strings_can_be_null=True)
    for record in pacsv.open_csv(path, convert_options=convert):
        yield record.to_pylist()


def per_row(path: Path) -> tuple[float, float, float, int]:
    """CPU seconds reading the rows as dicts and validating them, wall seconds of both,
    rows with violations."""
    contract = Contract(CONTRACT)
    build = check = 0.0
    bad = 0
    tally: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    t0 = clock()
    for rows in _bodies(path):
        t1 = clock()
        build += t1 - t0
        for row in rows:
            found = list(contract.violations(row, ""))
            if found:
                bad += 1
                tally.update(v.field for v in found)
        t0 = clock()
        check += t0 - t1
    return build, check, time.perf_counter() - started, bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        print(f"writing {args.rows:,} claims ...", file=sys.stderr)
        files = make_files(args.rows, Path(tmp))
        print(
            "CPU seconds (wall in brackets); per row = reading the rows as dicts + validating;\n"
            "validate = Contract.violations alone, on rows already read\n"
        )
        head = ["file", "batch", "rows/s", "per row", "rows/s", "x", "validate", "x", "bad rows"]
        print("{:<8} {:>14} {:>10} {:>15} {:>9} {:>6} {:>9} {:>5}  {}".format(*head))
        for path in files:
            seconds, wall, report = best(args.repeat, lambda p=path: check_file(CONTRACT, p))
            build, check, row_wall, bad = per_row(path)
            row_total = build + check
            n = report.rows
            found = report.rows_with_violations
            print(
                f"{path.suffix[1:]:<8} {seconds:>6.2f} ({wall:>5.2f}) {n / seconds:>10,.0f} "
                f"{row_total:>6.2f} ({row_wall:>5.2f}) {n / row_total:>9,.0f} "
                f"{row_total / seconds:>5.1f}x {check:>9.2f} {check / seconds:>4.1f}x  "
                f"{found:,} (per row: {bad:,})"
            )
            failed |= found != bad
    if failed:
        print("FAIL: the two checks disagree on the rows with violations", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
