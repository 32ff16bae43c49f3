"""A data file (CSV, Parquet, JSON Lines) read in batches as columns of JSON values.

The batch contract check (:mod:`prodgate.contract_batch`) asks of every cell what a
request would carry there: nothing (the key is absent), null, a boolean, a number
(integral or not), a string, an array or an object. A :class:`JsonColumn` holds that
kind per row in one NumPy array, with the numbers, booleans and strings beside it in
columnar form, so the checks run over whole columns at once.

How a file's cells become JSON values (the same rules for the batch check and for the
row-by-row reference it is tested against, :meth:`Batch.rows`):

- Parquet: by the column's type; integers and floats are numbers (NaN is null, as
  pandas writes missing numbers), strings are strings, lists and structs are arrays
  and objects, dates and times their ISO text.
- CSV: text has no types, so each cell is read as the contract's field asks: in a
  field that allows numbers, a cell that reads as a number is one; in a field that
  allows booleans, ``true``/``false`` (any case) are booleans; anything else stays a
  string (and breaks a numeric field's ``type``). An empty cell is null.
- JSON Lines: each line is one request body; a key that is not there is absent, a
  ``null`` is null. A line that is not an object is checked whole (the root's type).
  Lines are parsed into objects, so the batch keeps them as they are (``bodies``)
  unless asked for columns (:func:`columns_of`).

A CSV or Parquet file cannot tell a null value from a field left out: an empty cell
is a null value (so a non-nullable field with empty cells breaks ``type``, reported
as ``null``), or, with ``null_is_missing``, a field the request leaves out (breaking
``required`` only where the field is required).
"""

from __future__ import annotations

import csv
import io
import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from prodgate.exceptions import UsageError

#: Rows per batch: memory is bounded by this times the number of columns.
BATCH_ROWS = 65_536

# The JSON kind of a cell.
ABSENT, NULL, BOOL, INT, FLOAT, STRING, ARRAY, OBJECT = range(8)
KIND_NAMES = ("absent", "null", "boolean", "integer", "number", "string", "array", "object")

Mask = npt.NDArray[np.bool_]

_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_INTEGER = r"^[+-]?\d+$"
_TRUE = ("true", "True", "TRUE")
_FALSE = ("false", "False", "FALSE")


@dataclass
class JsonColumn:
    """One column of a batch as JSON values: each row's kind, and its value by kind."""

    kind: npt.NDArray[np.int8]
    num: npt.NDArray[np.float64]  # numbers (INT, FLOAT); 0 elsewhere
    flag: Mask  # booleans (BOOL); False elsewhere
    text: pa.Array  # strings (STRING); null elsewhere
    other: dict[int, Any] = field(default_factory=dict)  # arrays and objects, by row
    ints: dict[int, int] = field(default_factory=dict)  # integers float64 cannot hold

    def __len__(self) -> int:
        return len(self.kind)

    def value(self, i: int) -> Any:
        """Row *i*'s value as Python (``None`` for null and for absent)."""
        k = int(self.kind[i])
        if k == BOOL:
            return bool(self.flag[i])
        if k == INT:
            # An integral float (3.0) is an integer to JSON Schema: shown as the int it is.
            return self.ints[i] if i in self.ints else int(self.num[i])
        if k == FLOAT:
            return float(self.num[i])
        if k == STRING:
            return self.text[i].as_py()
        if k in (ARRAY, OBJECT):
            return self.other[i]
        return None


@dataclass
class Batch:
    """Some consecutive rows of a file: *start* is the 0-based index of the first."""

    start: int
    size: int
    columns: dict[str, JsonColumn]
    #: Rows that are not objects (a JSON Lines line holding ``[1]`` or ``3``), by row.
    non_objects: dict[int, Any] = field(default_factory=dict)
    #: How far the file's progress moved with this batch (rows or bytes).
    advance: int = 0
    #: The rows as parsed JSON, when they come so (JSON Lines) and are kept so.
    bodies: list[Any] | None = None

    def names(self) -> list[str]:
        """The columns (keys) of these rows, in order of first appearance."""
        if self.bodies is None:
            return list(self.columns)
        objects = [b for b in self.bodies if type(b) is dict]
        if not objects:
            return []
        first = list(objects[0])
        others = set().union(*objects).difference(first)  # in C, not a loop per row
        return first + sorted(others)

    def value(self, column: str, i: int) -> tuple[bool, Any]:
        """Whether row *i* has *column*, and its value there."""
        if self.bodies is not None:
            body = self.bodies[i]
            if type(body) is not dict or column not in body:
                return False, None
            return True, body[column]
        col = self.columns.get(column)
        if col is None or col.kind[i] == ABSENT:
            return False, None
        return True, col.value(i)

    def rows(self) -> list[Any]:
        """The rows as request bodies, for a row-by-row check of the same data."""
        if self.bodies is not None:
            return self.bodies
        out: list[Any] = []
        for i in range(self.size):
            if i in self.non_objects:
                out.append(self.non_objects[i])
                continue
            out.append(
                {name: col.value(i) for name, col in self.columns.items() if col.kind[i] != ABSENT}
            )
        return out


