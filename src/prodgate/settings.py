"""The one table of settings.

Each setting is declared once, as a field of :class:`Settings` made with
:func:`_setting`: its name (the field's), its type, default and help, and where the
command line takes it. :data:`TABLE` is read off those fields and feeds everything
else: :meth:`Settings.load` (environment ``PRODGATE_*`` first, then explicit overrides
such as CLI options), the CLI's shared options (generated in ``prodgate.cli.context``
with their help naming the variable and the default), ``prodgate settings`` and
``docs/settings.md`` (``prodgate settings --markdown``). Adding a setting is one field.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from prodgate.exceptions import SpecError, UsageError
from prodgate.identity.actor import login_name

#: Where a setting's CLI option is taken: by ``prodgate`` and after every command,
#: by ``serve`` and ``demo``, or by the commands that act (and are recorded as someone's action).
GLOBAL = "global"
SERVE = "serve"
ACTING = "acting"


@dataclass(frozen=True)
class Setting:
    """One row of the table."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    option: str = ""
    """The CLI option that sets it (``--home``), or empty when only the environment does."""
    scope: str = ""
    """Which commands take :attr:`option`: :data:`GLOBAL`, :data:`SERVE` or :data:`ACTING`."""
    metavar: str = ""
    shown: str = ""
    """How the default reads to people when the value alone would not say (empty ones)."""

    @property
    def env(self) -> str:
        return "PRODGATE_" + self.name.upper()

    @property
    def default_text(self) -> str:
        """The default as help and docs show it."""
        if self.shown:
            return self.shown
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default) if self.default != "" else "empty"

    @property
    def option_help(self) -> str:
        """The help of the setting's CLI option: what it is, its variable, its default."""
        return f"{self.help} [env {self.env}; default {self.default_text}]"

    def convert(self, text: str) -> Any:
        """*text* (from the environment or the command line) as the setting's value.

        Raises ValueError saying what the value must be.
        """
        try:
            return self.parse(text)
        except ValueError as exc:
            if self.parse is int:
                raise ValueError("must be a whole number") from None
            if self.parse is float:
                raise ValueError("must be a number") from None
            raise ValueError(str(exc)) from None


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false (1, yes, on / 0, no, off)")


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


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        low = text.strip().lower()
        if low not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return low

    return parse


def _redis_url(text: str) -> str:
    url = text.strip()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("a Redis URL starts with redis://, rediss:// or unix://")
    return url


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a number above 0")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError("must be a number, 0 or more")
    return value


def _folder(text: str) -> str:
    if Path(text).expanduser().is_file():
        raise ValueError(f"{text} is a file, not a folder")
    return text


def _file(text: str) -> str:
    if Path(text).expanduser().is_dir():
        raise ValueError(f"{text} is a folder, not a file")
    return text


def _window(text: str) -> float:
    from prodgate.durations import parse_duration

    try:
        seconds = parse_duration(text, "a window")
    except UsageError as exc:
        raise ValueError(exc.detail) from None
    if seconds < 1:
        raise ValueError("a window is at least 1s")
    return seconds


def _name(text: str) -> str:
    name = text.strip()
    if not name:
        raise ValueError("needs a name")
    if not name.isprintable():
        raise ValueError("a name must not contain control characters")
    return name


#: The parser of a field whose declaration names none, by its annotation.
_PARSERS: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float, "bool": _bool}
_ROW = "prodgate.setting"


@dataclass(frozen=True)
class _Row:
    help: str
    parse: Callable[[str], Any] | None
    option: str
    scope: str
    metavar: str
    shown: str


