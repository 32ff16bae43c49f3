"""Benchmark: prodgate's batch drift check against Evidently's, on the same Parquet files.

The data (``bench/drift_data.py``, seeded and cached under ``bench/.data/``): a
reference of 1,000,000 rows x 20 columns (15 numeric of varied shapes: skewed,
heavy-tailed, integer-valued, with nulls; 5 categorical of cardinality 2 to 400, one
with a category new in the current data) against a current file of 100,000 rows, with
columns stable, clearly drifted and near the threshold by design; then the same
recipes over 100 columns.

Each side runs in its own process, one after the other, on the same files (read once
before, so both find them in the page cache), pinned to the same CPU (``taskset``):

- **Evidently** 0.7 (installed by the benchmark into ``bench/.venvs/evidently``, once):
  ``bench/drift_evidently.py`` reads both files with pandas, runs a ``Report`` with
  ``DataDriftPreset()`` with the numeric and categorical columns named explicitly, and
  reads each column's method, drift score and verdict from ``snapshot.dict()``;
- **prodgate**: ``prodgate drift compare REFERENCE CURRENT --json``.

For each, the wall time of the whole process (start-up and reading included), its CPU
time, and its peak resident memory (``wait4``'s ``ru_maxrss``); then, column by column,
the method, the statistic and the verdict of both, each disagreement listed.

Targets (issue 10): prodgate at least 30x faster and at most 1/4 of Evidently's peak
memory, and verdicts that agree on every column (or each difference explained).

Until ``prodgate drift compare`` exists, ``--prodgate stub`` (chosen automatically by
``auto``) puts in its place ``bench/drift_data.py exact``: Evidently's rules computed exactly with
SciPy on the raw columns. ``--exact`` runs that as a third side beside both, to tell a
statistic's approximation from a difference of rule.

Run it from the repository root (about 6 minutes on 2 CPUs, plus a minute once to
install Evidently, and half a minute once to generate the data)::

    make bench-drift
    # or
    .venv/bin/python bench/drift_vs_evidently.py [--quick] [--rows N] [--cols 20,100]
        [--exact] [--json] [--markdown [FILE]]

Exit 0 when every target is met, 1 when one is not or a side failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import drift_data
from drift_data import DataSet
from harness import BENCH_DIR, Check, clean_env, command_line, emit, machine, prodgate_command
from harness.procs import NOISE_LIMIT, machine_idle_check, usable_cpus
from harness.report import Table, TablesReport, ratio

#: What pip installs into the Evidently venv (pandas 3 breaks evidently 0.7.23's import).
REQUIREMENTS = ("evidently==0.7.23", "pandas<3")
VENV = BENCH_DIR / ".venvs" / "evidently"
EVIDENTLY_SIDE = BENCH_DIR / "drift_evidently.py"
SPEEDUP_TARGET = 30.0  # prodgate at least 30x faster (wall time)
MEMORY_TARGET = 0.25  # ... at most 1/4 of Evidently's peak memory
LIBRARIES = ("prodgate", "numpy", "pyarrow", "scipy")
EVIDENTLY, PRODGATE, EXACT = "Evidently", "prodgate", "exact"
#: The spellings of a method, to compare them by name across the tools.
METHOD_ALIASES = {
    "wassersteindistancenorm": "wasserstein",
    "wassersteinnorm": "wasserstein",
    "normedwasserstein": "wasserstein",
    "wassersteindistancenormed": "wasserstein",
    "js": "jensenshannon",
    "jensenshannondistance": "jensenshannon",
    "chi2": "chisquare",
    "chisquared": "chisquare",
    "ztest": "z",
    "zstat": "z",
    "kolmogorovsmirnov": "ks",
    "kstest": "ks",
}


def canonical(method: object) -> str:
    key = "".join(ch for ch in str(method).lower() if ch.isalnum())
    return METHOD_ALIASES.get(key, key)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="prodgate drift compare against Evidently's DataDriftPreset, same files."
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="reference rows [1,000,000]")
    p.add_argument(
        "--current-rows", type=int, default=None, help="current rows [a tenth of --rows]"
    )
    p.add_argument("--cols", default="20,100", help="the cases: column counts [20,100]")
    p.add_argument("--quick", action="store_true", help="a smoke run: 50,000 rows, 20 columns")
    p.add_argument("--repeat", type=int, default=1, help="Evidently's runs per case [1]")
    p.add_argument("--prodgate-repeat", type=int, default=3, help="prodgate's runs per case [3]")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--prodgate",
        choices=("auto", "cli", "stub"),
        default="auto",
        help="prodgate's side: the CLI, the exact stub, or the CLI when it has "
        "'drift compare' [auto]",
    )
    p.add_argument("--exact", action="store_true", help="also the exact SciPy side, per column")
    p.add_argument("--evidently", default=",".join(REQUIREMENTS), metavar="REQUIREMENTS")
    p.add_argument("--no-pin", action="store_true", help="do not pin the sides to a CPU")
    p.add_argument("--json", action="store_true", help="print the figures as JSON only")
    p.add_argument("--full", action="store_true", help="every column of every case")
    p.add_argument(
        "--markdown",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="print a Markdown results section, or append it to FILE",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.cols = 50_000, "20"
    args.current_rows = args.current_rows or max(1, args.rows // 10)
    try:
        args.cases = [int(c) for c in args.cols.split(",") if c.strip()]
    except ValueError:
        p.error(f"--cols takes column counts like 20,100, not {args.cols!r}")
    if not args.cases or min(args.cases) < 1 or min(args.repeat, args.prodgate_repeat) < 1:
        p.error("--cols and --repeat take positive numbers")
    return args


# -- measuring a process --------------------------------------------------------------------


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    peak_mib: float
    returncode: int
    stdout: str
    stderr: str
    load: float  # the 1-minute load average when it ended


def measure(argv: list[str], env: dict[str, str], work: Path, tag: str) -> Run:
    """Run *argv* to its end: wall time, CPU time and peak RSS of that process alone."""
    out, err = work / f"{tag}.out", work / f"{tag}.err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=fo, stderr=fe, env=env, cwd=BENCH_DIR.parent)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        proc.returncode,
        out.read_text(errors="replace"),
        err.read_text(errors="replace"),
        os.getloadavg()[0],
    )


@dataclass
class Side:
    name: str
    label: str
    runs: list[Run] = field(default_factory=list)
    result: dict[str, Any] | None = None
    failure: str = ""

    @property
    def ok(self) -> bool:
        return self.result is not None and not self.failure

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)

    def by_column(self) -> dict[str, dict[str, Any]]:
        return {c["column"]: c for c in (self.result or {}).get("columns", [])}


def run_side(side: Side, argv: list[str], env: dict[str, str], work: Path, repeat: int) -> Side:
    """*repeat* runs of *argv*; the result is the JSON it printed (or wrote to ``.json``)."""
    for i in range(repeat):
        tag = f"{side.name}-{i}"
        result_file = work / f"{side.name}.json"
        result_file.unlink(missing_ok=True)
        argv_i = [a.replace("{out}", str(result_file)) for a in argv]
        print(f"  {side.label} ({i + 1}/{repeat}) ...", file=sys.stderr, flush=True)
        r = measure(argv_i, env, work, tag)
        side.runs.append(r)
        if r.returncode != 0:
            side.failure = f"exit {r.returncode}: " + (r.stderr.strip() or r.stdout.strip())[-400:]
            print(f"!!! {side.label} failed: {side.failure}", file=sys.stderr, flush=True)
            return side
        text = result_file.read_text() if result_file.exists() else r.stdout
        try:
            side.result = json.loads(text)
        except ValueError as exc:
            side.failure = f"its output is not JSON ({exc}): {text[:200]!r}"
            return side
        print(
            f"    {r.wall_s:.2f} s wall, {r.cpu_s:.2f} s CPU, {r.peak_mib:,.0f} MiB peak",
            file=sys.stderr,
            flush=True,
        )
    return side


# -- the sides --------------------------------------------------------------------------------


def ensure_venv(requirements: Sequence[str], venv: Path = VENV) -> Path:
    """The Python of *venv*, after pip installed *requirements* there if it does not hold
    them yet (a minute, once)."""
    python = venv / "bin" / "python"
    marker = venv / "requirements.txt"
    wanted = "\n".join(requirements) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    ignore = venv.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# virtual environments the benchmarks install their peers into\n*\n")
    print(f"installing {' '.join(requirements)} into {venv} (once) ...", file=sys.stderr)
    marker.unlink(missing_ok=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"pip could not install {' '.join(requirements)} into {venv}:\n"
            f"{(done.stdout + done.stderr).strip()[-600:]}"
        )
    marker.write_text(wanted)
    return python


def has_drift_compare(prodgate: list[str]) -> bool:
    done = subprocess.run(
        [*prodgate, "drift", "compare", "--help"], capture_output=True, check=False
    )
    return done.returncode == 0


def idlest_cpu(seconds: float = 2.0) -> int:
    """The usable CPU that was idle the most over *seconds* (from /proc/stat)."""

    def idle() -> dict[int, int]:
        out = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *ticks = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                out[int(name[3:])] = int(ticks[3]) + int(ticks[4])
        return out

    usable = usable_cpus()
    try:
        before = idle()
        time.sleep(seconds)
        after = idle()
    except (OSError, ValueError, IndexError):
        return max(usable)
    return max(usable, key=lambda c: (after.get(c, 0) - before.get(c, 0), c))


def pinned(argv: list[str], cpu: str) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if cpu else argv


def column_args(ds: DataSet) -> list[str]:
    return ["--numeric", ",".join(ds.numeric), "--categorical", ",".join(ds.categorical)]


# -- one case ---------------------------------------------------------------------------------


@dataclass
class Case:
    ds: DataSet
    sides: dict[str, Side]

    @property
    def title(self) -> str:
        return f"{self.ds.reference_rows / 1e6:g}M x {len(self.ds.columns)}"


def generate_apart(rows: int, current_rows: int, count: int, seed: int) -> str:
    """Generate (or find) the data set in a process of its own. A child's peak memory
    (``ru_maxrss`` from ``wait4``) starts from its parent's resident size at the fork,
    so data generated in this process would count in each side's peak."""
    code = (
        "import sys, drift_data; "
        f"ds = drift_data.dataset({rows}, {current_rows}, {count}, {seed}); "
        "print(ds.generated_s)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=BENCH_DIR, capture_output=True, text=True, check=True
    )
    seconds = float(done.stdout.strip() or 0)
    return f"generated in {seconds:.1f} s" if seconds else "cached"


