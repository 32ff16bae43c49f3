"""The batch contract check judges every row as the per-request check does.

Mixed files (valid rows and every kind of violation, made at random from a seed) are
checked in batches; each row's verdict and the fields it breaks must be those of
:class:`~prodgate.contract.Contract` on the same row, and the rules those the
validator names.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prodgate.contract import Contract
from prodgate.contract_batch import Plan, attribute, check_file, field_types
from prodgate.contract_read import DataFile, csv_text
from prodgate.examples.claims_triage.spec import CONTRACT as CLAIMS
from prodgate.exceptions import UsageError

RICH: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",  # formats are asserted
    "type": "object",
    "required": ["amount", "kind", "code", "count"],
    "additionalProperties": False,
    "properties": {
        "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
        "kind": {"type": "string", "enum": ["a", "b", "c"]},
        "code": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[A-Z]+\\d*$"},
        "count": {"type": "integer", "minimum": 0, "exclusiveMaximum": 10, "multipleOf": 2},
        "flag": {"type": ["boolean", "null"]},
        "version": {"const": 1},
        "score": {"type": ["number", "null"], "minimum": -1, "maximum": 1},
        "label": {"enum": ["x", 3, True, None]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "either": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]},
        "name": {"type": "string", "title": "a name"},
        "day": {"type": "string", "format": "date"},
    },
}

ROOTED: dict[str, Any] = {
    "type": "object",
    "required": ["a"],
    "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
    "patternProperties": {"^x_": {"type": "number"}},
    "additionalProperties": False,
    "minProperties": 2,
}

OPEN_TYPED: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "integer", "maximum": 5}},
    "additionalProperties": {"type": "string", "maxLength": 3},
}

_VALID: dict[str, list[Any]] = {
    "amount": [0.5, 10, 999.9, 1000],
    "kind": ["a", "b", "c"],
    "code": ["AB", "XYZ12", "QQ9"],
    "count": [0, 2, 8, 4.0],
    "flag": [True, False, None],
    "version": [1, 1.0],
    "score": [-1, 0.25, 1, None],
    "label": ["x", 3, True, None, 3.0],
    "tags": [[], ["p"], ["p", "q"]],
    "either": [7, "z", -3],
    "name": ["n", ""],
    "day": ["2024-02-29", "1999-12-31"],
}
_BAD: dict[str, list[Any]] = {
    "amount": [0, -1, 1000.5, "12", None, True],
    "kind": ["d", "", 1, None, "A"],
    "code": ["A", "ABCDEF", "ab", "A-1", 12, None],
    "count": [-2, 10, 3, 2.5, "2", None, False],
    "flag": ["true", 1],
    "version": [2, "1", None, True],
    "score": [-1.5, 2, "0.1", False],
    "label": ["y", 4, False, "3"],
    "tags": [["p", 1], ["p", "q", "r"], "p", None],
    "either": ["zz", 1.5, None],
    "name": [None, 5],
    "day": ["2023-02-29", "yesterday", 20240101],
}


def mixed_rows(
    fields: dict[str, list[Any]], bad: dict[str, list[Any]], n: int, seed: int
) -> list[Any]:
    """*n* request bodies: about a third clean, the rest with one to three faults
    (a bad value, a missing field, an unknown field), and a few not objects at all."""
    rnd = random.Random(seed)
    rows: list[Any] = []
    for _ in range(n):
        row = {k: rnd.choice(v) for k, v in fields.items()}
        if rnd.random() < 0.66:
            for _ in range(rnd.randint(1, 3)):
                what = rnd.random()
                name = rnd.choice(list(fields))
                if what < 0.7:
                    row[name] = rnd.choice(bad[name])
                elif what < 0.85:
                    row.pop(name, None)
                else:
                    row[rnd.choice(["extra", "x_1", "zz"])] = rnd.choice([1, "v", None])
        rows.append(row)
    rows[n // 2] = [1, 2]
    rows[n // 3] = "just text"
    return rows


def judged(plan: Plan, data: DataFile) -> tuple[list[Any], list[set[tuple[str, str]]]]:
    """Each row of *data* (as the batch reader sees it) and the (field, rule) pairs the
    batch check finds on it."""
    rows: list[Any] = []
    found: list[set[tuple[str, str]]] = []
    for batch in data.batches(97):  # small batches: rows on both sides of a boundary
        rows.extend(batch.rows())
        per_row: list[set[tuple[str, str]]] = [set() for _ in range(batch.size)]
        for f in plan.check(batch):
            for i in np.flatnonzero(f.mask):
                per_row[i].add((f.column, f.rule))
        found.extend(per_row)
    return rows, found


def assert_agrees(
    schema: dict[str, Any], rows: list[Any], found: list[set[tuple[str, str]]]
) -> None:
    contract = Contract(schema)
    assert len(rows) == len(found)
    clean = 0
    for n, (row, pairs) in enumerate(zip(rows, found, strict=True), start=1):
        assert contract.is_valid(row) == (not pairs), (n, row, pairs)
        fields = {v.field for v in contract.violations(row, "")}
        assert {f for f, _ in pairs} == fields, (n, row, pairs)
        expected = {p for err in contract._validator.iter_errors(row) for p in attribute(err)}
        assert pairs == expected, (n, row)
        clean += not pairs
    assert 0 < clean < len(rows)  # the file held both


@pytest.mark.parametrize(
    "schema", [RICH, ROOTED, OPEN_TYPED, CLAIMS], ids=["rich", "rooted", "open-typed", "claims"]
)
def test_jsonl_rows_judged_as_the_contract_judges_them(
    tmp_path: Path, schema: dict[str, Any]
) -> None:
    if schema is RICH:
        rows = mixed_rows(_VALID, _BAD, 1500, seed=1)
    elif schema is CLAIMS:
        valid = {k: [v] for k, v in schema["examples"][0].items()}
        bad = {k: [-5, "q", None, 3.5, 200000000] for k in valid}
        rows = mixed_rows(valid, bad, 800, seed=2)
    else:
        valid = {"a": [1, 5], "b": ["s"], "x_2": [1.5]}
        bad = {"a": [6, "1", None], "b": [1, None, "long"], "x_2": ["n", None]}
        rows = mixed_rows(valid, bad, 800, seed=3)
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    plan = Plan(schema)
    # As columns (every vectorised check, on values of mixed types), and as the rows
    # they are (what a .jsonl file gets).
    for columnar in (True, False):
        seen, found = judged(plan, DataFile(path, plan.types(), columnar_json=columnar))
        assert seen == rows  # the reader hands on the bodies as they were
        assert_agrees(schema, rows, found)
    if schema is RICH:  # every kind of violation was in the file
        rules = {rule for pairs in found for _, rule in pairs}
        assert rules >= {
            "type", "null", "required", "additionalProperties", "enum", "const", "minimum",
            "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
            "pattern", "format", "multipleOf", "maxItems", "anyOf",
        }  # fmt: skip


def _columnar(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Rows a table can hold: every value of a column of one type (or null)."""
    return [{k: r.get(k) for k in names} for r in rows if isinstance(r, dict)]


