"""The batch twin of the per-request contract check: a whole file, column by column.

The gateway checks each request with the compiled JSON Schema (:mod:`prodgate.contract`).
A file of a million rows checked that way spends its time building a dict per row;
here the contract is turned once into a :class:`Plan` of column checks (a type is a
set of cell kinds, an enum a set lookup, a bound a comparison, a length a kernel over
the string column) that run over a batch's NumPy and Arrow arrays at once. The verdict
must not differ from the gateway's: every row is judged violating or clean exactly as
:class:`~prodgate.contract.Contract` judges it, on the same fields (tests hold the two
to it on files with every kind of violation).

What cannot be vectorised is checked by the gateway's own validator (jsonschema-rs),
so it cannot disagree:

- ``pattern``, ``format`` and ``multipleOf``: regex dialects, format rules and float
  division are the validator's, so it judges each *distinct* value once (a column of
  a few thousand categories costs a few thousand calls, not a million);
- any other keyword of a field (``items``, ``anyOf``, ``$ref``, a nested object, a
  draft-4 boolean ``exclusiveMinimum``, an ``enum`` of arrays...): that field's values
  one by one, through the field's own schema;
- a root keyword besides ``type``, ``properties``, ``required`` and
  ``additionalProperties`` (``allOf``, ``patternProperties``, ``minProperties``...):
  those keywords row by row.

JSON Lines are the exception: each line is parsed into an object anyway, so its rows
go to the validator whole (a valid row costs one call); building columns from them
costs more than the column checks save. Their columnar form (``columns_of``) is
what the tests hold to the same verdicts on mixed types a table cannot hold.

Counts are of rows: a row breaking a field's ``minimum`` counts once for that field
and rule. A ``type`` error on a null value is reported as rule ``null`` (a null where
the field does not allow one), a missing required field as ``required`` and an
unknown field as ``additionalProperties``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from prodgate.contract_read import (
    ABSENT,
    ARRAY,
    BOOL,
    FLOAT,
    INT,
    NULL,
    OBJECT,
    STRING,
    Batch,
    DataFile,
    JsonColumn,
    Mask,
)

#: Rule name of a ``type`` error on a null value.
NULL_RULE = "null"
#: The field of a violation of the row itself (not an object, too few properties...).
ROOT = "-"
#: Longest example text kept (a value longer is cut, with an ellipsis).
EXAMPLE_CHARS = 120

_TYPE_KINDS = {
    "null": (NULL,),
    "boolean": (BOOL,),
    "integer": (INT,),
    "number": (INT, FLOAT),
    "string": (STRING,),
    "array": (ARRAY,),
    "object": (OBJECT,),
}
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
    | {"$comment", "$id", "$anchor"}
)
_VECTOR = frozenset(
    {"type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
    | {"minLength", "maxLength"}
)
# Checked by the validator once per distinct value (see the module's docstring).
_DISTINCT = ("pattern", "format", "multipleOf")
_ROOT_VECTOR = frozenset({"type", "properties", "required", "additionalProperties"})
_ROOT_CONTEXT = ("$schema", "$defs", "definitions")


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _vectorisable(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    for key, value in schema.items():
        if key in _ANNOTATIONS or key in _DISTINCT:
            continue
        if key not in _VECTOR:
            return False
        if key == "enum" and not (isinstance(value, list) and all(map(_scalar, value))):
            return False
        if key == "const" and not _scalar(value):
            return False
        if key.startswith(("min", "max", "exclusive")) and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            return False  # draft 4's boolean exclusiveMinimum, among others
        if key == "type" and not all(t in _TYPE_KINDS for t in _types(value)):
            return False
    return True


def _types(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def field_types(schema: Any) -> frozenset[str] | None:
    """The JSON types a field allows, for reading CSV text (None: any)."""
    if not isinstance(schema, dict):
        return None
    if "type" in schema:
        return frozenset(_types(schema["type"]))
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if not isinstance(values, list):
        return None
    names = {"boolean" if isinstance(v, bool) else type(v).__name__ for v in values}
    mapping = {"int": "integer", "float": "number", "str": "string", "NoneType": "null"}
    return frozenset(mapping.get(n, n) for n in names)


def _kinds(col: JsonColumn, kinds: tuple[int, ...] | list[int]) -> Mask:
    """Rows whose kind is one of *kinds* (a table lookup: np.isin sorts)."""
    table = np.zeros(8, dtype=np.bool_)
    table[list(kinds)] = True
    return table[col.kind]


def _equal_any(values: npt.NDArray[np.float64], targets: list[float]) -> Mask:
    if len(targets) > 16:
        return np.isin(values, targets)
    hit = np.zeros(len(values), dtype=np.bool_)
    for t in targets:
        hit |= values == t
    return hit


def _mask(array: Any) -> Mask:
    return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _in_values(col: JsonColumn, values: list[Any]) -> Mask:
    """Rows whose value equals one of *values* (JSON equality: 1 == 1.0, true != 1)."""
    kind = col.kind
    hit = np.zeros(len(col), dtype=np.bool_)
    if any(v is None for v in values):
        hit |= kind == NULL
    for b in {v for v in values if isinstance(v, bool)}:
        hit |= (kind == BOOL) & (col.flag == b)
    nums = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if nums:
        hit |= _kinds(col, (INT, FLOAT)) & _equal_any(col.num, nums)
    strings = [v for v in values if isinstance(v, str)]
    if strings:
        hit |= (kind == STRING) & _mask(pc.is_in(col.text, value_set=pa.array(strings)))
    return hit


def _vector_checks(schema: dict[str, Any], col: JsonColumn) -> Iterator[tuple[str, Mask]]:
    """(rule, rows breaking it) of the vectorised keywords of a field's *schema*."""
    present = col.kind != ABSENT
    numeric = _kinds(col, (INT, FLOAT))
    if "type" in schema:
        wrong = present & ~_kinds(col, [k for t in _types(schema["type"]) for k in _TYPE_KINDS[t]])
        yield NULL_RULE, wrong & (col.kind == NULL)
        yield "type", wrong & (col.kind != NULL)
    if "enum" in schema:
        yield "enum", present & ~_in_values(col, schema["enum"])
    if "const" in schema:
        yield "const", present & ~_in_values(col, [schema["const"]])
    with np.errstate(invalid="ignore"):
        if "minimum" in schema:
            yield "minimum", numeric & (col.num < schema["minimum"])
        if "maximum" in schema:
            yield "maximum", numeric & (col.num > schema["maximum"])
        if "exclusiveMinimum" in schema:
            yield "exclusiveMinimum", numeric & (col.num <= schema["exclusiveMinimum"])
        if "exclusiveMaximum" in schema:
            yield "exclusiveMaximum", numeric & (col.num >= schema["exclusiveMaximum"])
    if "minLength" in schema or "maxLength" in schema:
        strings = col.kind == STRING
        length = np.asarray(
            pc.utf8_length(col.text).fill_null(0).to_numpy(zero_copy_only=False), np.int64
        )
        if "minLength" in schema:
            yield "minLength", strings & (length < schema["minLength"])
        if "maxLength" in schema:
            yield "maxLength", strings & (length > schema["maxLength"])