def run_case(ds: DataSet, plan: dict[str, list[str]], args: argparse.Namespace, cpu: str) -> Case:
    labels = {EVIDENTLY: "Evidently", PRODGATE: plan["prodgate-label"][0], EXACT: "exact (SciPy)"}
    drift_data.warm([ds.reference, ds.current])
    sides = {}
    env = clean_env()
    with tempfile.TemporaryDirectory(prefix="prodgate-bench-drift-") as tmp:
        for name in (PRODGATE, EVIDENTLY, EXACT):
            if name in plan:
                sides[name] = run_side(
                    Side(name, labels[name]),
                    pinned(plan[name], cpu),
                    env,
                    Path(tmp),
                    args.prodgate_repeat if name == PRODGATE else args.repeat,
                )
    return Case(ds, sides)


def side_plans(
    ds: DataSet, python: Path, prodgate: list[str], use_cli: bool, exact: bool
) -> dict[str, list[str]]:
    stub = [sys.executable, str(Path(drift_data.__file__).resolve()), "exact"]
    files = [str(ds.reference), str(ds.current)]
    plan = {
        EVIDENTLY: [str(python), str(EVIDENTLY_SIDE), *files, *column_args(ds), "--out", "{out}"],
        PRODGATE: [*prodgate, "drift", "compare", *files, "--json"]
        if use_cli
        else [*stub, *files, *column_args(ds)],
        "prodgate-label": ["prodgate" if use_cli else "prodgate STUB (exact SciPy)"],
    }
    if exact:
        plan[EXACT] = [*stub, *files, *column_args(ds)]
    return plan