def test_parquet_rows_judged_as_the_contract_judges_them(tmp_path: Path) -> None:
    rnd = random.Random(4)
    n = 1200

    def pick(good: list[Any], bad: list[Any]) -> list[Any]:
        return [rnd.choice(good) if rnd.random() < 0.9 else rnd.choice(bad) for _ in range(n)]

    table = pa.table(
        {
            "amount": pa.array(pick([0.5, 1000.0], [0.0, -1.0, 2000.0, float("nan"), None])),
            "kind": pa.array(pick(["a", "b"], ["z", None])).dictionary_encode(),
            "code": pa.array(pick(["AB", "QQ9"], ["A", "abc", "TOOLONG", None])),
            "count": pa.array(pick([0, 2, 8], [3, 10, -2]), pa.int32()),
            "flag": pa.array(pick([True, False, None], [None])),
            "version": pa.array(pick([1.0], [1.5, 2.0])),
            "tags": pa.array(pick([["p"], []], [["p", "q", "r"], None])),
            "extra": pa.array(pick([None, "ok"], ["long", ""]), pa.string()),
        }
    )
    path = tmp_path / "mixed.parquet"
    pq.write_table(table, path, row_group_size=300)
    schema = {**RICH, "additionalProperties": {"type": "string", "maxLength": 3}}
    plan = Plan(schema)
    seen, found = judged(plan, DataFile(path, plan.types()))
    # The reference: the file's rows as pyarrow gives them (NaN is null, as pandas has it).
    reference = [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
        for row in pq.read_table(path).to_pylist()
    ]
    assert len(seen) == len(reference)
    for a, b in zip(seen, reference, strict=True):
        assert a == b
    assert_agrees(schema, reference, found)


@pytest.mark.parametrize("null_is_missing", [False, True])
def test_csv_rows_judged_as_the_contract_judges_them(tmp_path: Path, null_is_missing: bool) -> None:
    rows = _columnar(mixed_rows(_VALID, _BAD, 1500, seed=5), [*_VALID, "extra"])
    for row in rows:  # arrays have no CSV form
        row.pop("tags")
    names = list(rows[0])
    path = tmp_path / "mixed.csv"
    path.write_text(csv_text(rows, names))
    schema = {
        **RICH,
        "properties": {k: v for k, v in RICH["properties"].items() if k != "tags"},
        "additionalProperties": {"type": ["integer", "null"]},
    }
    plan = Plan(schema)
    seen, found = judged(plan, DataFile(path, plan.types(), null_is_missing=null_is_missing))
    assert len(seen) == len(rows)
    assert any(None in r.values() for r in seen) is not null_is_missing
    assert_agrees(schema, seen, found)


