"""Running ``prodgate serve`` as a real process for tests that need real HTTP."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from prodgate.settings import Settings

TESTS = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(
    settings: Settings,
    timeout: float = 30.0,
    env_extra: dict[str, str] | None = None,
    python: str = sys.executable,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start ``prodgate serve`` for *settings*; yield the process and its base URL.

    The data plane is open (``PRODGATE_AUTH=off``) unless *env_extra* says otherwise:
    the tests that use this are about durability and serving, not access. *python* is
    the interpreter that runs it (another environment's, for Feast)."""
    port = free_port()
    env = dict(os.environ)
    env["PRODGATE_AUTH"] = "off"
    env.update(env_extra or {})
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["PRODGATE_DATABASE_URL"] = settings.database_url
    env["PRODGATE_REFRESH_INTERVAL"] = "0.2"
    cmd = [
        python,
        "-m",
        "prodgate.cli.main",
        "--home",
        settings.home,
        "--config",
        settings.config,
        "serve",
        "--port",
        str(port),
    ]
    log = open(Path(settings.home).parent / f"server-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {Path(log.name).read_text()}")
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready: {Path(log.name).read_text()}")
            time.sleep(0.1)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
