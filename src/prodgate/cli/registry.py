"""``register``, ``versions`` and ``deploy``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from prodgate.cli.context import VERSION, Context, echo_json, pass_ctx, setting_options, table
from prodgate.registry import versions as registry
from prodgate.rollout import split as deployments
from prodgate.runtime.base import FLAVORS
from prodgate.settings import ACTING


def _when(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.command()
@click.argument("service")
@click.argument("path")
@click.option(
    "--data",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Training data (csv, parquet, jsonl) to fingerprint.",
)
@click.option("--note", default="", help="Free text kept with the version.")
@click.option(
    "--flavor", type=click.Choice(FLAVORS), help="Force the flavor instead of guessing from PATH."
)
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="Allow a pickle/joblib artifact or a pickled MLflow model (loading it runs its code).",
)
@click.option(
    "--trust-types",
    "trust_types",
    multiple=True,
    metavar="TYPES",
    help="Trust these types (comma-separated, fully qualified) of a skops file outside "
    "the allow-list, or 'all' the types it names; recorded on the version.",
)
@click.option(
    "--no-check", is_flag=True, help="Do not load the model and try it on the contract's example."
)
@setting_options(ACTING)
@pass_ctx
def register(
    ctx: Context,
    service: str,
    path: str,
    data: Path | None,
    note: str,
    flavor: str | None,
    trust_pickle: bool,
    trust_types: tuple[str, ...],
    no_check: bool,
) -> None:
    """Store PATH as the next immutable version of SERVICE.

    PATH is a .skops, .onnx, .joblib/.pkl file, an MLflow model folder (or a run or
    experiment folder holding one), an MLflow URI (models:/NAME/VERSION,
    runs:/RUN_ID/PATH; needs prodgate[mlflow]), or a Python callable as module:function.
    """
    spec = ctx.spec().service(service)
    version = registry.register(
        ctx.store(),
        spec,
        path,
        actor=ctx.actor,
        flavor=flavor,
        data=data,
        note=note,
        trust_pickle=trust_pickle,
        trust_types=trust_types,
        check=not no_check,
    )
    rows = f", data {version.data_fingerprint['rows']} rows" if version.data_fingerprint else ""
    click.echo(
        f"registered {service} version {version.number} ({version.flavor}, sha256 "
        f"{version.sha256[:12]}, {version.size} bytes{rows})"
    )
    typed = path if version.flavor == "callable" else str(Path(path).resolve())
    if version.source != typed:
        click.echo(f"from {version.source}")
    if version.trusted.types:
        click.echo(f"trusted types: {', '.join(version.trusted.types)}")
    with ctx.store().read() as conn:
        same = [
            v.number
            for v in registry.list_versions(conn, service)
            if (v.sha256, v.artifact) == (version.sha256, version.artifact)
            and v.number != version.number
        ]
    if same:
        listed = ", ".join(map(str, same))
        click.echo(
            f"note: the same artifact as version{'s' if len(same) > 1 else ''} {listed} "
            "(a new version needs its own evaluation and approvals)"
        )


@click.command()
@click.argument("service")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def versions(ctx: Context, service: str, as_json: bool) -> None:
    """List the registered versions of SERVICE."""
    ctx.spec().service(service)
    store = ctx.store()
    with store.read() as conn:
        found = registry.list_versions(conn, service)
        dep = deployments.get_deployment(conn, service)
    live = dep.production_version if dep else None
    if as_json:
        echo_json([{**v.as_dict(), "production": v.number == live} for v in found])
        return
    if not found:
        click.echo(f"{service} has no versions yet; run 'prodgate register {service} PATH'")
        return
    rows = [
        [
            str(v.number) + (" *" if v.number == live else ""),
            v.flavor,
            v.sha256[:12],
            str(v.data_fingerprint["rows"]) if v.data_fingerprint else "-",
            v.created_by,
            _when(v.created_at_us),
            v.note,
        ]
        for v in found
    ]
    click.echo(
        table(rows, ["VERSION", "FLAVOR", "SHA256", "DATA ROWS", "BY", "CREATED (UTC)", "NOTE"])
    )
    if live:
        click.echo("* in production")


@click.command()
@click.argument("service")
@click.argument("version", type=VERSION)
@click.option("--reason", default="", help="Why, for the audit trail.")
@setting_options(ACTING)
@pass_ctx
def deploy(ctx: Context, service: str, version: int, reason: str) -> None:
    """Send all of SERVICE's traffic to approved VERSION (gateways switch within a second)."""
    spec = ctx.spec().service(service)
    deployments.deploy(ctx.store(), spec, version, actor=ctx.actor, reason=reason)
    click.echo(f"{service}: version {version} now takes 100% of traffic")


COMMANDS = [register, versions, deploy]
