"""What every command shares: settings, the spec and the store, opened on first use."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click
import orjson

from prodgate import spec as spec_module
from prodgate.exceptions import ProdgateError
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


class Group(click.Group):
    """A click group that prints prodgate errors as one line, with no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ProdgateError as exc:
            click.echo(f"prodgate: error: {exc.detail}", err=True)
            ctx.exit(2 if exc.user_error else 1)
        except KeyboardInterrupt:
            click.echo("prodgate: interrupted", err=True)
            ctx.exit(130)


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
