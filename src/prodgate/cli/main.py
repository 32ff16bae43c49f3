"""The ``prodgate`` command: a click group with one thin module per noun."""

from __future__ import annotations

from typing import Any

import click

from prodgate import __version__
from prodgate.cli.context import Context, Group, add_shared_options, setting_options
from prodgate.settings import GLOBAL, Settings


@click.group("prodgate", cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@setting_options(GLOBAL, expose=True)
@click.version_option(__version__, prog_name="prodgate")
@click.pass_context
def cli(ctx: click.Context, /, **options: Any) -> None:
    """prodgate: take a model from pilot to production and keep it healthy there.

    \b
    prodgate init                                 write a prodgate.yaml to start from
    prodgate register SERVICE PATH --data FILE    store an immutable version
    prodgate deploy SERVICE VERSION               send it all traffic
    prodgate keys create app --scope predict:SVC  who may call, and how much
    prodgate serve                                gateway, metrics, audit trail
    prodgate audit verify                         prove nothing was changed or removed
    prodgate demo                                 all of it on a bundled example
    """
    settings = Settings.load(options)
    obj = Context(settings)
    ctx.obj = obj
    ctx.call_on_close(obj.close)


#: The modules of ``prodgate.cli`` that hold commands, one per noun.
_NOUNS = (
    "audit",
    "contract",
    "demo",
    "drift",
    "evaluation",
    "governance",
    "guard",
    "init",
    "keys",
    "metrics",  # after governance: its metrics command replaces the older one there
    "mock",
    "registry",
    "rollout",
    "serve",
    "settings",
    "status",
)


def _register_commands() -> None:
    import importlib

    for noun in _NOUNS:
        module = importlib.import_module(f"prodgate.cli.{noun}")
        for command in module.COMMANDS:
            add_shared_options(command)
            cli.add_command(command)


_register_commands()


def main() -> None:
    cli(prog_name="prodgate")


if __name__ == "__main__":
    main()
