"""Server processes under test: starting them, pinning them, and measuring their CPU.

A benchmark on a small machine measures the load generator as much as the server
unless they run on different CPUs, so :func:`choose_pinning` splits the CPUs this
process may use in two halves (wrk on the first, servers on the second) and every
process is started through ``taskset``. Without pinning, or even with it, something
else on the machine may take CPU during a run; the CPU accounting here (from
``/proc``) is how the report can say how much, instead of leaving it to guesswork.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

#: The folder of the benchmark programs (and of the pilot apps uvicorn imports).
BENCH_DIR = Path(__file__).resolve().parent.parent

#: Above this share of one CPU used by other processes during a run, the figures are
#: said to be disturbed.
NOISE_LIMIT = 0.10


# -- pinning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pinning:
    """Which CPUs wrk and the servers run on (empty: no pinning)."""

    load_cpus: str = ""
    server_cpus: str = ""
    note: str = "no CPU pinning"

    @property
    def active(self) -> bool:
        return bool(self.load_cpus)

    def load(self, argv: list[str]) -> list[str]:
        """*argv* run on the load generator's CPUs."""
        return self._wrap(self.load_cpus, argv)

    def server(self, argv: list[str]) -> list[str]:
        """*argv* run on the servers' CPUs."""
        return self._wrap(self.server_cpus, argv)

    @staticmethod
    def _wrap(cpus: str, argv: list[str]) -> list[str]:
        return ["taskset", "-c", cpus, *argv] if cpus else argv


def usable_cpus() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def choose_pinning(enabled: bool) -> Pinning:
    """Split the CPUs this process may use between wrk and the servers, if taskset exists."""
    if not enabled:
        return Pinning(note="CPU pinning disabled (--no-pin)")
    if shutil.which("taskset") is None:
        return Pinning(note="taskset not found (util-linux): wrk and the server share the CPUs")
    cpus = sorted(usable_cpus())
    if len(cpus) < 2:
        return Pinning(note="only one CPU: wrk and the server share it")
    half = len(cpus) // 2
    load = ",".join(map(str, cpus[:half]))
    server = ",".join(map(str, cpus[half:]))
    return Pinning(load, server, f"wrk pinned to CPU {load}, server to CPU {server} (taskset)")


# -- CPU accounting ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of *pid* (all its threads) so far; NaN without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> float:
    """CPU time all CPUs spent busy so far (from /proc/stat); NaN without /proc."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return math.nan
    # user nice system idle iowait irq softirq steal ...
    ticks = [int(x) for x in first[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (wrk, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_idle_check(seconds: float = 1.0) -> float:
    """How much CPU (share of one CPU) the machine uses while we do nothing."""
    before = busy_cpu_seconds()
    time.sleep(seconds)
    return (busy_cpu_seconds() - before) / seconds


# -- talking to a server ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The environment without PRODGATE_* so that prodgate runs on its defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PRODGATE_")}


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post_json(
    url: str, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer: dict[str, Any] = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:  # say why: the problem document's text
        raise RuntimeError(f"POST {url}: {exc.code}: {exc.read()[:600]!r}") from None
    return answer


def scrape(base: str) -> dict[str, float]:
    """A server's Prometheus metrics as {"name{labels}": value}."""
    _, body = http_get(base + "/metrics", timeout=10.0)
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


def metric_sum(metrics: dict[str, float], name: str, **labels: str) -> float:
    """The sum of metric *name* over the series whose labels include *labels*."""
    total = 0.0
    for key, value in metrics.items():
        metric, _, rest = key.partition("{")
        if metric == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def metric_delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return metric_sum(after, name) - metric_sum(before, name)


# -- server processes -------------------------------------------------------------------


@dataclass
class Server:
    """A server under test: its command line, where it answers, where it logs."""

    name: str
    argv: list[str]
    base: str
    ready_path: str
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait until *ready_path* answers 200."""
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=BENCH_DIR
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before it was ready; "
                    f"its log:\n{self.log_text()[-3000:]}"
                )
            with contextlib.suppress(OSError):
                status, _ = http_get(self.base + self.ready_path, timeout=1.0)
                if status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not ready after {timeout:.0f}s; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful shutdown), then SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start *server*, stop it afterwards; on an error, show the end of its log."""
    try:
        server.start()
        yield server
    except BaseException:
        print(f"--- end of the {server.name} log ---\n{server.log_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        server.stop()


def uvicorn_server(
    name: str,
    app: str,
    work: Path,
    pinning: Pinning,
    env: dict[str, str] | None = None,
    ready_path: str = "/healthz",
) -> Server:
    """A pilot app of bench/ (``module:attribute``) the way pilots run one: one uvicorn
    process, uvloop and httptools as installed, access log off, on the servers' CPUs."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(BENCH_DIR),
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    log = work / (app.partition(":")[0] + ".log")
    return Server(
        name,
        pinning.server(argv),
        f"http://127.0.0.1:{port}",
        ready_path,
        log,
        clean_env() | (env or {}),
    )
