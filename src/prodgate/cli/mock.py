"""``mock-llm``: a local OpenAI-compatible LLM with deterministic answers and faults."""

from __future__ import annotations

from pathlib import Path

import click

from prodgate.exceptions import UsageError


@click.command("mock-llm")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=9100,
    show_default=True,
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Port to listen on (0: any free one; the printed URL says which).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML or JSON file: models served, keyword rules to labels, default_label.",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0,
    metavar="MS",
    help="Added before each answer (before the first chunk of a stream).",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0,
    metavar="R",
    help="Exact share of calls that fail, 0 to 1 (call n fails when floor((n+1)R) > floor(nR)).",
)
@click.option(
    "--errors",
    default="429,500,drop_before",
    show_default=True,
    metavar="KINDS",
    help="Failures to take turns, comma-separated: 429, 500, drop_before, drop_after, stall.",
)
@click.option(
    "--retry-after",
    type=click.FloatRange(min=0),
    default=1,
    metavar="S",
    help="Retry-After (seconds) of the 429s.",
)
@click.option(
    "--chunk-delay-ms",
    type=click.FloatRange(min=0),
    default=0,
    metavar="MS",
    help="Pause between stream chunks.",
)
@click.option("--api-key", metavar="KEY", help="Require 'Authorization: Bearer KEY' on /v1.")
def mock_llm(
    host: str,
    port: int,
    config_file: Path | None,
    latency_ms: float,
    error_rate: float,
    errors: str,
    retry_after: float,
    chunk_delay_ms: float,
    api_key: str | None,
) -> None:
    """Serve a mock LLM at http://HOST:PORT/v1 until interrupted.

    POST /v1/chat/completions (JSON or streamed), GET /v1/models; faults change at run
    time with POST /_mock/faults, counts at GET /_mock/stats, POST /_mock/reset.
    """
    from prodgate.llm.mock import MockLLM, load_config, serve

    config = load_config(config_file) if config_file is not None else None
    faults = {
        "latency_ms": latency_ms,
        "error_rate": error_rate,
        "errors": errors,
        "retry_after_s": retry_after,
        "chunk_delay_ms": chunk_delay_ms,
    }
    if api_key is not None and not api_key.strip():
        raise UsageError("--api-key must not be empty")
    mock = MockLLM(config, api_key=api_key, faults=faults)
    serve(mock, host, port, on_ready=lambda url: click.echo(url))


COMMANDS = [mock_llm]
