"""``prodgate drift compare``: two files in, verdicts out (text, JSON, HTML)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from prodgate.cli.main import cli
from prodgate.monitor.profile import profile


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["drift", "compare", *args])


def one_line_error(result: Result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("prodgate: error: ")
    assert needle in lines[0]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(8)
    n, m = 30_000, 6000
    ref = pa.table(
        {
            "amount": rng.normal(100, 20, n),
            "age": rng.normal(40, 10, n),
            "kind": rng.choice(["auto", "home", "life"], n).tolist(),
        }
    )
    cur = pa.table(
        {
            "amount": rng.normal(130, 20, m),  # drifted
            "age": rng.normal(40, 10, m),
            "kind": rng.choice(["auto", "home", "life", "boat"], m).tolist(),  # drifted
        }
    )
    pq.write_table(ref, tmp_path / "ref.parquet")
    pq.write_table(cur, tmp_path / "cur.parquet")
    return tmp_path / "ref.parquet", tmp_path / "cur.parquet"


def test_compare_json(files: tuple[Path, Path]) -> None:
    result = run(str(files[0]), str(files[1]), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    by = {c["column"]: c for c in out["columns"]}
    assert [c["column"] for c in out["columns"]] == ["amount", "age", "kind"]
    assert by["amount"]["method"] == "wasserstein"
    assert by["amount"]["drifted"] is True
    assert by["age"]["drifted"] is False
    assert by["kind"]["method"] == "jensenshannon"
    assert by["kind"]["drifted"] is True
    for c in out["columns"]:
        assert {"column", "method", "statistic", "threshold", "drifted", "psi"} <= set(c)
    assert out["share_drifted"] == pytest.approx(2 / 3)
    assert out["dataset_drift"] is True


def test_compare_text_options_and_html(files: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = run(
        str(files[0]),
        str(files[1]),
        "--columns",
        "age,amount",
        "--share",
        "0.6",
        "--method",
        "age=psi:0.5",
        "--html",
        str(page),
    )
    assert result.exit_code == 0, result.output
    assert "age" in result.output
    assert "kind" not in result.output
    assert "psi" in result.output
    assert "Dataset drift: no (1 of 2 columns drifted, 50%; threshold 60%)" in result.output
    text = page.read_text()
    assert text.startswith("<!doctype html>")
    assert "<svg" in text
    assert "<script" not in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")


def test_compare_with_a_saved_profile(files: tuple[Path, Path], tmp_path: Path) -> None:
    saved = tmp_path / "profile.json"
    saved.write_text(json.dumps(profile(files[0]).to_json()))
    a = json.loads(run(str(saved), str(files[1]), "--json").output)
    b = json.loads(run(str(files[0]), str(files[1]), "--json").output)
    assert [c["drifted"] for c in a["columns"]] == [c["drifted"] for c in b["columns"]]


def test_compare_csv(files: tuple[Path, Path], tmp_path: Path) -> None:
    for name in ("ref", "cur"):
        table = pq.read_table(tmp_path / f"{name}.parquet")
        pyarrow.csv.write_csv(table, tmp_path / f"{name}.csv")
    result = run(str(tmp_path / "ref.csv"), str(tmp_path / "cur.csv"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dataset_drift"] is True


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["absent.parquet", "CUR"], "no such file"),
        (["REF", "CUR", "--method", "age"], "expected COLUMN=METHOD"),
        (["REF", "CUR", "--method", "age=magic"], "unknown drift method"),
        (["REF", "CUR", "--columns", "nope"], "no column nope"),
    ],
)
def test_usage_errors_are_one_line(files: tuple[Path, Path], args: list[str], needle: str) -> None:
    args = [str(files[0]) if a == "REF" else str(files[1]) if a == "CUR" else a for a in args]
    one_line_error(run(*args), needle)