def test_csv_cells_read_as_the_field_asks(tmp_path: Path) -> None:
    path = tmp_path / "cells.csv"
    path.write_text(
        'n,i,s,b,u,e\n12,3,12,true,7,"x"\n1.5e2,3.0,abc,False,seven,\nabc,-4,"",1,true,3\n,,,,,\n'
    )
    types = {
        "n": frozenset({"number"}),
        "i": frozenset({"integer"}),
        "s": frozenset({"string"}),
        "b": frozenset({"boolean"}),
        "e": field_types({"enum": ["x", 3]}),
    }
    (batch,) = DataFile(path, types).batches()
    assert batch.rows() == [
        {"n": 12, "i": 3, "s": "12", "b": True, "u": 7, "e": "x"},
        {"n": 150, "i": 3, "s": "abc", "b": False, "u": "seven", "e": None},
        {"n": "abc", "i": -4, "s": "", "b": "1", "u": True, "e": 3},
        {"n": None, "i": None, "s": None, "b": None, "u": None, "e": None},
    ]


def test_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffamount,kind\n5,a\n-1,b\n".encode())
    schema = {"type": "object", "properties": {"amount": {"type": "integer", "minimum": 0}}}
    report = check_file(schema, path)
    assert report.unknown_columns == ["kind"]
    assert [(c.column, c.rule, c.count) for c in report.ordered()] == [("amount", "minimum", 1)]


def test_report_counts_rows_and_examples(tmp_path: Path) -> None:
    rows = [dict(CLAIMS["examples"][0]) for _ in range(10)]
    rows[2]["claim_amount"] = -1
    rows[5]["claim_amount"] = -2
    rows[7]["claim_amount"] = -3
    rows[7]["claim_type"] = "cyber"
    del rows[8]["region"]
    path = tmp_path / "claims.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = check_file(CLAIMS, path, examples=2)
    out = report.as_dict()
    assert out["rows"] == 10
    assert out["rows_with_violations"] == 4
    assert out["violations"] == 5
    assert out["clean"] is False
    by = {(c["column"], c["rule"]): c for c in out["columns"]}
    assert by["claim_amount", "minimum"]["count"] == 3
    assert by["claim_amount", "minimum"]["examples"] == [
        {"row": 3, "value": -1},
        {"row": 6, "value": -2},
    ]
    assert by["claim_type", "enum"]["examples"] == [{"row": 8, "value": "cyber"}]
    assert by["region", "required"]["examples"] == [{"row": 9}]
    assert [c["column"] for c in out["columns"]] == ["claim_amount", "claim_type", "region"]


def test_missing_and_unknown_columns(tmp_path: Path) -> None:
    # days_to_report made optional: a missing optional column is named, not counted.
    schema = {**CLAIMS, "required": [f for f in CLAIMS["required"] if f != "days_to_report"]}
    row = dict(CLAIMS["examples"][0])
    del row["region"], row["days_to_report"]
    row["outcome"] = "routine"
    path = tmp_path / "claims.csv"
    path.write_text(csv_text([row] * 5, list(row)))
    report = check_file(schema, path)
    assert report.missing_columns == ["region", "days_to_report"]
    assert report.unknown_columns == ["outcome"]
    assert {(c.column, c.rule, c.count) for c in report.counts.values()} == {
        ("region", "required", 5),
        ("outcome", "additionalProperties", 5),
    }
    ignored = check_file(schema, path, ignore=("outcome",))
    assert set(ignored.counts) == {("region", "required")}


def test_a_clean_file_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "clean.parquet"
    pq.write_table(pa.Table.from_pylist([CLAIMS["examples"][0]] * 100), path)
    report = check_file(CLAIMS, path)
    assert report.as_dict()["clean"] is True
    assert report.rows == 100
    assert report.violations == 0


def test_what_is_left_to_the_validator_is_named() -> None:
    notes = Plan(RICH).per_value()
    assert "code: pattern once per distinct value" in notes
    assert "tags: every value (its schema is not vectorised)" in notes
    assert any(
        n == "every row: additionalProperties, minProperties, patternProperties"
        for n in Plan(ROOTED).per_value()
    )


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such data file"):
        check_file(CLAIMS, tmp_path / "none.csv")
    bad = tmp_path / "data.xlsx"
    bad.write_text("x")
    with pytest.raises(UsageError, match="unknown data format"):
        check_file(CLAIMS, bad)
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(UsageError, match="cannot read it as parquet"):
        check_file(CLAIMS, broken)
    lines = tmp_path / "broken.jsonl"
    lines.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(UsageError, match=r"broken\.jsonl:2: not JSON"):
        check_file(CLAIMS, lines)
