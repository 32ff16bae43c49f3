"""Artifact bytes in the store, and the local copies loaders read, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import httpx
import pandas as pd
import pytest
import skops.io as sio
import sqlalchemy as sa
from sklearn.dummy import DummyClassifier

from gateway_support import write_spec
from prodgate import spec as spec_module
from prodgate.exceptions import ArtifactError
from prodgate.registry import approvals, artifacts, versions
from prodgate.registry.fingerprint import sha256_path
from prodgate.rollout import split
from prodgate.settings import Settings
from prodgate.spec import ServiceSpec
from prodgate.store.engine import Store, open_store
from prodgate.store.tables import artifact_chunks
from prodgate.store.tables import artifacts as artifacts_table
from server_process import serving

MiB = 1 << 20


@pytest.fixture
def claims(settings: Settings) -> ServiceSpec:
    write_spec(settings)
    return spec_module.load(settings.config).service("claims")


def _replica(settings: Settings, home: Path) -> Settings:
    """The settings of another machine: its own (empty) home, the same store."""
    return Settings.load(
        {
            "home": str(home),
            "config": settings.config,
            "database_url": settings.store_url,
            "user": "replica",
        },
        env={},
    )


def _blob(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def _register_blob(store: Store, service: ServiceSpec, path: Path) -> versions.Version:
    """Register *path* as an (unchecked) pickle: any bytes will do."""
    return versions.register(
        store, service, str(path), actor="dev", flavor="pickle", trust_pickle=True, check=False
    )


def _folder(root: Path) -> Path:
    """A folder model's shape: nested files, an empty one, a non-ASCII name."""
    (root / "sub" / "deeper").mkdir(parents=True)
    # An MLflow model read by nothing but the trust decision (ONNX: nothing to trust).
    (root / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlflow.onnx\n")
    (root / "model.bin").write_bytes(os.urandom(300_000))
    (root / "sub" / "empty.txt").write_bytes(b"")
    (root / "sub" / "deeper" / "caf\u00e9.txt").write_text("a name beyond ASCII")
    return root


def _register_folder(store: Store, service: ServiceSpec, path: Path) -> versions.Version:
    return versions.register(store, service, str(path), actor="dev", flavor="mlflow", check=False)


def _rows(store: Store) -> tuple[int, int]:
    with store.read() as conn:
        return (
            int(conn.execute(sa.select(sa.func.count()).select_from(artifacts_table)).scalar_one()),
            int(conn.execute(sa.select(sa.func.count()).select_from(artifact_chunks)).scalar_one()),
        )


def _forget(store: Store) -> None:
    """Empty the artifact tables: a store from before artifacts were stored."""
    with store.write() as conn:
        conn.execute(artifact_chunks.delete())
        conn.execute(artifacts_table.delete())


def _leftovers(folder: Path) -> list[str]:
    """Temporary copies (hidden names) left in a cache folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _same_tree(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        (a / f).read_bytes() == (b / f).read_bytes() for f in files
    )


def test_a_file_of_many_chunks_round_trips_in_bounded_memory(
    settings: Settings,
    store: Store,
    claims: ServiceSpec,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chunk = 64 * 1024
    monkeypatch.setattr(artifacts, "CHUNK_SIZE", chunk)
    blob = _blob(tmp_path / "model.pkl", 12 * MiB + 123)

    tracemalloc.start()
    try:
        version = _register_blob(store, claims, blob)
        _, registering = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        replica = open_store(_replica(settings, tmp_path / "replica"), migrate=False)
        try:
            location = Path(artifacts.materialise(replica, version))
        finally:
            replica.dispose()
        _, loading = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Neither side held the 12 MiB whole: at most the hashing buffer and a few chunks.
    assert registering < 3 * MiB, registering
    assert loading < 3 * MiB, loading
    with store.read() as conn:
        count, longest = conn.execute(
            sa.select(sa.func.count(), sa.func.max(sa.func.length(artifact_chunks.c.data)))
        ).one()
        assert artifacts.stored(conn, version.sha256) == artifacts.Stored(
            version.sha256, "model.pkl", "file", blob.stat().st_size, version.sha256, count
        )
    assert (count, longest) == (math.ceil(blob.stat().st_size / chunk), chunk)
    assert location == tmp_path / "replica" / "artifacts" / version.artifact
    assert location.read_bytes() == blob.read_bytes()
    assert location.stat().st_mode & 0o222 == 0  # read-only, as registered copies are
    assert _leftovers(location.parent) == []


def test_a_folder_round_trips_as_a_deterministic_stream(
    settings: Settings, store: Store, claims: ServiceSpec, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "model")
    version = _register_folder(store, claims, folder)
    with store.read() as conn:
        first = artifacts.stored(conn, version.sha256)
    assert first is not None
    assert first.kind == "folder"

    replica = open_store(_replica(settings, tmp_path / "replica"), migrate=False)
    try:
        location = Path(artifacts.materialise(replica, version))
    finally:
        replica.dispose()
    assert location == tmp_path / "replica" / "artifacts" / version.artifact
    assert _same_tree(folder, location)
    assert sha256_path(location)[0] == version.sha256
    assert _leftovers(location.parent) == []

    # The same folder, touched later, is the same stream.
    for p in folder.rglob("*"):
        os.utime(p, (1_000_000, 1_000_000))
    _forget(store)
    with store.write() as conn:
        assert artifacts.put(store, conn, folder, version.sha256) is True
        again = artifacts.stored(conn, version.sha256)
    assert again == first


def test_storing_is_idempotent_and_checks_what_it_reads(
    store: Store, claims: ServiceSpec, tmp_path: Path
) -> None:
    blob = _blob(tmp_path / "model.pkl", 3 * MiB)
    version = _register_blob(store, claims, blob)
    again = _register_blob(store, claims, blob)  # the same bytes: a second version
    assert (again.number, again.sha256) == (version.number + 1, version.sha256)
    assert _rows(store) == (1, 3)
    with store.write() as conn:
        assert artifacts.put(store, conn, blob, version.sha256) is False
    assert _rows(store) == (1, 3)

    other = _blob(tmp_path / "other.pkl", 1000)
    with (
        pytest.raises(ArtifactError, match="changed while it was being stored"),
        store.write() as conn,
    ):
        artifacts.put(store, conn, other, "0" * 64)
    assert _rows(store) == (1, 3)  # rolled back


def test_a_changed_cached_copy_is_fetched_again_from_the_store(
    store: Store, claims: ServiceSpec, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blob = _blob(tmp_path / "model.pkl", 2 * MiB)
    file_version = _register_blob(store, claims, blob)
    folder = _folder(tmp_path / "model")
    folder_version = _register_folder(store, claims, folder)
    cached_file = Path(file_version.location(store.settings.artifacts_path))
    cached_folder = Path(folder_version.location(store.settings.artifacts_path))

    cached_file.chmod(0o644)
    cached_file.write_bytes(b"tampered")
    (cached_folder / "sub" / "empty.txt").chmod(0o644)
    (cached_folder / "sub" / "empty.txt").write_bytes(b"not empty")
    (cached_folder / "extra").write_bytes(b"added")
    with caplog.at_level(logging.WARNING, logger="prodgate.artifacts"):
        assert artifacts.materialise(store, file_version) == str(cached_file)
        assert artifacts.materialise(store, folder_version) == str(cached_folder)
    assert cached_file.read_bytes() == blob.read_bytes()
    assert _same_tree(folder, cached_folder)
    warnings = [r.getMessage() for r in caplog.records if r.name == "prodgate.artifacts"]
    assert len(warnings) == 2
    assert all("was changed" in w and "fetching it again from the store" in w for w in warnings)
    assert _leftovers(cached_file.parent) == _leftovers(cached_folder.parent) == []

    # Missing altogether: fetched too, silently.
    cached_file.unlink()
    assert Path(artifacts.materialise(store, file_version)).read_bytes() == blob.read_bytes()


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_changed_stored_chunk_is_refused_and_leaves_nothing(
    store: Store, claims: ServiceSpec, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "CHUNK_SIZE", 64 * 1024)
    if kind == "file":
        version = _register_blob(store, claims, _blob(tmp_path / "model.pkl", MiB))
    else:
        version = _register_folder(store, claims, _folder(tmp_path / "model"))
    cached = Path(version.location(store.settings.artifacts_path))
    artifacts._discard(cached)
    with store.write() as conn:
        where = (artifact_chunks.c.sha256 == version.sha256) & (artifact_chunks.c.seq == 2)
        data = conn.execute(sa.select(artifact_chunks.c.data).where(where)).scalar_one()
        flipped = bytes([data[100] ^ 1])
        conn.execute(
            artifact_chunks.update().where(where).values(data=data[:100] + flipped + data[101:])
        )

    with pytest.raises(ArtifactError, match=f"version {version.number}: .*register it again"):
        artifacts.materialise(store, version)
    assert not cached.exists()
    assert _leftovers(cached.parent) == []

    with store.write() as conn:  # a chunk gone
        conn.execute(artifact_chunks.delete().where(artifact_chunks.c.seq == 3))
    with pytest.raises(ArtifactError, match=f"version {version.number}: chunk 3 .* is missing"):
        artifacts.materialise(store, version)
    assert not cached.exists()
    assert _leftovers(cached.parent) == []


def test_a_refused_registration_leaves_no_copy_and_no_stored_chunks(
    settings: Settings, store: Store, claims: ServiceSpec, tmp_path: Path
) -> None:
    blob = _blob(tmp_path / "model.pkl", MiB)
    with pytest.raises(ArtifactError, match=r"model\.pkl"):  # not a pickle: the check fails
        versions.register(store, claims, str(blob), actor="dev", trust_pickle=True)
    assert _rows(store) == (0, 0)
    root = settings.artifacts_path
    assert not root.exists() or list(root.rglob("*")) == []

    # The same bytes already registered: the refusal takes away neither copy.
    version = _register_blob(store, claims, blob)
    with pytest.raises(ArtifactError):
        versions.register(store, claims, str(blob), actor="dev", trust_pickle=True)
    assert _rows(store) == (1, 1)
    assert artifacts.materialise(store, version) == version.location(root)


def test_a_version_registered_before_artifacts_were_stored_is_stored_on_load(
    settings: Settings,
    store: Store,
    claims: ServiceSpec,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    version = _register_folder(store, claims, _folder(tmp_path / "model"))
    cached = Path(version.location(settings.artifacts_path))
    _forget(store)

    with caplog.at_level(logging.INFO, logger="prodgate.artifacts"):
        assert artifacts.materialise(store, version) == str(cached)
    assert "is now in the store too" in caplog.text
    with store.read() as conn:
        assert artifacts.stored(conn, version.sha256) is not None
    replica = open_store(_replica(settings, tmp_path / "replica"), migrate=False)
    try:
        assert _same_tree(cached, Path(artifacts.materialise(replica, version)))
    finally:
        replica.dispose()

    # In neither place: a clear error naming the version.
    _forget(store)
    artifacts._discard(cached)
    with pytest.raises(ArtifactError) as info:
        artifacts.materialise(store, version)
    assert info.value.detail == (
        f"version {version.number}'s artifact is neither in the store nor in HOME/artifacts "
        f"({cached}); register it again"
    )


def test_an_artifact_path_outside_the_cache_is_refused(
    store: Store, claims: ServiceSpec, tmp_path: Path
) -> None:
    version = _register_blob(store, claims, _blob(tmp_path / "model.pkl", 100))
    escaped = dataclasses.replace(version, artifact="../../elsewhere/model.pkl")
    with pytest.raises(ArtifactError, match="outside HOME/artifacts"):
        artifacts.materialise(store, escaped)


FETCH = """\
import sys, time
from pathlib import Path
from prodgate.registry import approvals, artifacts, versions
from prodgate.settings import Settings
from prodgate.store.engine import open_store

home, url, go = sys.argv[1:]
store = open_store(Settings.load({"home": home, "database_url": url}, env={}), migrate=False)
with store.read() as conn:
    wanted = versions.list_versions(conn, "claims")
while not Path(go).exists():
    time.sleep(0.001)
for version in wanted:
    print(artifacts.materialise(store, version))
"""


def test_two_processes_fetching_at_once_both_get_whole_copies(
    settings: Settings, store: Store, claims: ServiceSpec, tmp_path: Path
) -> None:
    blob = _blob(tmp_path / "model.pkl", 8 * MiB)
    folder = _folder(tmp_path / "model")
    (folder / "big.bin").write_bytes(os.urandom(8 * MiB))
    registered = [_register_blob(store, claims, blob), _register_folder(store, claims, folder)]
    home = tmp_path / "replica"
    for attempt in range(3):
        go = tmp_path / f"go{attempt}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", FETCH, str(home), settings.store_url, str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        time.sleep(1.0)  # both have started and wait for the word
        go.touch()
        outputs = [p.communicate(timeout=60) for p in procs]
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err.decode()
            assert out.decode().split() == [
                str(home / "artifacts" / v.artifact) for v in registered
            ]
        cached = [home / "artifacts" / v.artifact for v in registered]
        assert cached[0].read_bytes() == blob.read_bytes()
        assert _same_tree(folder, cached[1])
        assert _leftovers(cached[0].parent) == _leftovers(cached[1].parent) == []
        for path in cached:
            artifacts._discard(path)


TWO_SERVICES = """\
services:
  claims:
    owner: {name: Claims Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input: {type: object, required: [amount], properties: {amount: {type: number}}}
  triage:
    owner: {name: Claims Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input: {type: object, required: [amount], properties: {amount: {type: number}}}
"""


def _mlflow_folder(model: DummyClassifier, path: Path) -> Path:
    # mlflow warns about its own type hints; that is mlflow's business.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
        import mlflow.sklearn

        mlflow.sklearn.save_model(model, path, pip_requirements=["scikit-learn"])
    return path


def test_a_replica_with_only_the_store_url_serves_every_deployed_version(
    settings: Settings, tmp_path: Path
) -> None:
    # Machine A registers a skops file and an MLflow folder, approves and deploys them.
    Path(settings.config).write_text(TWO_SERVICES)
    spec = spec_module.load(settings.config)
    frame = pd.DataFrame({"amount": [1.0, 2.0, 3.0]})
    prior = DummyClassifier(strategy="prior").fit(frame, ["routine", "adjuster", "adjuster"])
    sio.dump(prior, tmp_path / "claims.skops")
    constant = DummyClassifier(strategy="constant", constant="routine")
    folder = _mlflow_folder(
        constant.fit(frame, ["routine", "adjuster", "adjuster"]), tmp_path / "m"
    )
    store = open_store(settings)
    try:
        for name, path in (("claims", tmp_path / "claims.skops"), ("triage", folder)):
            service = spec.service(name)
            version = versions.register(store, service, str(path), actor="dev")
            approvals.approve(
                store, service, version.number, by="approver", override_gates=True, reason="test"
            )
            split.deploy(store, service, version.number, actor="dev")
    finally:
        store.dispose()
    artifacts._discard(settings.artifacts_path)  # nothing of A's folder is left to share

    # Machine B: its own empty home and a copy of the spec; the store's URL, nothing else.
    b = tmp_path / "machine-b"
    b.mkdir()
    (b / "prodgate.yaml").write_text(TWO_SERVICES)
    replica = Settings.load(
        {
            "home": str(b / "home"),
            "config": str(b / "prodgate.yaml"),
            "database_url": settings.store_url,
        },
        env={},
    )
    with serving(replica) as (_, base):
        for name, answer in (("claims", "adjuster"), ("triage", "routine")):
            r = httpx.post(f"{base}/v1/services/{name}/predict", json={"inputs": {"amount": 2.0}})
            assert r.status_code == 200, r.text
            assert (r.json()["version"], r.json()["prediction"]) == (1, answer)
        assert httpx.get(base + "/readyz").json()["services"] == {"claims": 1, "triage": 1}
    fetched = sorted(p.name for p in (b / "home" / "artifacts").glob("*/*/*"))
    assert fetched == ["claims.skops", "m"]