def _distinct_check(validator: Any, col: JsonColumn) -> Mask:
    """Rows whose value *validator* refuses, asking it once per distinct value."""
    bad = np.zeros(len(col), dtype=np.bool_)
    strings = col.kind == STRING
    if strings.any():
        unique = pc.unique(col.text.filter(pa.array(strings))).to_pylist()
        refused = [u for u in unique if not validator.is_valid(u)]
        if refused:
            bad |= strings & _mask(pc.is_in(col.text, value_set=pa.array(refused, pa.string())))
    numbers = _kinds(col, (INT, FLOAT))
    if numbers.any():
        rows = np.flatnonzero(numbers)
        unique, inverse = np.unique(col.num[rows], return_inverse=True)
        ok = np.array([validator.is_valid(_number(u)) for u in unique.tolist()], dtype=np.bool_)
        bad[rows] = ~ok[inverse]
        for i, big in col.ints.items():  # integers beyond float precision: one by one
            bad[i] = not validator.is_valid(big)
    for b in (True, False):
        rows = np.flatnonzero((col.kind == BOOL) & (col.flag == b))
        if len(rows) and not validator.is_valid(b):
            bad[rows] = True
    for i, value in col.other.items():
        bad[i] = not validator.is_valid(value)
    return bad


def _number(x: float) -> int | float:
    return int(x) if x.is_integer() else x