def _setting(
    default: Any,
    help: str,
    *,
    parse: Callable[[str], Any] | None = None,
    option: str = "",
    scope: str = "",
    metavar: str = "",
    shown: str = "",
) -> Any:
    """A field of :class:`Settings` that is a row of :data:`TABLE`."""
    row = _Row(help, parse, option, scope, metavar, shown)
    return field(default=default, metadata={_ROW: row})


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :meth:`load`; never read the environment elsewhere."""

    home: str = _setting(
        ".prodgate",
        "Folder holding the SQLite store and model artifacts.",
        parse=_folder,
        option="--home",
        scope=GLOBAL,
        metavar="DIR",
        shown=".prodgate beside the spec found here or above, else ./.prodgate",
    )
    config: str = _setting(
        "",
        "The spec file declaring the services.",
        parse=_file,
        option="--config",
        scope=GLOBAL,
        metavar="FILE",
        shown="prodgate.yaml here or in the nearest folder above, else HOME/prodgate.yaml",
    )
    database_url: str = _setting(
        "",
        "URL of the store: postgresql://user@host/db (postgres://, postgresql+psycopg:// "
        "and postgresql+psycopg2:// too, all on psycopg 3), sqlite:///path/to/file.db, or "
        "a path to a .db file.",
        shown="SQLite at HOME/prodgate.db",
    )
    host: str = _setting(
        "127.0.0.1", "Address the gateway listens on.", option="--host", scope=SERVE
    )
    port: int = _setting(
        8000,
        "Port the gateway listens on (1 to 65535).",
        parse=_port,
        option="--port",
        scope=SERVE,
    )
    user: str = _setting(
        "",
        "Who acts, as the audit trail records it: a declared name, not a proof of identity.",
        parse=_name,
        option="--by",
        scope=ACTING,
        metavar="NAME",
        shown="the login name",
    )
    max_body_bytes: int = _setting(1_048_576, "Largest request body accepted (413 beyond).")
    max_batch_size: int = _setting(64, "Most rows one model call takes (per service default).")
    max_wait_ms: float = _setting(2.0, "Longest a row waits for its batch to fill.")
    max_queue: int = _setting(2048, "Rows waiting for a model before requests are shed with 503.")
    record_batch_size: int = _setting(1024, "Most audit records one store transaction commits.")
    journal_retry_s: float = _setting(
        1.0, "While the store is unreachable, seconds between tries to replay the local journal."
    )
    sqlite_synchronous: str = _setting(
        "FULL",
        "SQLite synchronous mode; FULL survives power loss, NORMAL only process crashes.",
        parse=_sync,
    )
    refresh_interval: float = _setting(
        0.5,
        "Seconds between checks for changes (splits, kill switches, keys) made by any replica "
        "or command.",
        parse=_positive,
    )
    log_level: str = _setting("info", "Log level of the server (debug, info, warning, error).")
    otel: str = _setting(
        "",
        "OpenTelemetry spans and GenAI metrics, exported over OTLP/HTTP as the standard "
        "OTEL_* variables configure it: on or off. Unset, it is on when "
        "OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; "
        "OTEL_SDK_DISABLED=true turns it off whatever this says (docs/telemetry.md).",
        parse=_choice("on", "off"),
        shown="off, unless an OTLP endpoint is set",
    )
    admin_token: str = _setting(
        "",
        "Bootstrap key: a bearer token with every scope (admin), for before any API key "
        "exists; empty: none.",
        shown="empty: none",
    )
    auth: str = _setting(
        "keys",
        "Who may call: keys (an API key with the route's scope; a service whose spec says "
        "public: true is open for predict) or off (the data plane open to anyone; the admin "
        "API still needs a key or the admin token).",
        parse=_choice("keys", "off"),
    )
    redis_url: str = _setting(
        "",
        "Redis for limits exact across replicas (redis://host:6379/0), and the online "
        "feature store; empty: limits are kept in this process's memory, features in the "
        "store.",
        parse=_redis_url,
        shown="empty: in memory",
    )
    redis_prefix: str = _setting(
        "prodgate:",
        "Prefix of every Redis key prodgate writes, so several deployments can share a Redis.",
    )
    redis_timeout_ms: float = _setting(
        100.0,
        "Longest wait for Redis before a limit check takes the fail mode.",
        parse=_positive,
    )
    limit_fail: str = _setting(
        "closed",
        "What requests that have limits get while Redis is unreachable: closed (429 with "
        "Retry-After) or open (let through, unlimited).",
        parse=_choice("closed", "open"),
    )
    features_online: str = _setting(
        "auto",
        "Where feature views' latest values are kept for the gateway's lookups: redis (the "
        "Redis of PRODGATE_REDIS_URL), store (the store's feature_values table), or auto "
        "(Redis when PRODGATE_REDIS_URL is set, else the store). Views with a feast source "
        "are read from Feast's own online store.",
        parse=_choice("auto", "redis", "store"),
    )
    controller: bool = _setting(
        True, "Run the rollout controller inside the server (one replica drives each rollout)."
    )
    controller_interval: float = _setting(1.0, "Seconds between rollout controller ticks.")
    monitor: bool = _setting(
        True,
        "Count production windows (drift, data quality, predictions) in the gateway and "
        "store them with the audit records' group commits.",
    )
    monitor_window: float = _setting(
        300.0,
        "Length of a production window (90s, 5m, 1h) for services without a monitor: "
        "section in the spec (one with it has its monitor.window, default 5m).",
        parse=_window,
        shown="5m",
    )
    monitor_flush: float = _setting(
        5.0,
        "Most seconds between writes of this replica's running window totals to the store.",
        parse=_positive,
    )
    monitor_replica: str = _setting(
        "",
        "This replica's name in the stored windows (each replica writes its own rows).",
        shown="the host name, process id and a random suffix",
    )
    monitor_interval: float = _setting(
        10.0,
        "Seconds between evaluations of the services' alert rules in the server (0: none "
        "here; on a shared store one replica wins each transition).",
        parse=_non_negative,
    )
    review_explain_interval: float = _setting(
        10.0,
        "Seconds between the server's passes over review items waiting for an explanation "
        "(0: none here, e.g. on all replicas but one; `review show` explains on demand).",
        parse=_non_negative,
    )
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Defaults, then ``PRODGATE_*`` from *env*, then *overrides* that are not None.

        A home set nowhere is the ``.prodgate`` folder beside the spec found by looking
        upward from the current folder (see :func:`find_spec`): a command run in a
        subfolder of a project uses the project's store, as it uses its spec.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for s in TABLE:
            raw = env.get(s.env)
            if raw is not None and raw != "":
                try:
                    values[s.name] = s.convert(raw)
                except ValueError as exc:
                    raise UsageError(f"{s.env}={raw!r}: {exc}") from None
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key not in _BY_NAME:
                raise UsageError(f"unknown setting {key!r}")
            values[key] = value
        here = _cwd()
        if "home" not in values and here is not None:
            found = find_spec(here)
            if found is not None and found.parent != here:
                values["home"] = str(found.parent / _BY_NAME["home"].default)
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    @property
    def spec_path(self) -> Path:
        """The spec to load: as set; else the nearest prodgate.yaml from the current folder
        upward; else HOME/prodgate.yaml. SpecError, saying where it looked, if none is."""
        if self.config:
            return Path(self.config)
        here = _cwd()
        found = find_spec(here) if here is not None else None
        if found is not None:
            return Path(SPEC_NAME) if found.parent == here else found
        at_home = self.home_path / SPEC_NAME
        if at_home.is_file():
            return at_home
        looked = (
            f"in {', '.join(str(d) for d in search_path(here))} (here and above)"
            if here is not None
            else "here (the current folder is gone)"
        )
        raise SpecError(
            f"no {SPEC_NAME} {looked} nor in HOME {self.home_path}; "
            "run 'prodgate init' to write one here, or give --config FILE"
        )

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
        """The name actions are recorded under: ``user`` (``--by``), else the login name."""
        return self.user or login_name()


SPEC_NAME = "prodgate.yaml"


def search_path(start: Path) -> list[Path]:
    """The folders the spec is looked for in: *start*, then each folder above it."""
    start = start.absolute()
    return [start, *start.parents]


def find_spec(start: Path) -> Path | None:
    """The nearest prodgate.yaml in *start* or a folder above it (as git finds .git)."""
    for folder in search_path(start):
        candidate = folder / SPEC_NAME
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # a folder we may not look into: look further up
            continue
    return None


def _cwd() -> Path | None:
    try:
        return Path.cwd()
    except OSError:  # the current folder was removed
        return None


def _table() -> tuple[Setting, ...]:
    rows = []
    for f in fields(Settings):
        row = f.metadata.get(_ROW)
        if row is None:
            continue
        parse = row.parse or _PARSERS[str(f.type)]
        rows.append(
            Setting(
                f.name, parse, f.default, row.help, row.option, row.scope, row.metavar, row.shown
            )
        )
    return tuple(rows)


#: Every setting, in the order :class:`Settings` declares them.
TABLE: tuple[Setting, ...] = _table()
_BY_NAME = {s.name: s for s in TABLE}


def options(scope: str) -> tuple[Setting, ...]:
    """The settings whose CLI option the commands of *scope* take."""
    return tuple(s for s in TABLE if s.option and s.scope == scope)


_WHERE = {GLOBAL: "any command", SERVE: "`serve`, `demo`", ACTING: "commands that act"}


def markdown() -> str:
    """The settings table as Markdown, for docs/settings.md."""
    given = "; ".join(
        ", ".join(f"`{s.option}`" for s in options(scope)) + f" ({where})"
        for scope, where in _WHERE.items()
        if options(scope)
    )
    intro = (
        "Every setting comes from an environment variable; a CLI option, where there is one, "
        f"takes precedence: {given}. Generated by `prodgate settings --markdown`."
    )
    lines = [
        "# Settings",
        "",
        *textwrap.wrap(intro, 88, break_on_hyphens=False),
        "",
        "| environment variable | CLI option | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for s in TABLE:
        default = f"`{s.default_text}`" if not s.shown and s.default != "" else s.default_text
        option = f"`{s.option}`" if s.option else ""
        lines.append(f"| `{s.env}` | {option} | {default} | {s.help} |")
    return "\n".join(lines) + "\n"
