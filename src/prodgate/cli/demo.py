"""``demo``: the bundled example, built, registered, deployed and served.

Two services: claims-triage (a scikit-learn classifier) and claims-letter (an LLM
service over the bundled mock LLM, which the demo runs in a background thread on a
free port and writes into the spec's providers).
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
import orjson

from prodgate.cli.context import Context, pass_ctx, setting_options
from prodgate.cli.serve import run_server
from prodgate.exceptions import UsageError
from prodgate.settings import SERVE

if TYPE_CHECKING:
    from prodgate.pipeline.gateway import Gateway
    from prodgate.store.engine import Store

SERVICE = "claims-triage"
LETTER = "claims-letter"


def invoked_as() -> str:
    """How prodgate was run (``.venv/bin/prodgate`` under make), so shown commands paste."""
    argv0 = Path(sys.argv[0])
    return str(argv0) if argv0.name == "prodgate" else "prodgate"


def curl_line(base: str, inputs: dict[str, object], token: str, service: str = SERVICE) -> str:
    body = orjson.dumps({"inputs": inputs}).decode()
    return (
        f"curl -s -X POST {base}/v1/services/{service}/predict "
        f"-H 'authorization: Bearer {token}' "
        f"-H 'content-type: application/json' -d {shlex.quote(body)}"
    )


def openai_snippet(base: str, message: str, token: str) -> str:
    """Python with the official ``openai`` SDK, asking claims-letter through prodgate."""
    return (
        "from openai import OpenAI\n"
        f"client = OpenAI(base_url={base + '/v1'!r}, api_key={token!r})\n"
        "answer = client.chat.completions.create(\n"
        f"    model={LETTER!r}, messages=[{{'role': 'user', 'content': {message!r}}}]\n"
        ")\n"
        "print(answer.choices[0].message.content)"
    )


DEMO_KEY = "demo"


def demo_key(store: Store, actor: str) -> str:
    """A fresh key for the demo's curl line (the one a run before made is revoked:
    a key is shown once, so each run makes its own)."""
    from prodgate.identity import keys

    for old in keys.list_keys(store):
        if old.name == DEMO_KEY:
            keys.revoke(store, old.id, actor=actor, reason="a new demo run")
    issued = keys.create(
        store,
        DEMO_KEY,
        scopes=[
            f"predict:{SERVICE}",
            f"feedback:{SERVICE}",
            f"predict:{LETTER}",
            f"feedback:{LETTER}",
            "audit:read",
        ],
        actor=actor,
        owner=actor,
    )
    return issued.token


@click.command()
@setting_options(SERVE)
@click.option("--no-serve", is_flag=True, help="Build, register and deploy, then exit.")
@click.option(
    "--story",
    is_flag=True,
    help="Tell the governance stories without a person, then exit: claims-triage (v2 "
    "refused, v3 canaried and promoted, v4 rolled back), then claims-letter (a cheaper "
    "model refused on fraud signals, a better prompt promoted through a provider outage, "
    "then its guard rails: an injection blocked, a card redacted, a leak caught mid-stream).",
)
@pass_ctx
def demo(ctx: Context, no_serve: bool, story: bool) -> None:
    """Build the example under HOME/example and serve it on SQLite.

    The first run generates synthetic claims, trains a scikit-learn model, writes
    its prodgate.yaml, registers the model as version 1, evaluates it on the holdout,
    has two people approve it and deploys it, then loads the policy feature views it
    reads (every run, stamped as of now); the same for the claims-letter prompt
    over the bundled mock LLM, which runs as long as the demo does. Later runs reuse
    all of that. It prints a curl line for each service and an openai SDK snippet to
    try once the gateway is up. With --story it tells the whole governance story
    instead (use a fresh --home).
    """
    from prodgate import spec as spec_module
    from prodgate.examples.claims_letter import build as letter_build
    from prodgate.examples.claims_letter import story as letter_story
    from prodgate.examples.claims_letter.spec import EXAMPLE, point_at_mock
    from prodgate.examples.claims_triage.build import build, example_request, load_features
    from prodgate.examples.claims_triage.story import ensure_v1, tell
    from prodgate.llm.mock import load_config, running_mock
    from prodgate.registry import versions

    settings = ctx.settings
    prog = invoked_as()
    directory = settings.home_path / "example"
    started = time.perf_counter()
    click.echo(f"prodgate demo: building the claims-triage example in {directory} ...")
    result = build(directory)
    if result.built:
        click.echo(
            f"  wrote {', '.join(result.built)} in {time.perf_counter() - started:.1f}s; "
            f"holdout accuracy {result.accuracy:.1%} overall, "
            f"{result.accuracy_high_value:.1%} on claims >= 20,000"
        )
    else:
        click.echo("  already built; reusing it")
    letter = letter_build.build(directory / "letter")

    # Commands run with the same --home find the example's spec without --config.
    link = settings.home_path / "prodgate.yaml"
    if link.is_symlink() and not link.exists():  # left dangling by a removed example
        link.unlink()
    if not link.exists():
        link.symlink_to(result.spec.relative_to(settings.home_path))
    settings = settings.with_(config=str(result.spec))
    ctx.settings = settings
    # claims-letter's providers: the mock LLM, for as long as the demo runs.
    with running_mock(load_config(letter.mock_config)) as mock:
        point_at_mock(result.spec, mock.url)
        click.echo(f"  the mock LLM behind {LETTER} answers at {mock.url}")
        spec = spec_module.load(result.spec)
        store = ctx.store()
        if story:
            with store.read() as conn:
                told = any(len(versions.list_versions(conn, s)) > 1 for s in (SERVICE, LETTER))
            if told:
                raise UsageError(
                    f"the story has already run in {settings.home}; give a fresh --home"
                )
            click.echo("prodgate demo --story: the claims stories, told without a person")
            ok = tell(settings, store, result, click.echo)
            ok = letter_story.tell(settings, store, letter, mock, click.echo) and ok
            click.echo(
                f"\nSee it all: {prog} --home {settings.home} history {SERVICE}\n"
                f"       and: {prog} --home {settings.home} history {LETTER}; "
                f"{prog} --home {settings.home} metrics {LETTER}; "
                f"{prog} --home {settings.home} status\n"
                + ("The story ran as told." if ok else "The story did NOT run as told.")
            )
            raise SystemExit(0 if ok else 1)
        echo = click.echo
        echo(f"{SERVICE}:")
        ensure_v1(store, spec.service(SERVICE), result, echo)
        # Callers send a claim's policy_id; the policy's features come from its views.
        load_features(settings, store, spec, ctx.actor, echo=echo)
        echo(f"{LETTER}:")
        letter_story.ensure_v1(store, spec.service(LETTER), letter, echo)
        base = f"http://{settings.host}:{settings.port}"
        token = demo_key(store, ctx.actor)
        line = curl_line(base, example_request(), token)
        letter_line = curl_line(base, EXAMPLE, token, LETTER)
        if no_serve:
            click.echo(
                f"ready; serve it with: {prog} --home {settings.home} demo "
                f"(which starts the mock LLM again)\n{line}\n{letter_line}"
            )
            return
        snippet = openai_snippet(base, str(EXAMPLE["message"]), token)

        def announce(gateway: Gateway) -> None:
            click.echo(
                f"\nprodgate is serving {SERVICE} and {LETTER} at {base} "
                f"(store {store.display_url}).\n"
                f"Try it:\n\n  {line}\n\n  {letter_line}\n\n"
                "Or the LLM service through the openai SDK (pip install openai):\n\n"
                + "\n".join(f"  {code}" for code in snippet.splitlines())
                + "\n\n"
                f"Also: {base}/v1/services/{SERVICE}  {base}/v1/services/{LETTER}\n"
                f"      {base}/metrics  {base}/openapi.json\n"
                f"Then: {prog} --home {settings.home} audit tail; "
                f"{prog} --home {settings.home} audit verify\n"
                f"Review: a claim of 20,000 or more, or an unsure one, waits for a person: "
                f"{prog} --home {settings.home} review next {SERVICE} --by you\n"
                "Stop with Ctrl-C.\n"
            )

        run_server(settings, spec, on_ready=announce)


COMMANDS = [demo]
