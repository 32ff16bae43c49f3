"""Content hashes of artifacts and fingerprints of training data."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prodgate.exceptions import UsageError

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree_files(root: Path) -> list[Path]:
    """The files a folder's hash covers, in the order it covers them."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def tree_entry(rel: str, file_sha256: str) -> bytes:
    """What a folder's hash takes in for one file: its relative path and hash."""
    return rel.encode() + b"\x00" + file_sha256.encode() + b"\n"


def sha256_tree(root: Path) -> tuple[str, int]:
    """Hash of a folder: every file's relative path and content, in sorted order."""
    h = hashlib.sha256()
    size = 0
    for file in tree_files(root):
        h.update(tree_entry(file.relative_to(root).as_posix(), sha256_file(file)))
        size += file.stat().st_size
    return h.hexdigest(), size


def sha256_path(path: Path) -> tuple[str, int]:
    """``(sha256, size in bytes)`` of a file or a folder."""
    if path.is_dir():
        return sha256_tree(path)
    return sha256_file(path), path.stat().st_size


def read_table(path: Path) -> Any:
    """A CSV or Parquet file as a pandas DataFrame."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such data file") from None
    except Exception as exc:  # pandas raises many kinds for a bad file
        raise UsageError(f"{path}: cannot read it as {suffix[1:]}: {exc}") from None
    raise UsageError(f"{path}: unknown data format {suffix!r}; use .csv, .parquet or .jsonl")


def data_fingerprint(path: Path) -> dict[str, Any]:
    """sha256, row count, and column names and types of a data file."""
    if not path.is_file():
        raise UsageError(f"{path}: no such data file")
    frame = read_table(path)
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "rows": len(frame),
        "columns": {str(c): str(t) for c, t in frame.dtypes.items()},
    }
