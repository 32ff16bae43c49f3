"""``prodgate contract check``: a file against a service's contract; a table or JSON;
exit 0 clean, 1 with violations, 2 on a usage error (one line)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway_support import GOOD, write_spec
from prodgate.settings import Settings
from test_cli import assert_one_line_error, run

CSV = """\
amount,category,code,note,count
5,auto,ABC,,1
-1,boat,ab,hello,1.5
abc,home,XYZ,,2
7,travel,QQQ,fine,0
"""


@pytest.fixture
def spec(sqlite_settings: Settings) -> Settings:
    write_spec(sqlite_settings)
    return sqlite_settings


def test_a_table_of_violations_per_column_and_rule(spec: Settings, tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text(CSV)
    r = run(spec, "contract", "check", "claims", "--data", str(data))
    assert r.exit_code == 1, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith(f"claims: 4 rows of {data} checked in ")
    assert lines[0].endswith("2 rows with violations (50.00%)")
    assert lines[2].split() == ["COLUMN", "RULE", "ROWS", "EXAMPLES"]
    body = [line.split(None, 3) for line in lines[3:8]]
    assert body == [
        ["amount", "type", "1", 'row 3: "abc"'],
        ["amount", "minimum", "1", "row 2: -1"],
        ["category", "enum", "1", 'row 2: "boat"'],
        ["code", "pattern", "1", 'row 2: "ab"'],
        ["count", "type", "1", "row 2: 1.5"],
    ]
    assert "checked by the validator: code: pattern once per distinct value" in r.output


def test_json_with_totals_counts_and_examples(spec: Settings, tmp_path: Path) -> None:
    rows = [dict(GOOD, amount=-float(i)) if i % 3 == 1 else dict(GOOD) for i in range(10)]
    rows[5]["extra"] = 1
    data = tmp_path / "data.jsonl"
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    r = run(spec, "contract", "check", "claims", "--data", str(data), "--json", "--examples", "2")
    assert r.exit_code == 1, r.output
    out = orjson.loads(r.output)
    assert out["service"] == "claims"
    assert (out["rows"], out["rows_with_violations"], out["violations"]) == (10, 4, 4)
    assert out["clean"] is False
    assert out["unknown_columns"] == ["extra"]
    assert out["columns"] == [
        {
            "column": "amount",
            "rule": "minimum",
            "count": 3,
            "examples": [{"row": 2, "value": -1.0}, {"row": 5, "value": -4.0}],
        },
        {
            "column": "extra",
            "rule": "additionalProperties",
            "count": 1,
            "examples": [{"row": 6, "value": 1}],
        },
    ]


def test_a_clean_file_exits_0(spec: Settings, tmp_path: Path) -> None:
    data = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist([GOOD] * 50), data)
    r = run(spec, "contract", "check", "claims", "--data", str(data))
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].endswith("no violations")
    r = run(spec, "contract", "check", "claims", "--data", str(data), "--json")
    assert r.exit_code == 0, r.output
    assert orjson.loads(r.output)["clean"] is True


def test_ignore_and_null_is_missing(spec: Settings, tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("amount,category,code,label\n5,auto,,x\n6,home,ABC,y\n")
    r = run(spec, "contract", "check", "claims", "--data", str(data), "--json")
    by = {(c["column"], c["rule"]) for c in orjson.loads(r.output)["columns"]}
    assert by == {("code", "null"), ("label", "additionalProperties")}
    r = run(
        spec, "contract", "check", "claims", "--data", str(data), "--ignore", "label",
        "--null-is-missing",
    )  # fmt: skip
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["nope", "--data", "{csv}"], "unknown service 'nope'"),
        (["claims", "--data", "{dir}/absent.csv"], "no such data file"),
        (["claims", "--data", "{dir}/data.xlsx"], "unknown data format"),
        (["claims", "--data", "{dir}/bad.parquet"], "cannot read it as parquet"),
        (["claims", "--data", "{dir}/bad.jsonl"], "bad.jsonl:2: not JSON"),
        (["claims"], "Missing option '--data'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    spec: Settings, tmp_path: Path, args: list[str], needle: str
) -> None:
    (tmp_path / "data.csv").write_text(CSV)
    (tmp_path / "data.xlsx").write_text("x")
    (tmp_path / "bad.parquet").write_text("not parquet")
    (tmp_path / "bad.jsonl").write_text('{"amount": 1}\n{oops\n')
    filled = [a.format(csv=tmp_path / "data.csv", dir=tmp_path) for a in args]
    r = run(spec, "contract", "check", *filled)
    assert_one_line_error(r, needle)