# -- the report -------------------------------------------------------------------------------


def fmt(x: Any) -> str:
    if x is None:
        return "?"
    if isinstance(x, bool):
        return "drift" if x else "-"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def agreement(case: Case) -> tuple[list[list[str]], list[str], int]:
    """Per column: design, method, statistic and verdict of each side; the disagreements
    (verdicts or methods) as sentences; the number of columns whose verdicts agree."""
    ev = case.sides[EVIDENTLY].by_column()
    pg = case.sides[PRODGATE].by_column()
    ex = case.sides[EXACT].by_column() if EXACT in case.sides else {}
    rows: list[list[str]] = []
    differences: list[str] = []
    agreeing = 0
    for col in case.ds.columns:
        e, p, x = ev.get(col.name, {}), pg.get(col.name, {}), ex.get(col.name, {})
        em, pm = canonical(e.get("method", "?")), canonical(p.get("method", "?"))
        same_verdict = e.get("drifted") is not None and e.get("drifted") == p.get("drifted")
        agreeing += same_verdict
        notes = []
        if not same_verdict:
            notes.append("VERDICT")
        if em != pm:
            notes.append("method")
        if notes:
            differences.append(
                f"{case.title} {col.name} ({col.design}: {col.recipe.note}): Evidently "
                f"{em} {fmt(e.get('statistic'))} {fmt(e.get('drifted'))}, prodgate {pm} "
                f"{fmt(p.get('statistic'))} {fmt(p.get('drifted'))}"
                + (f", exact {x['method']} {fmt(x['statistic'])}" if x else "")
            )
        row = [
            col.name,
            col.design,
            em,
            pm if pm != em else "=",
            fmt(e.get("statistic")),
            fmt(p.get("statistic")),
            *([fmt(x.get("statistic"))] if ex else []),
            fmt(e.get("drifted")),
            fmt(p.get("drifted")),
            "yes" if not notes else "NO: " + ", ".join(notes),
        ]
        rows.append(row)
    return rows, differences, agreeing


