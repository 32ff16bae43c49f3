"""Benchmark: registering and loading a large artifact through the store.

For each store (SQLite in a temporary folder, and PostgreSQL when one answers at
``--pg``, in a database created for the run and dropped after it) a file of random
bytes (``--mb``, 50 by default: incompressible, like a saved model) is:

- **registered** with ``versions.register`` (hashed, copied to HOME/artifacts, and its
  bytes stored in 1 MiB chunks in the same transaction as the version row; the model
  check is off, random bytes are no model);
- **loaded on a replica**: ``artifacts.materialise`` with another, empty HOME, so the
  bytes come out of the store, are written beside the cache, hashed and renamed;
- **loaded again**: the cached copy's hash checked, nothing fetched.

The baseline, measured in the same run on the same file, is what registering cost
before artifacts went into the store: hashing the file and copying it. Targets:
registering and loading on a replica each take at most 2 s at 50 MB on PostgreSQL.

Run it from the repository root::

    .venv/bin/python bench/artifact_store.py [--mb 50] [--pg postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

from prodgate import spec as spec_module
from prodgate.registry import artifacts, versions
from prodgate.registry.fingerprint import sha256_path
from prodgate.settings import Settings
from prodgate.store.engine import open_store

SPEC = """\
services:
  big:
    owner: {name: Bench, contact: bench@example.com}
    kind: classifier
    contract:
      input: {type: object, properties: {x: {type: number}}}
"""

TARGET_S = 2.0

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@contextmanager
def postgres(admin_url: str) -> Iterator[str | None]:
    """A fresh database on the server at *admin_url* (None if none answers)."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"prodgate_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        admin.dispose()
        yield None
        return
    try:
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def run(engine: str, url: str | None, blob: Path, work: Path) -> dict[str, float]:
    config = work / "prodgate.yaml"
    config.write_text(SPEC)
    overrides: dict[str, object] = {"home": str(work / "home"), "config": str(config)}
    if url:
        overrides["database_url"] = url
    settings = Settings.load({**overrides, "user": "bench"}, env={})
    service = spec_module.load(str(config)).service("big")

    def baseline() -> None:
        sha256_path(blob)
        shutil.copyfile(blob, work / "copy.bin")

    figures: dict[str, float] = {}
    figures["baseline"], _ = timed(baseline)
    store = open_store(settings)
    replica = open_store(
        Settings.load(
            {**overrides, "home": str(work / "replica"), "database_url": settings.store_url}, env={}
        ),
        migrate=False,
    )
    try:
        figures["register"], version = timed(
            lambda: versions.register(
                store,
                service,
                str(blob),
                actor="bench",
                flavor="pickle",
                trust_pickle=True,
                check=False,
            )
        )
        figures["load on a replica"], _ = timed(lambda: artifacts.materialise(replica, version))
        figures["load again"], _ = timed(lambda: artifacts.materialise(replica, version))
    finally:
        replica.dispose()
        store.dispose()
    print(f"{engine}:")
    for what, seconds in figures.items():
        ratio = (
            "" if what == "baseline" else f"  ({seconds / figures['baseline']:.1f}x the baseline)"
        )
        print(f"  {what:<18} {seconds:6.3f} s{ratio}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="size of the artifact in MiB")
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "PRODGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="a PostgreSQL server to create a scratch database on",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="prodgate-bench-") as tmp:
        root = Path(tmp)
        blob = root / "model.bin"
        with blob.open("wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1 << 20))
        print(
            f"artifact: {args.mb} MiB of random bytes, chunks of {artifacts.CHUNK_SIZE >> 10} KiB"
        )
        (root / "sqlite").mkdir()
        run("SQLite", None, blob, root / "sqlite")
        with postgres(args.pg) as url:
            if url is None:
                print(f"PostgreSQL: none answers at {args.pg}; skipped")
                return 0
            (root / "pg").mkdir()
            figures = run("PostgreSQL", url, blob, root / "pg")
    slow = [w for w in ("register", "load on a replica") if figures[w] > TARGET_S * args.mb / 50]
    if slow:
        print(f"missed: {', '.join(slow)} above {TARGET_S} s per 50 MiB on PostgreSQL")
        return 1
    print(f"met: registering and loading on a replica within {TARGET_S} s per 50 MiB on PostgreSQL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