def _empty(n: int) -> JsonColumn:
    return JsonColumn(
        kind=np.zeros(n, dtype=np.int8),
        num=np.zeros(n, dtype=np.float64),
        flag=np.zeros(n, dtype=np.bool_),
        text=pa.nulls(n, pa.string()),
    )


# -- from Arrow (Parquet) -----------------------------------------------------------


def from_arrow(array: pa.Array | pa.ChunkedArray) -> JsonColumn:
    """A column of an Arrow batch, by its type."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    t = array.type
    if pa.types.is_dictionary(t):
        return from_arrow(array.dictionary_decode())
    n = len(array)
    col = _empty(n)
    valid = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)
    col.kind[:] = NULL
    if pa.types.is_null(t):
        return col
    if pa.types.is_boolean(t):
        col.kind[valid] = BOOL
        col.flag = np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), np.bool_)
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        _numbers(col, array, valid)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        col.kind[valid] = STRING
        col.text = array.cast(pa.string())
    elif pa.types.is_temporal(t):
        col.kind[valid] = STRING
        col.text = _iso(array)
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        col.kind[valid] = STRING
        col.text = pa.array(
            [None if v is None else v.decode("utf-8", "replace") for v in array.to_pylist()],
            pa.string(),
        )
    else:  # lists, structs, maps: value by value
        for i, v in enumerate(array.to_pylist()):
            if isinstance(v, list):
                col.kind[i], col.other[i] = ARRAY, v
            elif v is not None:
                col.kind[i], col.other[i] = OBJECT, dict(v)
    return col


def _numbers(col: JsonColumn, array: pa.Array, valid: Mask) -> None:
    t = array.type
    if pa.types.is_integer(t):
        num = array.cast(pa.float64(), safe=False).fill_null(0).to_numpy(zero_copy_only=False)
        col.num = np.asarray(num, dtype=np.float64)
        col.kind[valid] = INT
        big = valid & (np.abs(col.num) >= 2.0**53)
        if big.any():  # integers float64 cannot hold, kept as they are
            rows = np.flatnonzero(big)
            col.ints = dict(zip(rows.tolist(), array.take(pa.array(rows)).to_pylist(), strict=True))
        return
    num = np.asarray(
        array.cast(pa.float64(), safe=False).fill_null(np.nan).to_numpy(zero_copy_only=False),
        dtype=np.float64,
    )
    nan = np.isnan(num)
    col.num = np.where(nan, 0.0, num)
    number = valid & ~nan
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(num) & (np.mod(col.num, 1.0) == 0)
    col.kind[number & integral] = INT
    col.kind[number & ~integral] = FLOAT


def _iso(array: pa.Array) -> pa.Array:
    values = [None if v is None else v.isoformat() for v in array.to_pylist()]
    return pa.array(values, pa.string())


# -- from CSV text -----------------------------------------------------------------------


def from_text(array: pa.Array, types: frozenset[str] | None) -> JsonColumn:
    """A CSV column (strings, null for an empty cell) read as a field of *types* asks."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_string(array.type):  # a column Arrow typed itself (a null column)
        array = array.cast(pa.string())
    n = len(array)
    col = _empty(n)
    valid = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)
    col.kind[:] = NULL
    col.kind[valid] = STRING
    taken = np.zeros(n, dtype=np.bool_)
    if types is None or types & {"number", "integer"}:
        numeric, value = _parse_numbers(array, valid)
        if numeric.any():
            col.num = value
            with np.errstate(invalid="ignore"):
                integral = np.isfinite(value) & (np.mod(value, 1.0) == 0)
            col.kind[numeric & integral] = INT
            col.kind[numeric & ~integral] = FLOAT
            taken |= numeric
            big = numeric & (np.abs(value) >= 2.0**53)
            if big.any():  # whole numbers float64 cannot hold: read from their text
                whole = big & _mask(pc.match_substring_regex(array, _INTEGER))
                texts = array.to_pylist()
                col.ints = {int(i): int(texts[i]) for i in np.flatnonzero(whole)}
    if types is None or "boolean" in types:
        true = _mask(pc.is_in(array, pa.array(_TRUE))) & ~taken
        false = _mask(pc.is_in(array, pa.array(_FALSE))) & ~taken
        col.kind[true | false] = BOOL
        col.flag = true
        taken |= true | false
    col.text = pc.if_else(pa.array(valid & ~taken), array, pa.scalar(None, pa.string()))
    return col


