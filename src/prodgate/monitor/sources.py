"""Tabular data for profiles, read column by column with bounded memory.

A source is a pandas DataFrame, a pyarrow Table, or a Parquet or CSV path. Profiles need
two or three passes over each column (range, then bins), so a source hands out, per
column, a function that yields the column's chunks again on every call: in memory for
tables and for files whose column fits in :data:`COLUMN_BUDGET` bytes, re-read row group
by row group from the Parquet file otherwise. Only one column's chunks are held at a
time, so memory is bounded by one column (or one row group of it), not by the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from prodgate.exceptions import UsageError

#: A column larger than this (decoded) is streamed from the Parquet file per row group.
COLUMN_BUDGET = 256 * 1024 * 1024

#: Columns read together (decoded in parallel), within this many bytes.
GROUP_COLUMNS = 2
GROUP_BUDGET = 64 * 1024 * 1024

Chunks = Callable[[], Iterator[pa.Array]]


@dataclass
class Source:
    """A table's rows, column names and types, and each column's chunks on demand."""

    rows: int
    schema: pa.Schema
    _column: Callable[[str], Chunks]

    @property
    def names(self) -> list[str]:
        return list(self.schema.names)

    def type(self, name: str) -> pa.DataType:
        return self.schema.field(name).type

    def chunks(self, name: str) -> Chunks:
        """A function yielding the column's chunks (again on every call)."""
        return self._column(name)


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

    order = list(arrow_schema.names)
    kept: dict[str, list[pa.Array]] = {}

    def read_group(name: str) -> None:
        """The column, and the next few in the schema's order: one read decodes them
        in parallel (a column is one task), within :data:`GROUP_BUDGET` bytes."""
        group, budget = [name], decoded(name)
        for other in order[order.index(name) + 1 :]:
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

    def column(name: str) -> Chunks:
        if decoded(name) <= COLUMN_BUDGET:
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

    return Source(meta.num_rows, arrow_schema, column)


def _csv_source(path: Path, label: str) -> Source:
    import pyarrow.csv as pacsv

    delimiter = "\t" if ".tsv" in path.name.lower() else ","
    parse = pacsv.ParseOptions(delimiter=delimiter)
    try:
        table = pacsv.read_csv(path, parse_options=parse)
    except pa.ArrowInvalid:
        # A column whose later rows do not fit the type guessed from the first block:
        # read every column as text and let each column's reader sort numbers from words.
        try:
            names = pacsv.read_csv(
                path, parse_options=parse, read_options=pacsv.ReadOptions(block_size=1 << 16)
            ).column_names
        except pa.ArrowInvalid:
            names = _csv_header(path, delimiter)
        try:
            table = pacsv.read_csv(
                path,
                parse_options=parse,
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string())
                ),
            )
        except pa.ArrowInvalid as exc:
            raise UsageError(f"{label}: {path.name} is not a readable CSV file: {exc}") from None
    return _table_source(table)


def _csv_header(path: Path, delimiter: str) -> list[str]:
    import csv
    import gzip

    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        return next(csv.reader(handle, delimiter=delimiter), [])
