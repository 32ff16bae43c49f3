"""The one table of settings.

Each row of :data:`TABLE` is a setting: its name, the environment variable that sets
it (``PRODGATE_*``), its type, default and help. The same table feeds
:class:`Settings` (environment first, then explicit overrides such as CLI flags),
the CLI's help text and ``docs/settings.md`` (``prodgate settings --markdown``).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from prodgate.exceptions import UsageError


@dataclass(frozen=True)
class Setting:
    name: str
    type: Callable[[str], Any]
    default: Any
    help: str

    @property
    def env(self) -> str:
        return "PRODGATE_" + self.name.upper()


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ValueError("a port is a whole number from 1 to 65535")
    return port


def _sync(text: str) -> str:
    up = text.strip().upper()
    if up not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError("must be one of OFF, NORMAL, FULL, EXTRA")
    return up


TABLE: tuple[Setting, ...] = (
    Setting("home", str, ".prodgate", "Folder holding the SQLite store and model artifacts."),
    Setting(
        "config",
        str,
        "",
        "The spec file declaring the services; empty means ./prodgate.yaml, or "
        "HOME/prodgate.yaml when there is none here.",
    ),
    Setting(
        "database_url",
        str,
        "",
        "SQLAlchemy URL of the store; empty means SQLite at HOME/prodgate.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db.",
    ),
    Setting("host", str, "127.0.0.1", "Address the gateway listens on."),
    Setting("port", _port, 8000, "Port the gateway listens on (1 to 65535)."),
    Setting("user", str, "", "Who is acting, for the audit trail; defaults to the login name."),
    Setting("max_body_bytes", int, 1_048_576, "Largest request body accepted (413 beyond)."),
    Setting("max_batch_size", int, 64, "Most rows one model call takes (per service default)."),
    Setting("max_wait_ms", float, 2.0, "Longest a row waits for its batch to fill."),
    Setting("max_queue", int, 2048, "Rows waiting for a model before requests are shed with 503."),
    Setting("record_batch_size", int, 1024, "Most audit records one store transaction commits."),
    Setting(
        "journal_retry_s",
        float,
        1.0,
        "While the store is unreachable, seconds between tries to replay the local journal.",
    ),
    Setting(
        "sqlite_synchronous",
        _sync,
        "FULL",
        "SQLite synchronous mode; FULL survives power loss, NORMAL only process crashes.",
    ),
    Setting("refresh_interval", float, 1.0, "Seconds between checks for deployment changes."),
    Setting("log_level", str, "info", "Log level of the server (debug, info, warning, error)."),
    Setting(
        "admin_token",
        str,
        "",
        "Bearer token that opens the admin HTTP API; empty keeps the admin API off.",
    ),
    Setting(
        "controller",
        _bool,
        True,
        "Run the rollout controller inside the server (one replica drives each rollout).",
    ),
    Setting("controller_interval", float, 1.0, "Seconds between rollout controller ticks."),
)

_BY_NAME = {s.name: s for s in TABLE}


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :meth:`load`; never read the environment elsewhere."""

    home: str = ".prodgate"
    config: str = ""
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    user: str = ""
    max_body_bytes: int = 1_048_576
    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 2048
    record_batch_size: int = 1024
    journal_retry_s: float = 1.0
    sqlite_synchronous: str = "FULL"
    refresh_interval: float = 1.0
    log_level: str = "info"
    admin_token: str = ""
    controller: bool = True
    controller_interval: float = 1.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Defaults, then ``PRODGATE_*`` from *env*, then *overrides* that are not None."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for s in TABLE:
            raw = env.get(s.env)
            if raw is not None and raw != "":
                try:
                    values[s.name] = s.type(raw)
                except ValueError as exc:
                    why = str(exc)
                    if s.type is int:
                        why = "must be a whole number"
                    elif s.type is float:
                        why = "must be a number"
                    raise UsageError(f"{s.env}={raw!r}: {why}") from None
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key not in _BY_NAME:
                raise UsageError(f"unknown setting {key!r}")
            values[key] = value
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    @property
    def spec_path(self) -> Path:
        """The spec to load: as set, else ./prodgate.yaml, else HOME/prodgate.yaml."""
        if self.config:
            return Path(self.config)
        here = Path("prodgate.yaml")
        if not here.exists() and (self.home_path / "prodgate.yaml").exists():
            return self.home_path / "prodgate.yaml"
        return here

    @property
    def artifacts_path(self) -> Path:
        return self.home_path / "artifacts"

    @property
    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home_path / 'prodgate.db'}"

    @property
    def actor(self) -> str:
        if self.user:
            return self.user
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"


def markdown() -> str:
    """The settings table as Markdown, for docs/settings.md."""
    lines = [
        "# Settings",
        "",
        "Every setting comes from an environment variable; the CLI flags of the same name",
        "(`--home`, `--config`, `--host`, `--port`) take precedence. Generated by",
        "`prodgate settings --markdown`.",
        "",
        "| environment variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for s in TABLE:
        default = f"`{s.default}`" if s.default != "" else "(empty)"
        if s.name == "admin_token":
            default = "(empty: off)"
        lines.append(f"| `{s.env}` | {default} | {s.help} |")
    return "\n".join(lines) + "\n"


assert {f.name for f in fields(Settings)} - {"extra"} == set(_BY_NAME), "table and class differ"