def _parse_numbers(array: pa.Array, valid: Mask) -> tuple[Mask, npt.NDArray[np.float64]]:
    """Which cells of a text column read as numbers, and their values (0 elsewhere)."""
    try:  # the common case, a column of numbers: one cast
        value = np.asarray(
            array.cast(pa.float64()).fill_null(0).to_numpy(zero_copy_only=False), np.float64
        )
        if np.isfinite(value).all():
            return valid.copy(), value
    except pa.ArrowInvalid:
        pass
    # Arrow's cast also reads "nan" and "inf", which are no JSON numbers: by the grammar.
    numeric = _mask(pc.match_substring_regex(array, _NUMBER))
    if not numeric.any():
        return numeric, np.zeros(len(array), dtype=np.float64)
    nums = pc.if_else(pa.array(numeric), array, pa.scalar(None, pa.string()))
    value = np.asarray(
        nums.cast(pa.float64()).fill_null(0).to_numpy(zero_copy_only=False), np.float64
    )
    return numeric, value


def _mask(array: pa.Array) -> Mask:
    return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=np.bool_)


# -- from Python values (JSON Lines) -----------------------------------------------------


def from_values(values: list[Any]) -> JsonColumn:
    """A column of parsed JSON values; :data:`_MISSING` marks an absent key."""
    n = len(values)
    col = _empty(n)
    # orjson makes only these types, so every value's type has its code.
    col.kind = np.fromiter(map(_CODES.__getitem__, map(type, values)), np.int8, n)
    numbers = np.flatnonzero((col.kind == INT) | (col.kind == FLOAT))
    if len(numbers):
        picked = [values[i] for i in numbers.tolist()]
        try:
            col.num[numbers] = picked
        except OverflowError:  # an integer too large for a float: as infinity
            col.num[numbers] = [
                float(v) if abs(v) < 2**1000 else np.copysign(np.inf, v) for v in picked
            ]
        with np.errstate(invalid="ignore"):
            integral = np.isfinite(col.num) & (np.mod(col.num, 1.0) == 0)
        col.kind[(col.kind == FLOAT) & integral] = INT
        big = np.flatnonzero((col.kind == INT) & (np.abs(col.num) >= 2.0**53)).tolist()
        col.ints = {i: values[i] for i in big if type(values[i]) is int}
    flags = np.flatnonzero(col.kind == BOOL)
    if len(flags):
        col.flag[flags] = [values[i] for i in flags.tolist()]
    if (col.kind == STRING).any():
        col.text = pa.array([v if type(v) is str else None for v in values], pa.string())
    for i in np.flatnonzero(col.kind >= ARRAY).tolist():
        col.other[i] = values[i]
        col.kind[i] = ARRAY if type(values[i]) is list else OBJECT
    return col


class _Missing:
    """The type of :data:`_MISSING`, a key a JSON line does not have."""


_MISSING: Any = _Missing()
_CODES: dict[type, int] = {
    _Missing: ABSENT,
    type(None): NULL,
    bool: BOOL,
    int: INT,
    float: FLOAT,
    str: STRING,
    list: ARRAY,
    dict: OBJECT,
}


# -- files ------------------------------------------------------------------------------


