"""prodgate as several replicas: a database for the run, Redis, replica processes, the CLI.

A replicated benchmark runs real ``prodgate serve`` processes on one PostgreSQL
database created for the run (and dropped after it), each with its own empty HOME and
its own copy of the spec (no folder is shared), limits on one Redis under a prefix of
the run's own, and drives the control plane with the real CLI against the same
database. :class:`RedisServer` is a private ``redis-server`` on a free port, for
scenarios that kill and restart it.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from .gateway import prodgate_server
from .procs import Pinning, Server, busy_cpu_seconds, cpu_seconds, free_port, usable_cpus


def unique_name(prefix: str) -> str:
    """A name no other run uses: *prefix* and 8 hex digits."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server at *admin_url* (any database there that we
    may connect to), dropped afterwards; yields its URL. RuntimeError if none answers."""
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = unique_name("prodgate_bench_")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        raise RuntimeError(f"PostgreSQL does not answer at {admin_url}: {exc}") from None
    try:
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_version(url: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar_one()).split()[0]
    finally:
        engine.dispose()


def admissions(url: str, key_id: str) -> list[tuple[float, float]]:
    """When the gateways admitted the key's requests, as their audit records tell:
    (arrival, decision) in ``time.time()`` seconds, for each inference record with
    status 200 caused by key *key_id*. A record's ``ts_us`` is taken when the model
    has answered and its ``latency_ms`` counts from the request's arrival; the limit
    check lies between the two."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    query = sa.text(
        "SELECT ts_us, latency_ms, payload FROM audit_log "
        "WHERE kind = 'inference' AND action = 'predict' AND status = 200 "
        "AND payload LIKE :pattern"
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(query, {"pattern": f'%"key":"{key_id}"%'}).all()
    finally:
        engine.dispose()
    out = []
    for ts_us, latency_ms, payload in rows:
        if orjson.loads(payload).get("key") == key_id:
            decided = ts_us / 1e6
            out.append((decided - (latency_ms or 0.0) / 1000.0, decided))
    return sorted(out)


def wait_for_revocation(url: str, key_id: str, timeout: float, every: float = 0.01) -> float:
    """Poll the store until key *key_id* reads as revoked; the earliest moment its
    revocation can have been committed (``time.time()``): the start of the last read
    that did not see it. NaN if it was not seen within *timeout* seconds."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    query = sa.text("SELECT revoked_at_us FROM api_keys WHERE id = :id")
    deadline = time.time() + timeout
    last_unseen = time.time()
    try:
        with engine.connect() as conn:
            while time.time() < deadline:
                before = time.time()
                if conn.execute(query, {"id": key_id}).scalar() is not None:
                    return last_unseen
                last_unseen = before
                time.sleep(every)
    finally:
        engine.dispose()
    return float("nan")


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)


def redis_version(url: str) -> str:
    client = redis_client(url)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def redis_cpu_seconds(url: str) -> float:
    """The CPU time the Redis server at *url* has used so far (INFO cpu: user + system)."""
    client = redis_client(url)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every Redis key under *prefix*; how many there were."""
    client = redis_client(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


class RedisServer:
    """A private ``redis-server`` on a free port: no persistence, so a restart is empty
    (as a Redis that lost its memory is); :meth:`kill` is SIGKILL, not a shutdown."""

    def __init__(
        self,
        work: Path,
        port: int | None = None,
        wrap: Callable[[list[str]], list[str]] | None = None,
    ) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.exe = exe
        self.wrap = wrap or (lambda argv: argv)  # e.g. Pinning.load: taskset to some CPUs
        self.port = port or free_port()
        self.log = work / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> float:
        """Start it and wait until it answers PING; the time (``time.time()``) it did."""
        argv = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--daemonize", "no"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.wrap(argv), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.log}")
            with contextlib.suppress(Exception):
                client = redis_client(self.url)
                try:
                    if client.ping():
                        return time.time()
                finally:
                    client.close()
            time.sleep(0.01)
        raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout:g} s")

    def kill(self) -> float:
        """SIGKILL it and wait until it is gone; the time (``time.time()``) it was."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        return time.time()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class CpuMeter:
    """The CPU the machine, the replicas and this process (the client) used since it was
    made: on a shared machine, what tells how disturbed a scenario was."""

    def __init__(self, servers: Sequence[Server]) -> None:
        self.pids = [s.pid for s in servers]
        self.wall = time.monotonic()
        self.machine = busy_cpu_seconds()
        self.replicas = sum(cpu_seconds(p) for p in self.pids)
        self.client = time.process_time()

    def describe(self) -> str:
        wall = time.monotonic() - self.wall
        machine = (busy_cpu_seconds() - self.machine) / wall
        replicas = (sum(cpu_seconds(p) for p in self.pids) - self.replicas) / wall
        client = (time.process_time() - self.client) / wall
        rest = machine - replicas - client
        return (
            f"CPU over {wall:.0f} s, as shares of one CPU: the machine {machine:.0%} "
            f"(of {len(usable_cpus()) * 100}%), the replicas {replicas:.0%}, the client "
            f"{client:.0%}, everything else (PostgreSQL, Redis, other processes) {rest:.0%}"
        )


# -- the CLI and the replicas ----------------------------------------------------------------


def replica(
    prodgate: list[str],
    spec: Path,
    work: Path,
    index: int,
    env: Mapping[str, str],
    pinning: Pinning,
    label: str = "replica",
) -> Server:
    """A ``prodgate serve`` with its own new, empty HOME and its own copy of *spec*
    (under ``work/<label>-<index>/``), on the settings *env* and a free port."""
    name = f"{label}-{index}"
    folder = work / name
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "home").mkdir(parents=True)
    own_spec = folder / "prodgate.yaml"
    shutil.copyfile(spec, own_spec)
    return prodgate_server(
        prodgate, folder / "home", work, pinning, env=env, name=name, spec=own_spec
    )


@contextlib.contextmanager
def running_all(servers: Sequence[Server]) -> Iterator[Sequence[Server]]:
    """Start *servers* side by side (each ready on its probe), stop them all afterwards;
    on an error, show the end of each one's log."""
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            for started in [pool.submit(s.start) for s in servers]:
                started.result()
        yield servers
    except BaseException:
        for s in servers:
            print(f"--- end of the {s.name} log ---\n{s.log_text()[-2000:]}", flush=True)
        raise
    finally:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda s: s.stop(), servers))
