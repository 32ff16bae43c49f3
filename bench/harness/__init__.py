"""The harness every benchmark in bench/ stands on.

A benchmark is a program that starts a few servers one after another, puts each
under the same wrk load (same connections, same pool of request bodies, same CPUs),
and prints their figures side by side with checks of ratios against targets, all
measured in the same run on the same machine. The modules:

- ``procs``: server processes, CPU pinning (wrk and servers on different CPUs),
  CPU accounting, HTTP probes and Prometheus scraping;
- ``wrk``: the load generator, its body-pool script, its output, and
  :meth:`~harness.wrk.Load.measure`, the procedure applied to every server;
- ``report``: the report model (servers, checks, machine) as text and Markdown;
- ``options``: shared command-line options, exit codes, warnings, output;
- ``gateway``: prodgate as a server under test (its example, the claims' policies in its
  feature views, its CLI, its metrics, its audit);
- ``cluster``: prodgate as replicas: a PostgreSQL database for the run, Redis (shared
  under a prefix, or a private ``redis-server`` to kill), replicas with their own HOME;
- ``client``: a paced asyncio client that keeps every answer (status, headers, times),
  for scenarios where wrk's counts do not tell enough.
"""

from .gateway import (
    LIBRARIES,
    PREDICT_PATH,
    AuditCheck,
    GatewayStats,
    build_example,
    claims,
    cli,
    create_key,
    gateway_stats,
    load_policies,
    model_path,
    prodgate_command,
    prodgate_server,
    statuses,
    verify_audit,
)
from .options import (
    EXIT_FAILED,
    EXIT_NO_WRK,
    EXIT_PASSED,
    add_load_arguments,
    command_line,
    emit,
    require_wrk,
    run_main,
    warn_if_disturbed,
)
from .procs import (
    BENCH_DIR,
    NOISE_LIMIT,
    Pinning,
    Server,
    choose_pinning,
    clean_env,
    free_port,
    http_get,
    metric_delta,
    metric_sum,
    post_json,
    running,
    scrape,
    uvicorn_server,
)
from .report import Check, Report, Table, TablesReport, machine, ratio, verdict
from .wrk import Load, Measurement, WrkResult, find_wrk, lua_script, parse_wrk

__all__ = [
    "BENCH_DIR",
    "EXIT_FAILED",
    "EXIT_NO_WRK",
    "EXIT_PASSED",
    "LIBRARIES",
    "NOISE_LIMIT",
    "PREDICT_PATH",
    "AuditCheck",
    "Check",
    "GatewayStats",
    "Load",
    "Measurement",
    "Pinning",
    "Report",
    "Server",
    "Table",
    "TablesReport",
    "WrkResult",
    "add_load_arguments",
    "build_example",
    "choose_pinning",
    "claims",
    "clean_env",
    "cli",
    "command_line",
    "create_key",
    "emit",
    "find_wrk",
    "free_port",
    "gateway_stats",
    "http_get",
    "load_policies",
    "lua_script",
    "machine",
    "metric_delta",
    "metric_sum",
    "model_path",
    "parse_wrk",
    "post_json",
    "prodgate_command",
    "prodgate_server",
    "ratio",
    "require_wrk",
    "run_main",
    "running",
    "scrape",
    "statuses",
    "uvicorn_server",
    "verdict",
    "verify_audit",
    "warn_if_disturbed",
]