def attribute(err: Any) -> Iterator[tuple[str, str]]:
    """(field, rule) of a validator error, the field as :class:`Violation` names it."""
    parts = [str(p) for p in err.instance_path]
    kind = type(err.kind).__name__
    rule = str(err.kind.name)
    if kind == "Required":
        yield (parts[0] if parts else str(err.kind.property)), rule
    elif kind == "AdditionalProperties":
        for name in sorted(err.kind.unexpected):
            yield (parts[0] if parts else str(name)), rule
    elif kind == "Type" and err.instance is None:
        yield (parts[0] if parts else ROOT), NULL_RULE
    else:
        yield (parts[0] if parts else ROOT), rule


@dataclass
class _Field:
    """How one field (a contract property, or an unknown column) is checked."""

    name: str
    schema: Any
    vector: bool  # the vectorised keywords, plus *distinct*
    distinct: list[tuple[str, Any]] = field(default_factory=list)  # (keyword, validator)
    whole: Any = None  # a validator of {name: value} for a field checked value by value


@dataclass
class Finding:
    """Rows of a batch that break *rule* on *column*."""

    column: str
    rule: str
    mask: Mask


class Plan:
    """A contract turned into column checks, compiled once."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._context = {k: schema[k] for k in _ROOT_CONTEXT if k in schema}
        properties = schema.get("properties", {})
        self.required: list[str] = list(schema.get("required", []))
        self.fields = {name: self._field(name, prop) for name, prop in properties.items()}
        rest = {
            k: v
            for k, v in schema.items()
            if k not in _ROOT_VECTOR and k not in _ANNOTATIONS and k not in _ROOT_CONTEXT
        }
        extra = schema.get("additionalProperties", True)
        if rest.keys() & {"patternProperties", "unevaluatedProperties"}:
            # Which fields are "additional" depends on the patterns and on every
            # applicator: the validator judges those keywords row by row, seeing the
            # declared fields as evaluated (their own checks run here).
            rest["properties"] = dict.fromkeys(properties, True)
            if "additionalProperties" in schema:
                rest["additionalProperties"] = extra
            extra = True
        self.rows_validator = (
            jsonschema_rs.validator_for({**self._context, **rest}) if rest else None
        )
        self.root_keywords = sorted(k for k in rest if k != "properties")
        self.closed = extra is False
        self.extra = None if isinstance(extra, bool) else extra
        self._unknown: dict[str, _Field] = {}
        self.validator = jsonschema_rs.validator_for(schema)

    def _field(self, name: str, schema: Any, *, unknown: bool = False) -> _Field:
        if _vectorisable(schema):
            distinct = [
                (key, jsonschema_rs.validator_for({**self._context, key: schema[key]}))
                for key in _DISTINCT
                if key in schema
            ]
            return _Field(name, schema, True, distinct)
        wrapper = (
            {**self._context, "additionalProperties": schema}
            if unknown
            else {**self._context, "properties": {name: schema}}
        )
        return _Field(name, schema, False, whole=jsonschema_rs.validator_for(wrapper))

    def types(self) -> dict[str, frozenset[str] | None]:
        """The JSON types of each declared field (how CSV cells are read)."""
        return {name: field_types(f.schema) for name, f in self.fields.items()}

    def unknown_field(self, name: str) -> _Field | None:
        """The check of a column the contract does not declare (None: anything goes)."""
        if self.extra is None:
            return None
        if name not in self._unknown:
            self._unknown[name] = self._field(name, self.extra, unknown=True)
        return self._unknown[name]

    def per_value(self) -> list[str]:
        """What this plan leaves to the validator, in words (for the report)."""
        notes = []
        for f in [*self.fields.values(), *self._unknown.values()]:
            if not f.vector:
                notes.append(f"{f.name}: every value (its schema is not vectorised)")
            elif f.distinct:
                keys = ", ".join(k for k, _ in f.distinct)
                notes.append(f"{f.name}: {keys} once per distinct value")
        if self.rows_validator is not None:
            notes.append(f"every row: {', '.join(self.root_keywords)}")
        return notes

    def check(self, batch: Batch) -> list[Finding]:
        """Every (column, rule) of *batch* with the rows breaking it, merged per pair."""
        if batch.bodies is not None:
            return self._check_bodies(batch.bodies)
        found: dict[tuple[str, str], Mask] = {}
        objects = np.ones(batch.size, dtype=np.bool_)
        objects[list(batch.non_objects)] = False

        def add(column: str, rule: str, mask: Mask) -> None:
            mask = mask & objects
            if not mask.any():
                return
            key = (column, rule)
            found[key] = found[key] | mask if key in found else mask

        for name in self.required:
            col = batch.columns.get(name)
            add(name, "required", objects if col is None else col.kind == ABSENT)
        for name, col in batch.columns.items():
            spec = self.fields.get(name)
            if spec is None:
                if self.closed:
                    add(name, "additionalProperties", col.kind != ABSENT)
                    continue
                spec = self.unknown_field(name)
                if spec is None:
                    continue
            for column, rule, mask in self._field_checks(spec, col):
                add(column, rule, mask)
        if self.rows_validator is not None:
            for column, rule, mask in self._by_row(self.rows_validator, batch, objects):
                add(column, rule, mask)
        for i, body in batch.non_objects.items():
            for err in self.validator.iter_errors(body):
                for column, rule in attribute(err):
                    mask = np.zeros(batch.size, dtype=np.bool_)
                    mask[i] = True
                    key = (column, rule)
                    found[key] = found[key] | mask if key in found else mask
        return [Finding(c, r, m) for (c, r), m in found.items()]

    def _check_bodies(self, bodies: list[Any]) -> list[Finding]:
        # Rows that are parsed JSON objects already (JSON Lines) are judged by the
        # validator itself, one by one: turning them into columns costs more than the
        # column checks save (bench/contract_check.py measured it), and a valid row
        # costs one call.
        hits: dict[tuple[str, str], list[int]] = {}
        validator = self.validator
        for i, body in enumerate(bodies):
            if validator.is_valid(body):
                continue
            for err in validator.iter_errors(body):
                for key in attribute(err):
                    hits.setdefault(key, []).append(i)
        findings = []
        for (column, rule), rows in hits.items():
            mask = np.zeros(len(bodies), dtype=np.bool_)
            mask[rows] = True
            findings.append(Finding(column, rule, mask))
        return findings

    def _field_checks(self, spec: _Field, col: JsonColumn) -> Iterator[tuple[str, str, Mask]]:
        if spec.vector:
            for rule, mask in _vector_checks(spec.schema, col):
                yield spec.name, rule, mask
            for key, validator in spec.distinct:
                yield spec.name, key, _distinct_check(validator, col)
            return
        # Not vectorised: the field's values one by one, through its own schema.
        hits: dict[tuple[str, str], list[int]] = {}
        for i in np.flatnonzero(col.kind != ABSENT).tolist():
            for err in spec.whole.iter_errors({spec.name: col.value(i)}):
                for _, rule in attribute(err):
                    hits.setdefault((spec.name, rule), []).append(i)
        for (column, rule), rows in hits.items():
            mask = np.zeros(len(col), dtype=np.bool_)
            mask[rows] = True
            yield column, rule, mask

    def _by_row(
        self, validator: Any, batch: Batch, objects: Mask
    ) -> Iterator[tuple[str, str, Mask]]:
        hits: dict[tuple[str, str], list[int]] = {}
        rows = batch.rows()
        for i in np.flatnonzero(objects).tolist():
            for err in validator.iter_errors(rows[i]):
                for key in attribute(err):
                    hits.setdefault(key, []).append(i)
        for (column, rule), where in hits.items():
            mask = np.zeros(batch.size, dtype=np.bool_)
            mask[where] = True
            yield column, rule, mask


@dataclass
class RuleCount:
    """Rows breaking one rule on one column, with the first few as examples."""

    column: str
    rule: str
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "rule": self.rule,
            "count": self.count,
            "examples": self.examples,
        }


def _shown(value: Any) -> Any:
    if isinstance(value, str) and len(value) > EXAMPLE_CHARS:
        return value[: EXAMPLE_CHARS - 3] + "..."
    if isinstance(value, list | dict):
        text = repr(value)
        return value if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 3] + "..."
    return value


@dataclass
class Report:
    """The result of checking a file against a contract."""

    file: str
    format: str
    examples: int = 3
    rows: int = 0
    rows_with_violations: int = 0
    counts: dict[tuple[str, str], RuleCount] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)
    per_value: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def violations(self) -> int:
        return sum(c.count for c in self.counts.values())

    def add(self, batch: Batch, findings: list[Finding]) -> None:
        any_bad = np.zeros(batch.size, dtype=np.bool_)
        for f in findings:
            any_bad |= f.mask
            entry = self.counts.setdefault((f.column, f.rule), RuleCount(f.column, f.rule))
            entry.count += int(np.count_nonzero(f.mask))
            room = self.examples - len(entry.examples)
            if room <= 0:
                continue
            rows = batch.rows() if batch.bodies is not None else None
            for i in np.flatnonzero(f.mask)[:room].tolist():
                example: dict[str, Any] = {"row": batch.start + i + 1}
                if i in batch.non_objects:
                    example["value"] = _shown(batch.non_objects[i])
                elif rows is not None and type(rows[i]) is not dict:
                    example["value"] = _shown(rows[i])
                else:
                    present, value = batch.value(f.column, i)
                    if present:
                        example["value"] = _shown(value)
                entry.examples.append(example)
        self.rows += batch.size
        self.rows_with_violations += int(np.count_nonzero(any_bad))

    def ordered(self) -> list[RuleCount]:
        """Counts in the contract's column order, then unknown columns, then the root."""
        order = {name: n for n, name in enumerate(self.columns)}
        return sorted(
            self.counts.values(),
            key=lambda c: (order.get(c.column, len(order) + (c.column == ROOT)), c.column),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "rows": self.rows,
            "rows_with_violations": self.rows_with_violations,
            "violations": self.violations,
            "clean": self.rows_with_violations == 0,
            "columns": [c.as_dict() for c in self.ordered()],
            "missing_columns": self.missing_columns,
            "unknown_columns": self.unknown_columns,
            "per_value": self.per_value,
            "seconds": round(self.seconds, 3),
        }


