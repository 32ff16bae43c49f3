"""``prodgate demo`` as a person runs it: a real process, and the curl line it prints."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from server_process import free_port


def test_demo_serves_and_its_curl_line_returns_a_decision(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODGATE_")}
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "prodgate.cli.main", "--home", str(home), "demo"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    output: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 180
        curls: list[str] = []
        while not any(line.startswith("Also:") for line in output):
            if time.monotonic() > deadline:
                raise AssertionError("no announcement:\n" + "".join(output))
            line = proc.stdout.readline()
            if not line:
                raise AssertionError("demo exited early:\n" + "".join(output))
            output.append(line)
            if line.strip().startswith("curl "):
                curls.append(line.strip())
        assert len(curls) == 2, "".join(output)
        while not output[-1].startswith("Stop with"):
            output.append(proc.stdout.readline())
        assert any(
            line.startswith("Review:") and "review next claims-triage --by you" in line
            for line in output
        ), "".join(output)
        curl, letter_curl = curls
        assert f"http://127.0.0.1:{port}/v1/services/claims-triage/predict" in curl
        # The line is announced once the gateway is up; it answers as pasted.
        answer = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=30)
        assert answer.returncode == 0, answer.stderr
        decision = json.loads(answer.stdout)
        assert decision["service"] == "claims-triage"
        assert decision["version"] == 1
        assert decision["prediction"] in ("routine", "adjuster")
        assert decision["decision"] in ("auto", "escalated")
        # The demo's key reads the record too; without it, the record is not shown.
        [auth] = [p for p in shlex.split(curl) if p.lower().startswith("authorization:")]
        record_url = f"http://127.0.0.1:{port}/v1/inferences/{decision['id']}"
        assert httpx.get(record_url).status_code == 401
        headers = {"Authorization": auth.split(":", 1)[1].strip()}
        stored = httpx.get(record_url, headers=headers).json()
        assert stored["status"] == 200
        _check_letter(letter_curl, "".join(output), port)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    # The same home then verifies, and the decision is in its audit trail.
    verify = subprocess.run(
        [*cmd[:-1], "audit", "verify"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "verified" in verify.stdout
    # And the review line works as printed: the queue answers (empty or not).
    review = subprocess.run(
        [*cmd[:-1], "review", "next", "claims-triage", "--by", "you"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert review.returncode == 0, review.stdout + review.stderr
    assert "nothing to review for you" in review.stdout or "item " in review.stdout


def _check_letter(curl: str, output: str, port: int) -> None:
    """claims-letter answers its curl line, and the openai SDK snippet, from the mock LLM."""
    assert f"http://127.0.0.1:{port}/v1/services/claims-letter/predict" in curl
    answer = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=30)
    assert answer.returncode == 0, answer.stderr
    letter = json.loads(answer.stdout)
    assert letter["version"] == 1
    assert letter["model"] == "primary/large"
    assert letter["output"]["category"] == "status_question"
    assert letter["output"]["reply"].startswith("Dear claimant")
    assert letter["cost_usd"] > 0
    # The SDK snippet, as printed (indented by two), runs as pasted.
    lines = output.split("openai SDK (pip install openai):\n\n", 1)[1].split("\n\n", 1)[0]
    code = textwrap.dedent(lines)
    assert "model='claims-letter'" in code
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["category"] == "status_question"
