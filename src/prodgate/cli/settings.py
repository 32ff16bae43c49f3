"""``settings``: what each setting is, and its value here."""

from __future__ import annotations

import click

from prodgate import settings as settings_module
from prodgate.cli.context import Context, pass_ctx, table


@click.command(name="settings")
@click.option("--markdown", is_flag=True, help="Print the table for docs/settings.md.")
@pass_ctx
def settings_command(ctx: Context, markdown: bool) -> None:
    """List every setting, its environment variable, its CLI option and its value now."""
    if markdown:
        click.echo(settings_module.markdown(), nl=False)
        return
    rows = [
        [s.env, s.option or "-", str(getattr(ctx.settings, s.name)), s.help]
        for s in settings_module.TABLE
    ]
    click.echo(table(rows, ["VARIABLE", "OPTION", "VALUE", "MEANING"]))


COMMANDS = [settings_command]
