"""prodgate as a server under test: its example, its process, and its own evidence.

Benchmarks run ``prodgate serve`` on the bundled claims-triage example (built with
``prodgate demo --no-serve`` in a fresh home) on prodgate's defaults, and load it
with varied valid claims from the example's generator. Afterwards prodgate's
``/metrics`` tell what it did inside (batch sizes, group commits) and
``prodgate audit verify`` proves that every acknowledged response has a record.
"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .procs import Pinning, Server, clean_env, free_port, metric_delta
from .report import Check

SERVICE = "claims-triage"
PREDICT_PATH = f"/v1/services/{SERVICE}/predict"
#: Library versions the reports name (the gateway's and the pilots' stack).
LIBRARIES = (
    "prodgate",
    "scikit-learn",
    "numpy",
    "pandas",
    "skops",
    "uvicorn",
    "uvloop",
    "httptools",
    "starlette",
    "fastapi",
)


def prodgate_command() -> list[str]:
    """The prodgate CLI of this Python environment."""
    exe = Path(sys.executable).with_name("prodgate")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("prodgate")
    if found:
        return [found]
    return [sys.executable, "-c", "from prodgate.cli.main import main; main()"]


def build_example(prodgate: list[str], home: Path, env: Mapping[str, str] | None = None) -> None:
    """Register, approve and deploy the claims-triage example in *home*; *env* adds
    settings (``PRODGATE_DATABASE_URL``: the store is that database, not HOME's)."""
    built = subprocess.run(
        [*prodgate, "--home", str(home), "demo", "--no-serve"],
        env=clean_env() | dict(env or {}),
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        raise RuntimeError(
            f"'prodgate demo --no-serve' failed (exit {built.returncode}):\n"
            f"{built.stdout}{built.stderr}"
        )


def cli(prodgate: Sequence[str], env: Mapping[str, str], *args: str) -> str:
    """Run ``prodgate ARGS`` with the settings *env*; its output. RuntimeError on failure."""
    done = subprocess.run(
        [*prodgate, *args],
        env=clean_env() | dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"prodgate {' '.join(args)} failed (exit {done.returncode}):\n"
            f"{done.stdout}{done.stderr}"
        )
    return done.stdout


def create_key(
    prodgate: Sequence[str], env: Mapping[str, str], name: str, service: str, *limits: str
) -> tuple[str, str]:
    """``prodgate keys create NAME --scope predict:SERVICE LIMITS --json``: (id, key)."""
    out = orjson.loads(
        cli(
            prodgate,
            env,
            "keys",
            "create",
            name,
            "--scope",
            f"predict:{service}",
            *limits,
            "--json",
        )
    )
    return str(out["id"]), str(out["key"])


def model_path(home: Path) -> Path:
    """The example's skops model, as written by :func:`build_example`."""
    return home / "example" / "model.skops"


def prodgate_server(
    prodgate: list[str],
    home: Path,
    work: Path,
    pinning: Pinning,
    *,
    env: Mapping[str, str] | None = None,
    name: str = "prodgate",
    spec: Path | None = None,
) -> Server:
    """``prodgate serve`` on *home* and the example's spec (or *spec*), on prodgate's
    defaults but for the settings *env* gives; it logs to ``work/<name>.log``."""
    port = free_port()
    spec = spec or home / "example" / "prodgate.yaml"
    argv = [*prodgate, "--home", str(home), "--config", str(spec), "serve", "--port", str(port)]
    return Server(
        name,
        pinning.server(argv),
        f"http://127.0.0.1:{port}",
        "/readyz",
        work / (re.sub(r"[^\w.-]+", "-", name) + ".log"),
        clean_env() | dict(env or {}),
    )


# -- request bodies ----------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A value of a generated row as plain JSON: numpy scalars to Python, NaN to None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def claims(n: int, seed: int, *, features: bool = False) -> list[dict[str, Any]]:
    """*n* varied claims that pass the example's contract, as callers send them: the
    claim and its ``policy_id`` (the gateway adds the policy's features; load them with
    :func:`load_policies`). With *features*, the rows as the model sees them: the
    policy's features added, as the gateway adds them."""
    from prodgate.examples.claims_triage.generate import CALLER_FIELDS, FEATURES, generate

    columns = list(dict.fromkeys([*CALLER_FIELDS, *FEATURES])) if features else CALLER_FIELDS
    frame = generate(n, seed=seed)[columns]
    rows: list[dict[str, Any]] = []
    for record in frame.to_dict(orient="records"):
        row = {k: _plain(v) for k, v in record.items()}
        if row.get("customer_age") is not None:
            row["customer_age"] = int(row["customer_age"])  # the view says integer
        rows.append(row)
    return rows


def load_policies(
    prodgate: list[str], home: Path, n: int, seed: int, env: Mapping[str, str] | None = None
) -> None:
    """The policies of :func:`claims` *n*, *seed* added to the example's feature sources
    in *home* (as built by :func:`build_example`, with the same *env*) and loaded into
    its online store, so the gateway finds every claim's policy (fresh) and answers
    them as the bare endpoint does."""
    import datetime as dt

    import pandas as pd

    from prodgate.examples.claims_triage.generate import POLICY_ID, generate, policy_sources
    from prodgate.examples.claims_triage.spec import POLICIES_FILE, POLICYHOLDERS_FILE, VIEWS

    folder = home / "example"
    added = policy_sources(generate(n, seed=seed), dt.datetime.now(dt.UTC), seed=seed)
    for frame, name in zip(added, (POLICIES_FILE, POLICYHOLDERS_FILE), strict=True):
        path = folder / name
        both = pd.concat([pd.read_parquet(path), frame], ignore_index=True)
        both.drop_duplicates(subset=POLICY_ID, keep="last").to_parquet(path, index=False)
    settings = {"PRODGATE_HOME": str(home), **dict(env or {})}
    for view in VIEWS:
        cli(prodgate, settings, "features", "materialize", view, "--full")


# -- what prodgate says about a run ------------------------------------------------------


def statuses(metrics: dict[str, float]) -> dict[str, float]:
    """Predict requests prodgate counted, by HTTP status."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key.startswith("prodgate_requests_total{"):
            m = re.search(r'status="([^"]+)"', key)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0.0) + value
    return out


@dataclass
class GatewayStats:
    """What prodgate's /metrics say about the measured run (deltas)."""

    statuses: dict[str, float] = field(default_factory=dict)
    mean_batch: float = 0.0
    mean_commit_records: float = 0.0
    mean_commit_ms: float = 0.0

    def describe(self) -> str:
        return (
            f"prodgate internals during the measured run: mean model batch "
            f"{self.mean_batch:.1f} rows, mean audit group commit "
            f"{self.mean_commit_records:.1f} records in {self.mean_commit_ms:.2f} ms."
        )


def gateway_stats(before: dict[str, float], after: dict[str, float]) -> GatewayStats:
    def delta(name: str) -> float:
        return metric_delta(before, after, name)

    batches = delta("prodgate_batch_size_count")
    commits = delta("prodgate_audit_commit_records_count")
    s_before, s_after = statuses(before), statuses(after)
    return GatewayStats(
        statuses={
            k: v - s_before.get(k, 0.0) for k, v in s_after.items() if v - s_before.get(k, 0.0)
        },
        mean_batch=delta("prodgate_batch_size_sum") / batches if batches else 0.0,
        mean_commit_records=(
            delta("prodgate_audit_commit_records_sum") / commits if commits else 0.0
        ),
        mean_commit_ms=(
            1000 * delta("prodgate_audit_commit_seconds_sum") / commits if commits else 0.0
        ),
    )


@dataclass
class AuditCheck:
    verified: bool  # ``prodgate audit verify`` walked the whole chain and found it intact
    records: int
    acknowledged: int  # 2xx responses wrk counted (warm-up + measured)
    accepted_records: int | None  # inference records with status 200, if readable
    output: str

    @property
    def chain_ok(self) -> bool:
        return self.verified and self.records >= self.acknowledged

    @property
    def accepted_ok(self) -> bool:
        return self.accepted_records is None or self.accepted_records >= self.acknowledged

    @property
    def ok(self) -> bool:
        return self.chain_ok and self.accepted_ok

    @property
    def summary(self) -> str:
        """The verdict line of ``prodgate audit verify``."""
        lines = [ln for ln in self.output.splitlines() if not ln.strip().startswith("checked")]
        return lines[-1] if lines else "(no output)"

    def checks(self) -> list[Check]:
        """Every acknowledged response has a record: in the verified chain, and accepted."""
        out = [
            Check(
                "audit records (verified chain) vs 2xx responses",
                f"{self.records:,} vs {self.acknowledged:,}",
                "records >= 2xx",
                self.chain_ok,
            )
        ]
        if self.accepted_records is not None:
            out.append(
                Check(
                    "accepted inference records (status 200) vs 2xx responses",
                    f"{self.accepted_records:,} vs {self.acknowledged:,}",
                    "records >= 2xx",
                    self.accepted_ok,
                )
            )
        return out


def accepted_records(db_path: Path) -> int | None:
    """Inference records with status 200 in the SQLite store (None if unreadable).

    A closer look than the chain walk: the 2xx answers must each have an accepted record.
    """
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT count(*) FROM audit_log WHERE kind = 'inference' AND status = 200"
            ).fetchone()
    except sqlite3.Error:
        return None
    return int(row[0])


def verify_audit(prodgate: list[str], home: Path, acknowledged: int) -> AuditCheck:
    """Walk the audit chain; it must hold at least *acknowledged* records, all verified."""
    done = subprocess.run(
        [*prodgate, "--home", str(home), "audit", "verify"],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    output = (done.stdout + done.stderr).strip()
    m = re.search(r"ok: (\d+) records verified", done.stdout)
    records = int(m.group(1)) if m else 0
    accepted = accepted_records(home / "prodgate.db")
    verified = done.returncode == 0 and m is not None
    return AuditCheck(verified, records, acknowledged, accepted, output)
