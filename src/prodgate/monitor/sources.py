"""Tabular data for profiles, read column by column with bounded memory.

A source is a pandas DataFrame, a pyarrow Table, or a Parquet or CSV path. Profiles need
two or three passes over each column (range, then bins), so a source hands out, per
column, a function that yields the column's chunks again on every call: in memory for
tables and for files whose column fits in :data:`COLUMN_BUDGET` bytes, re-read row group
by row group from the Parquet file otherwise. Only one column's chunks are held at a
time, so memory is bounded by one column (or one row group of it), not by the file.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from prodgate.exceptions import UsageError

#: A column larger than this (decoded) is streamed from the Parquet file per row group.
COLUMN_BUDGET = 256 * 1024 * 1024

#: A CSV file larger than this is copied to a temporary Parquet file, not read whole.
CSV_IN_MEMORY = 256 * 1024 * 1024
#: Columns read together (decoded in parallel), within this many bytes.
GROUP_COLUMNS = 2
GROUP_BUDGET = 64 * 1024 * 1024

Chunks = Callable[[], Iterator[pa.Array]]
#: The column pandas writes a DataFrame's (non-range) index to.
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")


@dataclass
class Source:
    """A table's rows, column names and types, and each column's chunks on demand."""

    rows: int
    schema: pa.Schema
    _column: Callable[[str], Chunks]
    #: The columns about to be asked for, in order: a file reads ahead only these.
    order: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The data's columns (a DataFrame's saved index is not one of them)."""
        return [n for n in self.schema.names if not _PANDAS_INDEX.match(n)]

    def type(self, name: str) -> pa.DataType:
        return self.schema.field(name).type

    def chunks(self, name: str) -> Chunks:
        """A function yielding the column's chunks (again on every call)."""
        return self._column(name)

    def plan(self, names: list[str]) -> None:
        """Say which columns will be asked for next, in order (read ahead together)."""
        self.order[:] = names


def open_source(data: Any, *, label: str = "data") -> Source:
    """A :class:`Source` over a DataFrame, a pyarrow Table, or a Parquet/CSV path."""
    if isinstance(data, Source):
        return data
    if isinstance(data, pa.Table):
        return _table_source(data)
    if isinstance(data, str | Path):
        return _path_source(Path(data), label)
    if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        return _table_source(_from_pandas(data))
    raise UsageError(f"{label}: expected a DataFrame, a pyarrow Table or a file path")


def _table_source(table: pa.Table) -> Source:
    def column(name: str) -> Chunks:
        chunks = table.column(name).chunks

        def gen() -> Iterator[pa.Array]:
            yield from chunks

        return gen

    return Source(table.num_rows, table.schema, column)


def _from_pandas(frame: Any) -> pa.Table:
    """The frame as Arrow; a column of mixed Python objects is kept as strings so its
    numbers still read as numbers (a numeric reference) and its words as invalid."""
    arrays = []
    names = []
    for name in frame.columns:
        series = frame[name]
        try:
            array = pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            array = pa.array(
                [None if _missing(v) else str(v) for v in series.tolist()], type=pa.string()
            )
        arrays.append(array)
        names.append(str(name))
    return pa.table(arrays, names=names)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _path_source(path: Path, label: str) -> Source:
    if not path.exists():
        raise UsageError(f"{label}: no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq", ".parq"):
        return _parquet_source(path, label)
    if suffix in (".csv", ".tsv", ".txt") or path.name.lower().endswith((".csv.gz", ".tsv.gz")):
        return _csv_source(path, label)
    raise UsageError(f"{label}: {path.name}: expected a .parquet or .csv file")


