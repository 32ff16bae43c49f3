"""The registry's numbering of versions, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from gateway_support import write_spec
from prodgate import spec as spec_module
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
