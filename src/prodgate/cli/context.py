"""What every command shares: settings, the spec and the store, opened on first use."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from prodgate import spec as spec_module
from prodgate.exceptions import ProdgateError
from prodgate.identity.actor import Actor
from prodgate.registry.numbers import MAX_VERSION
from prodgate.settings import GLOBAL, Setting, Settings, options
from prodgate.spec import Spec

if TYPE_CHECKING:
    from prodgate.store.engine import Store


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

    @property
    def actor(self) -> Actor:
        """Who acts in this command (``--by``, ``PRODGATE_USER``, the login name), with
        this process's OS user and host as the action's origin."""
        return Actor.cli(self.settings.actor)

    def store(self) -> Store:
        if self._store is None:
            from prodgate.store.engine import open_store  # the store's imports, when needed

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


if TYPE_CHECKING:  # newer click types ParamType as generic; older ones cannot subscript it
    _ParamType = click.ParamType[Any, Any]
else:
    _ParamType = click.ParamType


class _SettingType(_ParamType):
    """A setting's value on the command line, read as its environment variable is."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        self.name = setting.metavar.lower() or setting.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.setting.convert(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _override(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None:
            return
        obj = ctx.find_object(Context)
        if obj is not None:
            obj.settings = obj.settings.with_(**{name: value})

    return callback


def _option_attrs(setting: Setting, expose: bool) -> dict[str, Any]:
    return {
        "type": _SettingType(setting),
        "default": None,
        "metavar": setting.metavar or None,
        "help": setting.option_help,
        "expose_value": expose,
        "callback": None if expose else _override(setting.name),
    }


def setting_option(setting: Setting, *, expose: bool = False) -> click.Option:
    """The CLI option of *setting*, generated from its row of the settings table.

    Exposed, its value reaches the command as a parameter named after the setting
    (None when not given); otherwise it overrides the setting in the command's
    :class:`Context` as it is read, so the command finds it in ``ctx.settings``.
    """
    return click.Option([setting.option, setting.name], **_option_attrs(setting, expose))


F = TypeVar("F", bound=Callable[..., Any])


def setting_options(scope: str, *, expose: bool = False) -> Callable[[F], F]:
    """Decorate a command with the CLI options of the settings of *scope*, in table order."""

    def decorate(f: F) -> F:
        for setting in reversed(options(scope)):
            f = click.option(setting.option, setting.name, **_option_attrs(setting, expose))(f)
        return f

    return decorate


def add_shared_options(command: click.Command) -> None:
    """Let the global options (``--home``, ``--config``) follow any command too.

    Given after the command (``prodgate serve --config F``), they override the ones
    given before it; the store and the spec are opened on first use, after every
    option is read.
    """
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_shared_options(sub)
        return
    names = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for setting in options(GLOBAL):
        if setting.option not in names:
            command.params.append(setting_option(setting))


class ProgressBar:
    """A progress bar on a terminal's stderr, drawn only for work of at least *least*
    steps (small work finishes before a bar would say anything)."""

    def __init__(self, label: str, least: int) -> None:
        self.label = label
        self.least = least
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            if total < self.least or not sys.stderr.isatty():
                return
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(min(done, total) - self.bar.pos)  # some totals are estimates

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


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