def _parquet_source(path: Path, label: str) -> Source:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(f"{label}: {path.name} is not a readable Parquet file: {exc}") from None
    meta = file.metadata
    arrow_schema = file.schema_arrow
    # Strings are read as dictionaries: counting categories then counts small integers.
    strings = [
        f.name
        for f in arrow_schema
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]

    def decoded(name: str) -> int:
        index = arrow_schema.get_field_index(name)
        size = sum(
            meta.row_group(g).column(index).total_uncompressed_size
            for g in range(meta.num_row_groups)
        )
        return int(max(size, meta.num_rows * 8))

    order: list[str] = []
    kept: dict[str, list[pa.Array]] = {}

    def read_group(name: str) -> None:
        """The column, and the next few in the schema's order: one read decodes them
        in parallel (a column is one task), within :data:`GROUP_BUDGET` bytes."""
        group, budget = [name], decoded(name)
        after = order[order.index(name) + 1 :] if name in order else []
        for other in after:
            if len(group) >= GROUP_COLUMNS or other in kept:
                break
            size = decoded(other)
            if budget + size > GROUP_BUDGET:
                break
            group.append(other)
            budget += size
        wanted = [n for n in group if n in strings]
        # ParquetFile.read, not pq.read_table: that one imports pyarrow.dataset (and
        # pandas), a second of start-up for nothing here.
        reader = pq.ParquetFile(path, read_dictionary=wanted) if wanted else file
        table = reader.read(columns=group)
        for i, n in enumerate(group):
            kept[n] = table.column(i).chunks

    lock = threading.Lock()  # columns may be asked for from two threads at once

    def column(name: str) -> Chunks:
        if decoded(name) <= COLUMN_BUDGET:
            with lock:
                if name not in kept:
                    read_group(name)
                chunks = kept.pop(name)

            def cached() -> Iterator[pa.Array]:
                yield from chunks

            return cached
        dictionary = [name] if name in strings else None

        def streamed() -> Iterator[pa.Array]:
            reader = pq.ParquetFile(path, read_dictionary=dictionary)
            for group in range(reader.metadata.num_row_groups):
                yield from reader.read_row_group(group, columns=[name]).column(0).chunks

        return streamed

    return Source(meta.num_rows, arrow_schema, column, order)


def _csv_source(path: Path, label: str) -> Source:
    import pyarrow.csv as pacsv

    delimiter = "\t" if ".tsv" in path.name.lower() else ","
    parse = pacsv.ParseOptions(delimiter=delimiter)
    if path.stat().st_size > CSV_IN_MEMORY:
        return _parquet_source(_csv_to_parquet(path, parse, delimiter, label), label)
    try:
        table = pacsv.read_csv(path, parse_options=parse)
    except pa.ArrowInvalid:
        # A column whose later rows do not fit the type guessed from the first block:
        # read every column as text and let each column's reader sort numbers from words.
        try:
            table = pacsv.read_csv(
                path, parse_options=parse, convert_options=_as_text(path, delimiter)
            )
        except pa.ArrowInvalid as exc:
            raise UsageError(f"{label}: {path.name} is not a readable CSV file: {exc}") from None
    return _table_source(table)


def _as_text(path: Path, delimiter: str) -> Any:
    import pyarrow.csv as pacsv

    names = _csv_header(path, delimiter)
    return pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))


def _csv_to_parquet(path: Path, parse: Any, delimiter: str, label: str) -> Path:
    """A CSV too large for memory, copied batch by batch into a temporary Parquet file
    (removed at exit): parsed once, then read column by column like any Parquet file."""
    import atexit
    import shutil
    import tempfile

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    folder = Path(tempfile.mkdtemp(prefix="prodgate-csv-"))
    atexit.register(shutil.rmtree, folder, True)
    target = folder / (path.stem + ".parquet")
    for convert in (None, _as_text(path, delimiter)):
        try:
            reader = pacsv.open_csv(path, parse_options=parse, convert_options=convert)
            with pq.ParquetWriter(target, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
            return target
        except pa.ArrowInvalid as exc:
            if convert is not None:
                raise UsageError(
                    f"{label}: {path.name} is not a readable CSV file: {exc}"
                ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _csv_header(path: Path, delimiter: str) -> list[str]:
    import csv
    import gzip

    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        return next(csv.reader(handle, delimiter=delimiter), [])
