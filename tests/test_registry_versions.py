"""The registry's numbering of versions, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gateway_support import write_spec
from prodgate import spec as spec_module
from prodgate.exceptions import ArtifactError
from prodgate.registry import versions
from prodgate.settings import Settings
from prodgate.store.engine import Store


def test_concurrent_registrations_get_distinct_numbers(settings: Settings, store: Store) -> None:
    write_spec(settings)
    service = spec_module.load(settings.config).service("claims")
    start = threading.Barrier(6)
    numbers: list[int] = []
    errors: list[Exception] = []

    def register(i: int) -> None:
        start.wait()
        try:
            v = versions.register(store, service, "fixture_models:claims", actor=f"dev{i}")
            numbers.append(v.number)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]
    with store.read() as conn:
        listed = versions.list_versions(conn, "claims")
    assert sorted(v.number for v in listed) == [1, 2, 3, 4, 5, 6]


def test_a_refused_model_leaves_no_copy_and_names_the_users_file(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    write_spec(settings)
    service = spec_module.load(settings.config).service("claims")
    bogus = tmp_path / "holdout.csv"
    bogus.write_text("amount,category\n1,auto\n")
    with pytest.raises(ArtifactError) as info:
        versions.register(store, service, str(bogus), actor="dev", flavor="skops")
    assert str(bogus) in info.value.detail
    assert str(settings.artifacts_path) not in info.value.detail
    artifacts = settings.artifacts_path
    left = list(artifacts.rglob("*")) if artifacts.exists() else []
    assert left == []
    with store.read() as conn:
        assert versions.list_versions(conn, "claims") == []
