"""``prodgate mock-llm``: a real process that answers, fails on demand and stops cleanly."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from subprocess import PIPE, Popen

import httpx
import openai
import pytest
from click.testing import CliRunner

from prodgate.cli.main import cli

COMMAND = [sys.executable, "-m", "prodgate.cli.main", "mock-llm"]


CONFIG = """\
models: {large: {}, small: {misses: [fraud_signal]}}
rules: [{contains: [fraud], label: fraud_signal}]
default_label: new_claim
"""


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Popen[str]]]:
    """The processes of this module's tests, started together: each takes most of a
    second to import, which they then spend side by side."""
    config = tmp_path_factory.mktemp("mock") / "mock.yaml"
    config.write_text(CONFIG)
    commands = {
        "configured": [
            *["--port", "0", "--config", str(config), "--api-key", "sk-1"],
            *["--error-rate", "0.5", "--errors", "429", "--retry-after", "3"],
        ],
        "plain": ["--port", "0"],
        "bad": ["--error-rate", "2"],
    }
    started = {
        name: Popen([*COMMAND, *args], stdout=PIPE, stderr=PIPE, text=True)
        for name, args in commands.items()
    }
    yield started
    for proc in started.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)


def url_of(proc: Popen[str]) -> str:
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://"), proc.communicate(timeout=5)
    return url


def test_the_command_serves_until_sigterm(processes: dict[str, Popen[str]]) -> None:
    proc = processes["configured"]
    url = url_of(proc)
    assert url.endswith("/v1")
    with openai.OpenAI(base_url=url, api_key="sk-1", max_retries=0) as client:
        first = client.chat.completions.create(
            model="large", messages=[{"role": "user", "content": "fraud"}]
        )
        assert first.choices[0].message.content == "fraud_signal"
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(
                model="small", messages=[{"role": "user", "content": "fraud"}]
            )
        assert caught.value.response.headers["retry-after"] == "3"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    stats = httpx.get(url.removesuffix("/v1") + "/_mock/stats").json()
    assert stats["by_model"] == {"large": {"ok": 1}, "small": {"429": 1}, "gpt": {"404": 1}}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0


def test_ctrl_c_stops_it_with_exit_0(processes: dict[str, Popen[str]]) -> None:
    proc = processes["plain"]
    url = url_of(proc)
    assert httpx.get(f"{url}/models").status_code == 200
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 0
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()


def test_a_bad_flag_is_one_line_and_exit_2(processes: dict[str, Popen[str]]) -> None:
    out, err = processes["bad"].communicate(timeout=30)
    assert processes["bad"].returncode == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("prodgate: error: ")
    assert "--error-rate" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--errors", "429,teapot"], "unknown kind 'teapot'"),
        (["--config", "/no/such/mock.yaml"], "cannot read mock LLM config"),
        (["--port", "-1"], "--port"),
        (["--latency-ms", "soon"], "--latency-ms"),
        (["--api-key", " "], "--api-key"),
    ],
)
def test_bad_options_are_one_readable_line(args: list[str], needle: str) -> None:
    result = CliRunner().invoke(cli, ["mock-llm", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("prodgate: error: ")
    assert needle in lines[0]


def test_a_bad_config_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "mock.yaml"
    config.write_text("rules: [{contains: fraud}]\n")
    result = CliRunner().invoke(cli, ["mock-llm", "--config", str(config)])
    assert result.exit_code == 2
    assert "rules[0]" in result.output


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["mock-llm", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
