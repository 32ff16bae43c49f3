"""LiteLLM's proxy as a server under test, in a virtual environment of its own.

LiteLLM is not one of prodgate's dependencies, and its proxy brings hundreds of
packages that must not meet prodgate's, so the benchmark installs it with pip into
``bench/.venvs/litellm`` (ignored by git) the first time, and reuses it as long as it
holds the same requirement. The proxy runs the way its production notes say, without
a database: one uvicorn worker, a master key (every request is authenticated, as on
prodgate's side), prices for the model so that it computes each call's cost, and
nothing that calls out: no callbacks, no background health checks, no telemetry, no
remote price map, no spend logs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .procs import BENCH_DIR, Pinning, Server, clean_env, free_port

#: The version measured in the issue's anchor figures; ``--litellm`` names another.
REQUIREMENT = "litellm[proxy]==1.108.7"
VENV = BENCH_DIR / ".venvs" / "litellm"
MASTER_KEY = "sk-bench-master-key"
#: Settings of LiteLLM's that keep it to the job: quiet, offline, no telemetry.
ENV = {
    "LITELLM_MODE": "PRODUCTION",  # no .env file read
    "LITELLM_LOG": "ERROR",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # the packaged price map, not a download
    "LITELLM_TELEMETRY_DISABLED": "true",
}
_MARKER = "requirement.txt"  # in the venv: what was installed there


def ensure_venv(requirement: str = REQUIREMENT, venv: Path = VENV) -> Path:
    """The ``litellm`` executable of *venv*, installing *requirement* there first if the
    venv does not hold it yet (a few minutes, once). RuntimeError if pip fails."""
    exe = venv / "bin" / "litellm"
    marker = venv / _MARKER
    if exe.exists() and marker.exists() and marker.read_text().strip() == requirement:
        return exe
    venv.parent.mkdir(parents=True, exist_ok=True)
    ignore = venv.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# virtual environments the benchmarks install their peers into\n*\n")
    print(f"installing {requirement} into {venv} (once; a few minutes) ...", flush=True)
    marker.unlink(missing_ok=True)  # until pip has succeeded, the venv holds nothing known
    started = time.monotonic()
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", requirement],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not exe.exists():
        raise RuntimeError(
            f"pip could not install {requirement} into {venv} (exit {done.returncode}):\n"
            f"{(done.stdout + done.stderr).strip()[-600:]}"
        )
    marker.write_text(requirement + "\n")
    print(f"installed in {time.monotonic() - started:.0f} s", flush=True)
    return exe


def version(venv: Path = VENV) -> str:
    done = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def config(model: str, upstream: str, upstream_model: str, price: tuple[float, float]) -> str:
    """The proxy's config.yaml: *model* served by *upstream_model* at *upstream* (an
    OpenAI-compatible base URL ending ``/v1``), priced *price* (USD per million input
    and output tokens)."""
    input_usd, output_usd = (p / 1e6 for p in price)
    return f"""\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{upstream_model}
      api_base: {upstream}
      api_key: sk-mock
    model_info:
      input_cost_per_token: {input_usd:.12f}
      output_cost_per_token: {output_usd:.12f}
litellm_settings:
  set_verbose: false
  callbacks: []
  success_callback: []
  failure_callback: []
general_settings:
  master_key: {MASTER_KEY}
  background_health_checks: false
  disable_spend_logs: true
"""


def server(exe: Path, config_file: Path, work: Path, pinning: Pinning) -> Server:
    """``litellm --config FILE --num_workers 1`` on a free port, on the servers' CPUs."""
    port = free_port()
    argv = [
        str(exe),
        "--config",
        str(config_file),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    return Server(
        "LiteLLM proxy",
        pinning.server(argv),
        f"http://127.0.0.1:{port}",
        "/health/liveliness",
        work / "litellm.log",
        clean_env() | ENV,
    )
