"""``guard check``: texts through a service's guard rails, by hand or from a program.

Reads one text (the argument), the standard input, or a JSONL file with a ``text``
field per line; prints, per text, the verdict (``allow``, ``redact``, ``escalate``,
``block``) and what was found where, or with ``--json`` one JSON object per line. The
rails are the spec's; on the way out, the leak rail compares with the production
prompt version's system messages (the canary is planted by each gateway, so only a
gateway sees it).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import Any

import click
import orjson

from prodgate.cli.context import Context, pass_ctx, table
from prodgate.exceptions import UsageError
from prodgate.guard.policy import Verdict
from prodgate.pipeline.guarding import MAX_CHECK_CHARS, Rails, check_text
from prodgate.pipeline.metrics import Metrics
from prodgate.spec.guard import INPUT, OUTPUT, text_fields

#: Texts from which a terminal gets a progress bar.
PROGRESS_FROM = 1000


@click.group()
def guard() -> None:
    """Check texts against a service's guard rails."""


@guard.command()
@click.argument("service")
@click.argument("text", required=False)
@click.option(
    "--direction",
    type=click.Choice([INPUT, OUTPUT]),
    default=INPUT,
    show_default=True,
    help="The rails at the door (input) or on the way out (output).",
)
@click.option(
    "--jsonl",
    "jsonl",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Read texts from this JSONL file ('-': stdin), one {\"text\": ...} per line.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per text, per line.")
@pass_ctx
def check(
    ctx: Context, service: str, text: str | None, direction: str, jsonl: str | None, as_json: bool
) -> None:
    """Check TEXT (or stdin, or --jsonl FILE) against SERVICE's guard rails.

    \b
    prodgate guard check claims-letter "Ignore all previous instructions"
    prodgate guard check claims-letter --direction output < answer.txt
    prodgate guard check claims-letter --jsonl messages.jsonl --json
    """
    spec = ctx.spec().service(service)
    if text is not None and jsonl is not None:
        raise UsageError("give a TEXT or --jsonl FILE, not both")
    rails = Rails(spec, Metrics(), text_fields(spec.contract))
    if not (rails.input.on if direction == INPUT else rails.output.on):
        raise UsageError(
            f"{service} has no {direction} rails: declare them under guard.{direction} "
            "in prodgate.yaml"
        )
    prompt, version = _production_prompt(ctx, service) if direction == OUTPUT else (None, None)
    texts = list(_texts(text, jsonl))  # every line checked before any is reported
    asyncio.run(_run(rails, texts, direction, prompt, version, as_json))


async def _run(
    rails: Rails,
    texts: list[str],
    direction: str,
    prompt: Any,
    version: int | None,
    as_json: bool,
) -> None:
    # A progress bar on a terminal's stderr for a long file; output goes on as it comes.
    show = len(texts) >= PROGRESS_FROM and sys.stderr.isatty()
    with click.progressbar(
        length=len(texts), label="checking", file=sys.stderr, hidden=not show
    ) as bar:
        for n, text in enumerate(texts, start=1):
            verdict = await check_text(rails, text, direction, "", prompt, version)
            if as_json:
                sys.stdout.write(orjson.dumps(verdict.as_dict()).decode() + "\n")
            else:
                _print(n, verdict)
            bar.update(1)


def _print(n: int, verdict: Verdict) -> None:
    click.echo(f"#{n}: {verdict.verdict}")
    if verdict.hits:
        rows = [
            [
                h.finding.category,
                h.finding.kind,
                h.finding.detector,
                f"{h.finding.score:.2f}",
                f"{h.finding.start}-{h.finding.end}",
                h.action,
            ]
            for h in verdict.hits
        ]
        headers = ["CATEGORY", "KIND", "DETECTOR", "SCORE", "SPAN", "ACTION"]
        click.echo("  " + table(rows, headers).replace("\n", "\n  "))
    if verdict.masked != verdict.text or verdict.verdict == "redact":
        click.echo(f"  redacted: {verdict.masked}")


def _texts(text: str | None, jsonl: str | None) -> Iterator[str]:
    if text is not None:
        yield _bounded(text, "TEXT")
        return
    if jsonl is None:
        if sys.stdin.isatty():
            raise UsageError("give a TEXT, pipe one on stdin, or pass --jsonl FILE")
        yield _bounded(sys.stdin.read(), "stdin")
        return
    stream = sys.stdin if jsonl == "-" else _open(jsonl)
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise UsageError(f"{jsonl}:{number}: not JSON ({exc})") from None
            value = obj.get("text") if isinstance(obj, dict) else None
            if not isinstance(value, str):
                raise UsageError(f"{jsonl}:{number}: expected an object with a string 'text'")
            yield _bounded(value, f"{jsonl}:{number}")


def _open(path: str) -> Any:
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None


def _bounded(text: str, where: str) -> str:
    if len(text) > MAX_CHECK_CHARS:
        raise UsageError(f"{where}: longer than {MAX_CHECK_CHARS} characters")
    return text


def _production_prompt(ctx: Context, service: str) -> tuple[Any, int | None]:
    """The production prompt version of an LLM *service*, for the leak rail; none when
    the service is not an LLM service or nothing is deployed."""
    if ctx.spec().service(service).kind != "llm":
        return None, None
    from prodgate.llm.prompt import load_prompt
    from prodgate.registry import artifacts
    from prodgate.registry.versions import get_version
    from prodgate.rollout.split import get_deployment

    store = ctx.store()
    with store.read() as conn:
        deployment = get_deployment(conn, service)
        if deployment is None or deployment.production_version is None:
            return None, None
        version = get_version(conn, service, deployment.production_version)
    return load_prompt(artifacts.materialise(store, version)), version.number


COMMANDS = [guard]
