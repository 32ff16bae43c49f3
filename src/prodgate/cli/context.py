"""What every command shares: settings, the spec and the store, opened on first use."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
import orjson

from prodgate import spec as spec_module
from prodgate.exceptions import ProdgateError
from prodgate.registry.versions import MAX_VERSION
from prodgate.settings import Settings
from prodgate.spec import Spec
from prodgate.store.engine import Store, open_store


@dataclass
class Context:
    settings: Settings
    _spec: Spec | None = None
    _store: Store | None = None
    cleanup: list[Any] = field(default_factory=list)

    def spec(self) -> Spec:
        if self._spec is None:
            self._spec = spec_module.load(self.settings.spec_path)
        return self._spec

    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()


pass_ctx = click.make_pass_decorator(Context)


class _Version(click.IntRange):
    """A version number argument: 1, 2, 3, ... (click's own words speak of ranges)."""

    name = "version"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"{value!r} is not a version number (1, 2, 3, ...)", param, ctx)


VERSION = _Version(1, MAX_VERSION)
#: A TCP port.
PORT = click.IntRange(1, 65535)


class Group(click.Group):
    """A click group that prints every error as one line, with no traceback.

    prodgate's own errors exit 2 for a user's mistake and 1 otherwise; click's usage
    errors (a missing argument, an unknown option) exit 2 with the usage on the same
    line.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            usage = exc.ctx.get_usage().replace("\n", " ") if exc.ctx is not None else ""
            usage = " ".join(usage.split())
            click.echo(f"prodgate: error: {exc.format_message()} ({usage})", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"prodgate: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("prodgate: aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ProdgateError as exc:
            click.echo(f"prodgate: error: {exc.detail}", err=True)
            ctx.exit(2 if exc.user_error else 1)
        except KeyboardInterrupt:
            click.echo("prodgate: interrupted", err=True)
            ctx.exit(130)


def _override(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None:
            return
        obj = ctx.find_object(Context)
        if obj is not None:
            obj.settings = obj.settings.with_(**{name: value})

    return callback


_SHARED: tuple[tuple[str, click.Path, str], ...] = (
    (
        "--home",
        click.Path(file_okay=False),
        "Folder of the store and artifacts [env PRODGATE_HOME].",
    ),
    (
        "--config",
        click.Path(dir_okay=False),
        "The spec file [env PRODGATE_CONFIG; default ./prodgate.yaml].",
    ),
)


def add_shared_options(command: click.Command) -> None:
    """Let ``--home`` and ``--config`` follow any command too (``prodgate serve --config F``).

    Given after the command, they override the ones given before it; the store and the
    spec are opened on first use, after every option is read.
    """
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_shared_options(sub)
        return
    names = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for flag, kind, help_text in _SHARED:
        if flag not in names:
            command.params.append(
                click.Option(
                    [flag],
                    type=kind,
                    expose_value=False,
                    callback=_override(flag.lstrip("-")),
                    help=help_text,
                )
            )


def echo_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain text table, columns padded to their widest cell."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
    return "\n".join(lines)
