"""``features``: feature views, loading them online, reading them back, and datasets.

``features list`` shows each view and its last load; ``features materialize VIEW``
loads a view's latest values into the online store (Redis when ``PRODGATE_REDIS_URL``
is set, else the store) with a progress bar; ``features get VIEW KEY`` reads one entity
back as the gateway would, with its freshness; ``features dataset``
(:mod:`prodgate.cli.features_dataset`) builds a point-in-time training set.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import click

from prodgate.cli.context import (
    Context,
    Group,
    ProgressBar,
    echo_json,
    pass_ctx,
    setting_options,
    table,
)
from prodgate.durations import format_duration, parse_duration
from prodgate.exceptions import UsageError
from prodgate.settings import ACTING
from prodgate.spec import Spec
from prodgate.spec.features import FeatureView

#: Entities above which materialize draws a progress bar (on a terminal's stderr).
PROGRESS_FROM = 5_000


class _FeaturesGroup(Group):
    """The group; ``dataset`` is loaded on first use (it brings the offline join)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "dataset"})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "dataset" and name not in self.commands:
            from prodgate.cli.context import add_shared_options
            from prodgate.cli.features_dataset import dataset

            add_shared_options(dataset)
            self.add_command(dataset)
        return super().get_command(ctx, name)


@click.group("features", cls=_FeaturesGroup)
def features() -> None:
    """Feature views: load them online, read them back, build training sets."""


def _view(spec: Spec, name: str) -> FeatureView:
    view = spec.views.get(name)
    if view is None:
        known = ", ".join(sorted(spec.views)) or "none"
        raise UsageError(f"no feature view {name!r}; {spec.path.name} declares: {known}")
    return view


def _when(us: int | None) -> str:
    if us is None:
        return "-"
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def since_us(text: str) -> int:
    """``--since``: an ISO 8601 time (UTC unless it says), or a duration ago (``7d``)."""
    try:
        ago = parse_duration(text, "--since")
    except UsageError:
        pass
    else:
        return int((dt.datetime.now(dt.UTC).timestamp() - ago) * 1_000_000)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: give a time (2026-11-30T00:00:00Z) or a duration ago (7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1_000_000)


def _online(ctx: Context, view: FeatureView) -> Any:
    if view.source.kind == "feast":
        from prodgate.features.feast import feast_online

        return feast_online(view, ctx.spec().path.parent)
    from prodgate.features.online import build_online

    return build_online(ctx.settings, ctx.store())


@features.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def list_(ctx: Context, as_json: bool) -> None:
    """Each feature view: its entity, source, ttl, features, the services that read it,
    and its last load into the online store."""
    from prodgate.features.materialize import last_load

    spec = ctx.spec()
    store = ctx.store()
    views: list[dict[str, Any]] = []
    for view in spec.views.values():
        load = last_load(store, view.name) if view.source.kind != "feast" else None
        readers = [
            n for n, s in spec.services.items() if any(u.view is view for u in s.features.uses)
        ]
        views.append(
            {
                "name": view.name,
                "entity": view.entity,
                "source": view.source.kind,
                "ttl_s": view.ttl_s,
                "features": {
                    f.name: {"schema": f.schema, "default": f.default, "has_default": f.has_default}
                    for f in view.features.values()
                },
                "services": readers,
                "last_load": load.as_dict() if load is not None else None,
            }
        )
    if as_json:
        echo_json({"views": views})
        return
    if not views:
        click.echo(f"{spec.path.name} declares no feature views")
        return
    rows = [
        [
            v["name"],
            v["entity"],
            v["source"],
            "-" if v["ttl_s"] is None else format_duration(v["ttl_s"]),
            ", ".join(v["features"]),
            ", ".join(v["services"]) or "-",
            _when(v["last_load"]["at_us"]) if v["last_load"] else "never",
        ]
        for v in views
    ]
    headers = ["view", "entity", "source", "ttl", "features", "services", "loaded"]
    click.echo(table(rows, headers))


@features.command()
@click.argument("view_name", metavar="VIEW")
@click.option(
    "--since",
    default=None,
    metavar="TIME|DURATION",
    help="Load source rows newer than this (ISO time, or 7d ago). Default: newer than the "
    "last run's watermark (everything, the first time).",
)
@click.option("--full", is_flag=True, help="Load every row of the source again.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@setting_options(ACTING)
@pass_ctx
def materialize(ctx: Context, view_name: str, since: str | None, full: bool, as_json: bool) -> None:
    """Load VIEW's latest values into the online store (Redis when PRODGATE_REDIS_URL is
    set, else the store), incrementally: only source rows newer than the last run's."""
    from prodgate.features.materialize import materialize as run

    if since is not None and full:
        raise UsageError("give --since or --full, not both")
    spec = ctx.spec()
    view = _view(spec, view_name)
    if view.source.kind == "feast":
        raise UsageError(
            f"feature view {view.name!r} is read from Feast's online store; load it with "
            "'feast materialize' in its repository"
        )
    online = _online(ctx, view)
    bar = ProgressBar("materializing", PROGRESS_FROM)
    try:
        load = run(
            view,
            spec.path.parent,
            online,
            ctx.store(),
            ctx.actor,
            since_us=since_us(since) if since is not None else None,
            full=full,
            progress=bar,
        )
    finally:
        bar.close()
        asyncio.run(online.close())
    if as_json:
        echo_json(load.as_dict())
        return
    where = "Redis" if load.target == "redis" else "the store"
    rows = (
        "source rows" if load.since_us is None else f"source rows newer than {_when(load.since_us)}"
    )
    click.echo(
        f"materialized {view.name} into {where}: {load.entities:,} entities from "
        f"{load.source_rows:,} {rows}; watermark {_when(load.watermark_us)}"
    )


@features.command()
@click.argument("view_name", metavar="VIEW")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def get(ctx: Context, view_name: str, keys: tuple[str, ...], as_json: bool) -> None:
    """Read KEY's values of VIEW from the online store, as the gateway would: each with
    its timestamp, whether it is fresh, stale or missing, and the defaults it takes."""
    from prodgate.features.lookup import resolve
    from prodgate.spec.features import ViewUse
    from prodgate.store.engine import now_us

    view = _view(ctx.spec(), view_name)
    online = _online(ctx, view)

    async def read() -> list[Any]:
        try:
            found: list[Any] = await online.lookup(view, list(keys))
            return found
        finally:
            await online.close()

    found = asyncio.run(read())
    use = ViewUse(view, tuple(view.features))
    now = now_us()
    out = []
    for key, hit in zip(keys, found, strict=True):
        resolved = resolve(use, hit, now)
        out.append(
            {
                **resolved.record(key),
                "values": resolved.values,
                "refused": list(resolved.refused),
            }
        )
    if as_json:
        echo_json({"view": view.name, "online": online.target, "entities": out})
        return
    rows = [
        [
            e["entity"],
            e["status"],
            _when(e["event_us"]),
            ", ".join(f"{k}={v!r}" for k, v in e["values"].items()),
            ", ".join(e.get("defaulted", [])) or "-",
            ", ".join(e["refused"]) or "-",
        ]
        for e in out
    ]
    click.echo(table(rows, [view.entity, "status", "as of", "values", "defaulted", "refused"]))


COMMANDS = [features]