class DataFile:
    """A data file to read in batches; *total* is its size in rows (Parquet) or bytes."""

    def __init__(
        self,
        path: Path,
        types: Mapping[str, frozenset[str] | None],
        *,
        null_is_missing: bool = False,
        columnar_json: bool = False,
    ) -> None:
        self.path = path
        self.null_is_missing = null_is_missing
        # JSON Lines rows are objects already: kept as they are unless asked for columns.
        self.columnar_json = columnar_json
        self.types = types  # the JSON types each contract field allows (CSV cells)
        suffix = path.suffix.lower()
        if not path.is_file():
            raise UsageError(f"{path}: no such data file")
        if suffix in (".parquet", ".pq"):
            self.format = "parquet"
        elif suffix in (".csv", ".txt"):
            self.format = "csv"
        elif suffix in (".jsonl", ".ndjson"):
            self.format = "jsonl"
        else:
            raise UsageError(
                f"{path}: unknown data format {suffix!r}; use .csv, .parquet or .jsonl"
            )
        self.total = path.stat().st_size
        if self.format == "parquet":
            import pyarrow.parquet as pq

            try:
                self._parquet = pq.ParquetFile(path)
            except Exception as exc:
                raise UsageError(f"{path}: cannot read it as parquet: {exc}") from None
            self.total = self._parquet.metadata.num_rows

    def batches(self, rows: int = BATCH_ROWS) -> Iterator[Batch]:
        """The file's rows, *rows* at a time (CSV: about as many)."""
        try:
            if self.format == "jsonl":
                yield from self._jsonl_batches(rows)
                return
            tabular = self._parquet_batches if self.format == "parquet" else self._csv_batches
            for batch in tabular(rows):
                if self.null_is_missing:  # a table cannot tell null from left out
                    for col in batch.columns.values():
                        col.kind[col.kind == NULL] = ABSENT
                yield batch
        except UsageError:
            raise
        except (pa.ArrowException, OSError, UnicodeDecodeError, csv.Error) as exc:
            raise UsageError(f"{self.path}: cannot read it as {self.format}: {exc}") from None

    def _parquet_batches(self, rows: int) -> Iterator[Batch]:
        start = 0
        for record in self._parquet.iter_batches(batch_size=rows):
            columns = {
                str(name): from_arrow(record.column(i))
                for i, name in enumerate(record.schema.names)
            }
            yield Batch(start, record.num_rows, columns, advance=record.num_rows)
            start += record.num_rows

    def _csv_batches(self, rows: int) -> Iterator[Batch]:
        import pyarrow.csv as pacsv

        with self.path.open(encoding="utf-8-sig", newline="") as text:  # Excel's BOM too
            header = next(csv.reader(text), None)
        if not header:
            return
        convert = pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        )
        # Blocks of about *rows* rows of a typical width keep memory bounded.
        read = pacsv.ReadOptions(block_size=1 << 22 if rows >= BATCH_ROWS else max(rows * 32, 256))
        start = 0
        with self.path.open("rb") as raw:
            # Progress in bytes, estimated from the rows read: the reader reads ahead,
            # so the file's position says little. Bytes a row from the first megabyte.
            sample = raw.read(1 << 20)
            per_row = len(sample) / max(1, sample.count(b"\n"))
            raw.seek(0)
            reader = pacsv.open_csv(raw, read_options=read, convert_options=convert)
            for record in reader:
                columns = {
                    str(name): from_text(record.column(i), self.types.get(str(name)))
                    for i, name in enumerate(record.schema.names)
                }
                advance = round(record.num_rows * per_row)
                yield Batch(start, record.num_rows, columns, advance=advance)
                start += record.num_rows

    def _jsonl_batches(self, rows: int) -> Iterator[Batch]:
        start = 0
        first = 1  # the file's line number of the chunk's first line
        with self.path.open("rb") as f:
            # Chunks of about 16 MB of lines; no Python loop over the lines on the way.
            while chunk := f.readlines(1 << 24):
                size = sum(map(len, chunk))
                values = self._parse(list(filter(None, map(bytes.strip, chunk))), chunk, first)
                first += len(chunk)
                for at in range(0, len(values), rows):
                    part = values[at : at + rows]
                    yield self._batch(start, part, size if at == 0 else 0)
                    start += len(part)

    def _batch(self, start: int, bodies: list[Any], size: int) -> Batch:
        if self.columnar_json:
            return columns_of(start, bodies, size)
        return Batch(start, len(bodies), {}, advance=size, bodies=bodies)

    def _parse(self, lines: list[bytes], chunk: list[bytes], first: int) -> list[Any]:
        """The JSON value of each of *lines* (the non-blank lines of *chunk*)."""
        try:  # one call for all: the lines as one JSON array
            return list(orjson.loads(b"[" + b",".join(lines) + b"]"))
        except orjson.JSONDecodeError:
            pass
        values = []
        for number, line in enumerate(chunk, start=first):
            if not line.strip():
                continue
            try:
                values.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise UsageError(f"{self.path}:{number}: not JSON ({exc})") from None
        return values


def columns_of(start: int, bodies: list[Any], size: int = 0) -> Batch:
    """Parsed JSON bodies as a batch of columns."""
    keys: dict[str, Any] = {}
    non_objects: dict[int, Any] = {}
    for i, body in enumerate(bodies):
        if type(body) is dict:
            keys.update(body)  # the keys, in order of first appearance
        else:
            non_objects[i] = body
    dicts = [b if type(b) is dict else {} for b in bodies] if non_objects else bodies
    columns = {
        name: from_values(list(map(operator.methodcaller("get", name, _MISSING), dicts)))
        for name in keys
    }
    return Batch(start, len(bodies), columns, non_objects, advance=size)


def csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """*rows* as CSV text (None as an empty cell), for tests and examples."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else _cell(row.get(c)) for c in columns])
    return out.getvalue()


def _cell(v: Any) -> str:
    if v is True or v is False:
        return "true" if v else "false"
    return str(v)