def statistic_notes(case: Case, tolerance: float = 0.005) -> list[str]:
    """How close prodgate's statistics are to Evidently's: methods equal, the largest
    difference, and the columns differing by more than *tolerance*."""
    ev = case.sides[EVIDENTLY].by_column()
    pg = case.sides[PRODGATE].by_column()
    same_method, gaps = 0, []
    for col in case.ds.columns:
        e, p = ev.get(col.name, {}), pg.get(col.name, {})
        same_method += canonical(e.get("method")) == canonical(p.get("method"))
        if isinstance(e.get("statistic"), float) and isinstance(p.get("statistic"), float):
            gaps.append((abs(e["statistic"] - p["statistic"]), col.name))
    n = len(case.ds.columns)
    out = [f"{case.title}: the same method on {same_method}/{n} columns"]
    if gaps:
        worst = max(gaps)
        out[0] += f"; largest statistic difference {worst[0]:.4f} ({worst[1]})"
        big = sorted((g for g in gaps if g[0] > tolerance), reverse=True)
        out[0] += (
            f"; {len(big)} column(s) differ by more than {tolerance:g}"
            + (": " + ", ".join(f"{name} {gap:.4f}" for gap, name in big) if big else "")
            + "."
        )
    return out


def case_tables(case: Case, full: bool) -> tuple[list[Table], list[Check], list[str]]:
    ev, pg = case.sides[EVIDENTLY], case.sides[PRODGATE]
    rows = []
    for side in case.sides.values():
        if side.runs:
            phases = (side.result or {}).get("phases", {})
            rows.append(
                [
                    side.label,
                    f"{side.median('wall_s'):.2f}",
                    f"{side.median('cpu_s'):.2f}",
                    f"{side.median('peak_mib'):,.0f}",
                    ", ".join(f"{k} {v:.1f}" for k, v in phases.items()),
                    "failed" if side.failure else "ok",
                ]
            )
    checks: list[Check] = []
    tables = [
        Table(
            f"{case.title}: {case.ds.describe()}",
            ["side", "wall s", "CPU s", "peak MiB", "phases s", "status"],
            rows,
        )
    ]
    if not (ev.ok and pg.ok):
        failed = [s.label for s in (ev, pg) if not s.ok]
        checks.append(Check(f"{case.title}: both sides ran", ", ".join(failed), "both", False))
        return tables, checks, []
    speed = ratio(ev.median("wall_s"), pg.median("wall_s"))
    memory = ratio(pg.median("peak_mib"), ev.median("peak_mib"))
    cpu = ratio(ev.median("cpu_s"), pg.median("cpu_s"))
    rows.append(
        [f"Evidently / {pg.label}", f"{speed:.1f}x", f"{cpu:.1f}x", f"{1 / memory:.1f}x", "", ""]
    )
    checks.append(
        Check.at_least(f"{case.title}: wall time, Evidently / {pg.label}", speed, SPEEDUP_TARGET)
    )
    checks.append(
        Check.at_most(f"{case.title}: peak memory, {pg.label} / Evidently", memory, MEMORY_TARGET)
    )
    col_rows, differences, agreeing = agreement(case)
    n = len(case.ds.columns)
    checks.append(
        Check(f"{case.title}: verdicts agree", f"{agreeing}/{n}", f"{n}/{n}", agreeing == n)
    )
    e_res, p_res = ev.result or {}, pg.result or {}
    e_ds, p_ds = e_res.get("dataset_drift"), p_res.get("dataset_drift")
    shares = f"Evidently {e_res.get('share_drifted', 0):.2f}, {pg.label} "
    shares += f"{p_res.get('share_drifted', 0):.2f}"
    checks.append(
        Check(
            f"{case.title}: dataset drift (share drifted: {shares})",
            f"{fmt(e_ds)} / {fmt(p_ds)}",
            "equal",
            e_ds == p_ds,
        )
    )
    headers = ["column", "design", "method", "prodgate method", "Evidently", "prodgate"]
    headers += (["exact"] if EXACT in case.sides else []) + ["E verdict", "p verdict", "agree"]
    if full or n <= 30:
        tables.append(
            Table(
                f"{case.title}: per column (statistic: Evidently's drift score, a distance "
                "drifting at >= 0.1 or a p-value at < 0.05; '=': the same method)",
                headers,
                col_rows,
            )
        )
    return tables, checks, differences