def check_file(
    schema: Mapping[str, Any],
    path: Path,
    *,
    examples: int = 3,
    ignore: tuple[str, ...] = (),
    null_is_missing: bool = False,
    progress: Callable[[int, int], None] | None = None,
    batch_rows: int | None = None,
) -> Report:
    """Check every row of the file at *path* against the contract *schema*.

    *ignore* names columns left out (a label column, say). With *null_is_missing*, a
    null cell of a CSV or Parquet file is a field the request leaves out rather than
    a null value (a table cannot tell the two apart; JSON Lines can, and keeps them).
    *progress* is called with (done, total) in the file's unit (rows of a Parquet
    file, bytes otherwise).
    """
    started = time.perf_counter()
    plan = Plan(dict(schema))
    data = DataFile(path, plan.types(), null_is_missing=null_is_missing)
    report = Report(str(path), data.format, examples, columns=list(plan.fields))
    seen: dict[str, None] = {}
    done = 0
    batches = data.batches(batch_rows) if batch_rows else data.batches()
    for batch in batches:
        for name in ignore:
            batch.columns.pop(name, None)
            for body in batch.bodies or ():
                if type(body) is dict:
                    body.pop(name, None)
        seen.update(dict.fromkeys(batch.names()))
        report.add(batch, plan.check(batch))
        done += batch.advance
        if progress is not None:
            progress(done, data.total)
    report.missing_columns = [name for name in plan.fields if name not in seen]
    report.unknown_columns = [name for name in seen if name not in plan.fields]
    report.per_value = plan.per_value()
    report.seconds = time.perf_counter() - started
    return report