def build_report(
    cases: list[Case], args: argparse.Namespace, arguments: list[str], notes: list[str]
) -> TablesReport:
    tables: list[Table] = []
    checks: list[Check] = []
    differences: list[str] = []
    for case in cases:
        t, c, d = case_tables(case, args.full)
        tables += t
        checks += c
        differences += d
        if case.sides[EVIDENTLY].ok and case.sides[PRODGATE].ok:
            notes = [*notes, *statistic_notes(case)]
    notes = [
        *notes,
        *(["Differences:", *differences] if differences else ["No verdict or method differs."]),
    ]
    libraries = machine(None, LIBRARIES)
    ev = next((c.sides[EVIDENTLY].result for c in cases if c.sides[EVIDENTLY].ok), None)
    if ev:
        libraries["Evidently"] = (
            f"{ev.get('evidently')} with pandas {ev.get('pandas')} (its own venv: "
            f"{', '.join(args.evidently.split(','))})"
        )
    return TablesReport(
        title="Drift: prodgate vs Evidently",
        tables=tables,
        checks=checks,
        load=args.load_note,
        command=command_line("bench/drift_vs_evidently.py", arguments),
        machine=libraries,
        notes=notes,
    )


def as_json(cases: list[Case], report: TablesReport) -> dict[str, Any]:
    return {
        "cases": [
            {
                "title": c.title,
                "data": c.ds.describe(),
                "sides": {
                    n: {
                        "label": s.label,
                        "runs": [
                            {k: v for k, v in vars(r).items() if k not in ("stdout", "stderr")}
                            for r in s.runs
                        ],
                        "failure": s.failure,
                        "result": s.result,
                    }
                    for n, s in c.sides.items()
                },
                "design": {col.name: col.design for col in c.ds.columns},
            }
            for c in cases
        ],
        "checks": [vars(c) for c in report.checks],
        "notes": report.notes,
        "load": report.load,
        "machine": report.machine,
        "passed": report.passed,
    }


def benchmark(arguments: list[str]) -> int:
    args = parse_args(arguments)
    python = ensure_venv(args.evidently.split(","))
    prodgate = prodgate_command()
    use_cli = args.prodgate == "cli" or (args.prodgate == "auto" and has_drift_compare(prodgate))
    if not use_cli:
        print("note: prodgate's side is the exact SciPy stub", file=sys.stderr)
    pin = not args.no_pin and shutil.which("taskset") is not None and len(usable_cpus()) > 1
    cpu = str(idlest_cpu()) if pin else ""
    idle = machine_idle_check()
    if idle > NOISE_LIMIT:
        print(f"warning: the machine is busy ({idle:.0%} of a CPU) before the run", file=sys.stderr)
    load_before = os.getloadavg()
    cases = []
    for count in args.cases:
        made = generate_apart(args.rows, args.current_rows, count, args.seed)
        ds = drift_data.dataset(args.rows, args.current_rows, count, args.seed)  # cached now
        print(f"{ds.describe()} ({made}): {ds.reference.parent}", file=sys.stderr, flush=True)
        plan = side_plans(ds, python, prodgate, use_cli, args.exact)
        cases.append(run_case(ds, plan, args, cpu))
    load_after = os.getloadavg()
    args.load_note = (
        f"each side one process after the other (Evidently {args.repeat} run(s), prodgate "
        f"{args.prodgate_repeat}; the median), "
        + (f"all pinned to CPU {cpu}, the idlest at the start (taskset)" if cpu else "not pinned")
        + f"; machine busy {idle:.0%} of a CPU before the run, load average "
        f"{load_before[0]:.2f} before and {load_after[0]:.2f} after"
    )
    notes = [
        "Wall time: the whole process, interpreter start-up, imports and reading the "
        "Parquet files included; CPU: user + system time of the process; peak: its "
        "maximum resident set size (wait4). 'phases': Evidently's own split (import, "
        "read, run of the report, snapshot.dict()).",
    ]
    report = build_report(cases, args, arguments, notes)
    if args.json:
        print(json.dumps(as_json(cases, report), indent=1, default=str))
        return 0 if report.passed else 1
    return emit(report, args.markdown)


if __name__ == "__main__":
    try:
        sys.exit(benchmark(sys.argv[1:]))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"benchmark aborted: {exc}", file=sys.stderr)
        sys.exit(1)
