"""Evaluating prompt versions: cases through the real route to the mock LLM, scored,
stored, audited and read back by approval; on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from prodgate import spec as spec_module
from prodgate.audit import log
from prodgate.audit.verify import verify
from prodgate.cli.main import cli
from prodgate.evaluation import Limits, compare, evaluate_version
from prodgate.evaluation.answers import Answer, Form, grade
from prodgate.evaluation.cases import parse_case
from prodgate.evaluation.prompts import JUDGE_MAX_TOKENS
from prodgate.exceptions import ApprovalRefused, UsageError
from prodgate.llm import tokens
from prodgate.llm.mock import MockHandle, running_mock
from prodgate.llm.prompt import parse_prompt
from prodgate.registry import approvals, versions
from prodgate.settings import Settings
from prodgate.spec import ServiceSpec, parse_gate
from prodgate.store.engine import Store
from prodgate.store.tables import evaluations

MOCK = {
    "models": {
        "large": {},
        "small": {"misses": ["fraud_signal"]},
        "judge": {},
        "quiet": {"usage": False},
    },
    "rules": [
        # The judge's requests hold "answer to grade:"; it is asked before the others.
        {
            "contains": [
                "expected answer:\nnew_claim\n\nanswer to grade:\nnew_claim",
                "expected answer:\ncomplaint\n\nanswer to grade:\ncomplaint",
            ],
            "label": "1",
        },
        {"contains": ['answer to grade:\n{"category":"new_claim"'], "label": "0.5 (close)"},
        {"contains": ["answer to grade:\n{"], "label": "none"},
        {"contains": ["answer to grade:"], "label": "0"},
        {"contains": ["stolen", "accident"], "label": "new_claim"},
        {"contains": ["where is"], "label": "status_question"},
        {"contains": ["forged"], "label": "fraud_signal"},
        {"contains": ["angry"], "label": "complaint"},
    ],
    "default_label": "complaint",
}

SPEC = """\
providers:
  mock:
    base_url: {url}
    models:
      large: {{input: 2.0, output: 8.0}}
      small: {{input: 0.25, output: 1.0}}
      judge: {{input: 1.0, output: 1.0}}
      quiet: {{input: 1.0, output: 1.0}}
services:
  letters:
    owner: {{name: Claims Ops, contact: ops@example.com}}
    kind: llm
    labels: [complaint, new_claim, status_question, fraud_signal]
    contract:
      input:
        type: object
        required: [message]
        properties:
          message: {{type: string}}
          amount: {{type: number}}
      output:
        type: object
        required: [category, reply]
        properties:
          category: {{enum: [complaint, new_claim, status_question, fraud_signal]}}
          reply: {{type: string}}
    llm:
      retry: {{attempts: 0}}
      judge: mock/judge
    cohorts:
      high_value: {{where: "amount >= 10000"}}
    gates:
      - accuracy >= 0.75
      - accuracy >= 0.9 on high_value
      - cost_per_call <= 0.002
"""

TEXT_PROMPT = """\
model: mock/large
messages:
  - {role: system, content: "Sort the claimant's message."}
  - {role: user, content: "{{ message }}"}
parameters: {temperature: 0, max_tokens: 50}
"""
JSON_PROMPT = """\
model: mock/small
messages:
  - {role: system, content: "Sort the claimant's message."}
  - {role: user, content: "{{ message }}"}
response_format: json_schema
"""

CASES = [
    {
        "inputs": {"message": "My car was stolen last night", "amount": 12000},
        "label": "new_claim",
        "expected": "new_claim",
        "contains": "claim",
    },
    {"inputs": {"message": "Where is my payment", "amount": 500}, "label": 2, "regex": "^status_"},
    {
        "inputs": {"message": "The invoice looks forged to me", "amount": 20000},
        "label": "fraud_signal",
    },
    {
        "inputs": {"message": "I am angry about the delay", "amount": 300},
        "label": "complaint",
        "expected": "complaint",
    },
    {
        "inputs": {"message": "Hello there", "amount": 15000},
        "label": "new_claim",
        "expected": "new_claim",
    },
    {
        "inputs": {"message": "My house had an accident", "amount": 800},
        "contains": ["new", "claim"],
    },
]
#: Words of each message: the mock counts 3 tokens a message, 3 a reply, and words.
WORDS = [6, 4, 6, 6, 2, 5]
SYSTEM_WORDS = 4
INPUT_TOKENS = [SYSTEM_WORDS + 3 + w + 3 + 3 for w in WORDS]  # 19, 17, 19, 19, 15, 18


@pytest.fixture(scope="module")
def served() -> Iterator[MockHandle]:
    with running_mock(MOCK) as handle:
        yield handle


@pytest.fixture
def mock(served: MockHandle) -> MockHandle:
    served.reset()
    return served


def load(settings: Settings, mock: MockHandle, text: str = SPEC) -> ServiceSpec:
    Path(settings.config).write_text(text.format(url=mock.url))
    return spec_module.load(settings.config).service("letters")


@pytest.fixture
def letters(settings: Settings, mock: MockHandle) -> ServiceSpec:
    return load(settings, mock)


def write_cases(path: Path, cases: list[dict[str, object]] = CASES) -> Path:
    path.write_bytes(b"".join(orjson.dumps(c) + b"\n" for c in cases))
    return path


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    return write_cases(tmp_path / "cases.jsonl")


def register(store: Store, service: ServiceSpec, tmp_path: Path, text: str, name: str) -> int:
    path = tmp_path / name
    path.write_text(text)
    return versions.register(store, service, str(path), actor="maker").number


def without_judge(service: ServiceSpec) -> ServiceSpec:
    assert service.llm is not None
    return dataclasses.replace(service, llm=dataclasses.replace(service.llm, judge=None))


def with_gates(service: ServiceSpec, *gates: str) -> ServiceSpec:
    parsed = tuple(parse_gate(g, service.kind) for g in gates)
    return dataclasses.replace(service, policy=dataclasses.replace(service.policy, gates=parsed))


def test_a_text_prompt_is_scored_exactly_stored_and_gates_block_approval(
    store: Store, letters: ServiceSpec, cases: Path, tmp_path: Path, mock: MockHandle
) -> None:
    register(store, letters, tmp_path, TEXT_PROMPT, "v1.yaml")
    steps: list[tuple[int, int, float]] = []
    messages: list[str] = []
    stored = evaluate_version(
        store,
        letters,
        1,
        cases,
        actor="tester",
        progress=messages.append,
        step=lambda *s: steps.append(s),
    )
    result = stored.result
    m = result["metrics"]
    # Answers: new_claim, status_question, fraud_signal, complaint, complaint, new_claim.
    assert m["accuracy"] == pytest.approx(4 / 5)  # "Hello there" is not a complaint
    assert m["exact_match"] == pytest.approx(2 / 3)
    assert m["contains"] == 1.0
    assert m["regex"] == 1.0
    assert m["json_valid"] is None  # a text prompt
    assert m["judge_score"] == pytest.approx(2 / 3)  # 1, 1, 0 on the cases with expected
    assert m["error_rate"] == 0.0
    cost = [(t * 2.0 + 1 * 8.0) / 1e6 for t in INPUT_TOKENS]  # one word out, at $2/$8
    assert m["cost_per_call"] == pytest.approx(sum(cost) / 6, rel=1e-9)
    assert 0 < m["latency_p50_ms"] <= m["latency_p95_ms"]
    totals = result["totals"]
    assert totals["input_tokens"] == sum(INPUT_TOKENS) == 107
    assert totals["output_tokens"] == 6
    assert totals["estimated_calls"] == 0
    assert totals["cost_usd"] == pytest.approx(262e-6, rel=1e-9)
    assert (totals["judge_calls"], totals["judge_failures"]) == (3, 0)
    assert totals["judge_cost_usd"] > 0
    assert result["spent_usd"] == pytest.approx(totals["cost_usd"] + totals["judge_cost_usd"])
    assert result["model"] == "mock/large"
    assert result["label_field"] is None  # the whole answer is the label
    assert stored.label_column == ""
    assert (result["rows"], result["cases"], result["stopped"]) == (6, 6, None)

    (high,) = result["cohorts"]
    assert (high["name"], high["rows"]) == ("high_value", 3)
    assert high["metrics"]["accuracy"] == pytest.approx(2 / 3)
    assert high["metrics"]["cost_per_call"] == pytest.approx((cost[0] + cost[2] + cost[4]) / 3)
    assert [(g["gate"], g["passed"]) for g in result["gates"]] == [
        ("accuracy >= 0.75", True),
        ("accuracy >= 0.9 on high_value", False),
        ("cost_per_call <= 0.002", True),
    ]
    assert result["passed"] is False

    assert any("running 6 cases through letters version 1" in s for s in messages)
    assert steps[0] == (0, 6, 0.0)
    assert [s[0] for s in steps[1:]] == [1, 2, 3, 4, 5, 6]
    assert steps[-1][2] == pytest.approx(result["spent_usd"])

    # What the mock was sent: the rendered messages, the version's parameters.
    sent = [b for b in mock.requests() if b["model"] == "large"]
    assert len(sent) == 6
    assert {b["max_tokens"] for b in sent} == {50}
    assert "response_format" not in sent[0]
    judged = [b for b in mock.requests() if b["model"] == "judge"]
    assert len(judged) == 3
    assert judged[0]["max_tokens"] == JUDGE_MAX_TOKENS

    with store.read() as conn:
        latest = approvals.latest_evaluation(conn, "letters", 1)
        row = conn.execute(sa.select(evaluations)).one()
        (record,) = [r for r in log.tail(conn, 10) if r["action"] == "evaluate"]
    assert latest is not None
    assert latest["id"] == stored.id
    assert latest["passed"] is False
    assert latest["metrics"] == result["metrics"]
    assert orjson.loads(row.dataset)["sha256"] == stored.fingerprint["sha256"]
    assert record["kind"] == "llm"
    assert record["model"] == "mock/large"
    assert record["totals"]["input_tokens"] == 107
    assert record["dataset"]["rows"] == 6
    assert [g["passed"] for g in record["gates"]] == [True, False, True]
    assert verify(store).ok

    with pytest.raises(ApprovalRefused, match=r"accuracy >= 0\.9 on high_value"):
        approvals.approve(store, letters, 1, by="approver")
    lenient = with_gates(letters, "accuracy >= 0.6 on high_value")
    assert evaluate_version(store, lenient, 1, cases, actor="tester").result["passed"] is True
    approvals.approve(store, lenient, 1, by="approver")
    assert verify(store).ok


def test_a_json_prompt_is_scored_on_its_label_field_and_its_schema(
    store: Store, letters: ServiceSpec, cases: Path, tmp_path: Path, mock: MockHandle
) -> None:
    register(store, letters, tmp_path, JSON_PROMPT, "v2.yaml")
    result = evaluate_version(store, letters, 1, cases, actor="tester").result
    # The gateway's body: the service's max_tokens, the output contract as the schema.
    sent = [b for b in mock.requests() if b["model"] == "small"]
    assert {b["max_tokens"] for b in sent} == {letters.llm.max_tokens}  # type: ignore[union-attr]
    assert sent[0]["response_format"]["json_schema"]["schema"] == letters.output_contract
    m = result["metrics"]
    assert result["label_field"] == "category"  # the property whose enum is the labels
    assert m["json_valid"] == 1.0
    assert m["accuracy"] == pytest.approx(3 / 5)  # the small model never says fraud_signal
    assert m["exact_match"] == 0.0  # text expected, JSON answered
    assert m["contains"] == 1.0
    assert m["regex"] == 0.0  # the answer starts with {
    # Graded: new_claim's JSON "0.5 (close)", the others' a reply without a number.
    assert m["judge_score"] == 0.5
    assert (result["totals"]["judge_calls"], result["totals"]["judge_failures"]) == (3, 2)
    assert result["cohorts"][0]["metrics"]["accuracy"] == pytest.approx(1 / 3)
    totals = result["totals"]
    assert totals["input_tokens"] == 107
    assert totals["cost_usd"] == pytest.approx(
        (totals["input_tokens"] * 0.25 + totals["output_tokens"] * 1.0) / 1e6, rel=1e-9
    )
    # An answer that breaks the output contract is not valid JSON for the service.
    strict = dataclasses.replace(
        letters,
        output_contract={
            "type": "object",
            "required": ["category", "confidence"],
            "properties": {"category": {"enum": ["complaint"]}},
        },
    )
    again = evaluate_version(store, strict, 1, cases, actor="tester").result
    assert again["metrics"]["json_valid"] == 0.0


def test_failed_calls_count_against_the_version(
    store: Store, letters: ServiceSpec, cases: Path, tmp_path: Path, mock: MockHandle
) -> None:
    service = without_judge(letters)
    register(store, service, tmp_path, TEXT_PROMPT, "v1.yaml")
    # Every other call to the large model fails with a 500; no retries, no fallback.
    mock.set_faults(error_rate=0.5, errors=["500"], models=["large"])
    result = evaluate_version(
        store, service, 1, cases, actor="tester", limits=Limits(concurrency=1)
    ).result
    m = result["metrics"]
    assert m["error_rate"] == 0.5
    assert result["totals"]["failed"] == 3
    assert [f["line"] for f in result["failures"]] == [2, 4, 6]
    assert all(f["error"].startswith("server: ") for f in result["failures"])
    assert m["accuracy"] == pytest.approx(2 / 5)  # a failed call is a miss
    assert m["cost_per_call"] == pytest.approx(
        ((19 + 19 + 15) * 2.0 + 3 * 8.0) / 1e6 / 3, rel=1e-9
    )  # of the answered calls
    assert result["totals"]["input_tokens"] == 19 + 19 + 15

    # With a fallback the same faults cost nothing: the small model answers.
    mock.set_faults(error_rate=1.0, errors=["500"], models=["large"])
    fallback = TEXT_PROMPT + "fallbacks: [mock/small]\n"
    register(store, service, tmp_path, fallback, "v3.yaml")
    result = evaluate_version(store, service, 2, cases, actor="tester").result
    assert result["metrics"]["error_rate"] == 0.0
    assert result["totals"]["input_tokens"] == 107
    assert result["totals"]["cost_usd"] == pytest.approx((107 * 0.25 + 6 * 1.0) / 1e6)


def test_the_cost_cap_stops_new_cases_and_the_run_does_not_pass(
    store: Store, letters: ServiceSpec, cases: Path, tmp_path: Path
) -> None:
    service = with_gates(without_judge(letters), "accuracy >= 0.5")
    register(store, service, tmp_path, TEXT_PROMPT, "v1.yaml")
    # Cases cost $46, $42, $46 (millionths): the cap of $100 is passed after the third.
    stored = evaluate_version(
        store,
        service,
        1,
        cases,
        actor="tester",
        limits=Limits(concurrency=1, max_cost_usd=0.0001),
    )
    result = stored.result
    assert (result["rows"], result["cases"]) == (3, 6)
    assert result["totals"]["cost_usd"] == pytest.approx(134e-6)
    assert result["metrics"]["accuracy"] == 1.0
    assert result["stopped"] == "the cost cap of $0.0001 was reached after 3 of 6 cases"
    assert result["gates"][0]["passed"] is True
    assert result["gates"][-1]["gate"] == "every case run"
    assert result["passed"] is False
    with pytest.raises(ApprovalRefused, match="every case run"):
        approvals.approve(store, service, 1, by="approver")
    with pytest.raises(UsageError, match="--concurrency must be at least 1"):
        Limits(concurrency=0)
    with pytest.raises(UsageError, match="--max-cost must be above 0"):
        Limits(max_cost_usd=0)


def test_the_concurrency_cap_holds(
    store: Store, letters: ServiceSpec, cases: Path, tmp_path: Path, mock: MockHandle
) -> None:
    service = without_judge(letters)
    register(store, service, tmp_path, TEXT_PROMPT, "v1.yaml")
    mock.set_faults(latency_ms=200)
    started = time.perf_counter()
    evaluate_version(store, service, 1, cases, actor="tester", limits=Limits(concurrency=2))
    elapsed = time.perf_counter() - started
    # Six calls of 200 ms, two at a time: three rounds; all at once would take one.
    assert 0.6 <= elapsed < 1.2


def test_usage_the_provider_does_not_give_is_counted_and_marked(
    store: Store, letters: ServiceSpec, cases: Path, tmp_path: Path
) -> None:
    service = without_judge(letters)
    register(store, service, tmp_path, TEXT_PROMPT.replace("mock/large", "mock/quiet"), "q.yaml")
    result = evaluate_version(store, service, 1, cases, actor="tester").result
    totals = result["totals"]
    assert totals["estimated_calls"] == 6
    prompt = parse_prompt(TEXT_PROMPT, "p")
    counted = sum(
        tokens.count_messages(prompt.render(c["inputs"]))
        for c in CASES  # type: ignore[arg-type]
    )
    answers = [
        "new_claim",
        "status_question",
        "fraud_signal",
        "complaint",
        "complaint",
        "new_claim",
    ]
    assert totals["input_tokens"] == counted
    assert totals["output_tokens"] == sum(tokens.count_text(a) for a in answers)
    assert totals["cost_usd"] == pytest.approx((counted + totals["output_tokens"]) / 1e6)


def test_compare_runs_both_versions_on_the_same_cases(
    store: Store, letters: ServiceSpec, cases: Path, tmp_path: Path
) -> None:
    service = without_judge(letters)
    register(store, service, tmp_path, TEXT_PROMPT, "v1.yaml")
    register(store, service, tmp_path, JSON_PROMPT, "v2.yaml")
    result = compare(store, service, 1, 2, cases)
    assert (result["a"]["version"], result["b"]["version"]) == (1, 2)
    assert (result["a"]["model"], result["b"]["model"]) == ("mock/large", "mock/small")
    assert result["dataset"]["rows"] == 6
    rows = {(d["cohort"], d["metric"]): d for d in result["differences"]}
    accuracy = rows[("overall", "accuracy")]
    assert (accuracy["a"], accuracy["b"]) == (pytest.approx(0.8), pytest.approx(0.6))
    assert accuracy["difference"] == pytest.approx(-0.2)
    assert rows[("overall", "json_valid")]["difference"] is None  # v1 answers text
    assert rows[("high_value", "accuracy")]["rows"] == 3
    assert rows[("overall", "cost_per_call")]["difference"] < 0  # the small model is cheaper
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(evaluations)).scalar() == 0


def test_mistakes_are_usage_errors_and_store_nothing(
    store: Store, letters: ServiceSpec, cases: Path, tmp_path: Path, mock: MockHandle
) -> None:
    register(store, letters, tmp_path, JSON_PROMPT, "v2.yaml")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"inputs": {"message": "a"}}\n{"inputs": {"message": "b"}, "label": "x"}\n')
    with pytest.raises(UsageError, match=r"bad.jsonl:2: label: 'x' is not a label"):
        evaluate_version(store, letters, 1, bad, actor="tester")
    with pytest.raises(UsageError, match=r"--label 'kind' is not a property"):
        evaluate_version(store, letters, 1, cases, "kind", actor="tester")
    classic = dataclasses.replace(letters, kind="classifier", llm=None)
    with pytest.raises(UsageError, match="--max-cost applies to services of kind llm only"):
        evaluate_version(store, classic, 1, cases, actor="t", limits=Limits(max_cost_usd=1))
    # A template variable the case lacks (the contract does not require it).
    register(
        store,
        letters,
        tmp_path,
        JSON_PROMPT.replace("{{ message }}", "{{ message }} {{ amount }}"),
        "v3.yaml",
    )
    lacking = write_cases(tmp_path / "lacking.jsonl", [{"inputs": {"message": "a"}}])
    with pytest.raises(
        UsageError, match=r"lacking.jsonl:1: the prompt cannot be filled in: .*amount"
    ):
        evaluate_version(store, letters, 2, lacking, actor="tester")
    # A provider whose key is not in the environment: refused before any call.
    keyed = load(
        store.settings,
        mock,
        SPEC.replace(
            "    base_url: {url}\n", "    base_url: {url}\n    api_key_env: PG_TEST_NO_KEY\n"
        ),
    )
    with pytest.raises(UsageError, match="the environment has no PG_TEST_NO_KEY, the API key"):
        evaluate_version(store, keyed, 1, cases, actor="tester")
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(evaluations)).scalar() == 0


def test_grading_rules() -> None:
    """The checks of one case on one answer, without a model."""
    letters = ServiceSpec(
        name="x",
        owner=None,  # type: ignore[arg-type]
        kind="llm",
        contract={"type": "object", "properties": {"m": {"type": "string"}}},
        labels=("a", "b"),
    )
    case = parse_case(
        letters,
        {"inputs": {}, "expected": {"label": "a"}, "label": "a", "contains": "a", "regex": "^{"},
        1,
        "c:1",
    )
    form = Form(json=True, label_field="label")
    g = grade(case, Answer(text=' {"label": "a"} '), form)
    assert (g.exact_match, g.accuracy, g.json_valid, g.contains, g.regex) == (
        1.0,
        1.0,
        1.0,
        1.0,
        0.0,
    )
    g = grade(case, Answer(text="not json"), form)
    assert (g.exact_match, g.accuracy, g.json_valid) == (0.0, 0.0, 0.0)
    failed = grade(
        case, Answer(error="server: 500"), Form(json=True, label_field="label", judged=True)
    )
    assert failed == type(failed)(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    text = parse_case(letters, {"inputs": {}, "label": "b", "regex": ".*"}, 1, "c:1")
    g = grade(text, Answer(text=" b\n"), Form(json=False))
    assert (g.accuracy, g.regex, g.exact_match, g.json_valid, g.judge_score) == (
        1.0,
        1.0,
        None,
        None,
        None,
    )
    assert grade(text, Answer(error="timeout: x"), Form(json=False)).regex == 0.0


# -- the command line ------------------------------------------------------------------


def run(settings: Settings, *args: str) -> Result:
    env = {"PRODGATE_USER": "alice", "PRODGATE_DATABASE_URL": settings.database_url}
    return CliRunner().invoke(
        cli, ["--home", settings.home, "--config", settings.config, *args], env=env
    )


def test_cli_evaluate_compare_and_json(
    settings: Settings, letters: ServiceSpec, cases: Path, tmp_path: Path
) -> None:
    (tmp_path / "v1.yaml").write_text(TEXT_PROMPT)
    (tmp_path / "v2.yaml").write_text(JSON_PROMPT)
    for name in ("v1.yaml", "v2.yaml"):
        assert run(settings, "register", "letters", str(tmp_path / name)).exit_code == 0
    r = run(settings, "evaluate", "letters", "1", "--data", str(cases), "--concurrency", "2")
    assert r.exit_code == 1, r.output
    out = r.stdout
    assert out.startswith("letters version 1 (mock/large) on cases.jsonl: 6 cases (sha256 ")
    assert re.search(r"^stored as evaluation \d+$", out, re.MULTILINE)
    assert (
        "  exact_match 0.6667  contains 1.0000  regex 1.0000  accuracy 0.8000  judge_score 0.6667"
        in out
    )
    assert "errors 0.0%  cost per call $0.000044" in out
    assert "6 calls: 107 tokens in, 6 out, $0.000262 in total" in out
    assert "judge: 3 grades asked, 0 failed" in out
    # COHORT CASES EXACT_MATCH CONTAINS REGEX ACCURACY JUDGE_SCORE ERROR_RATE COST_PER_CALL
    assert re.search(r"^high_value\s+3\s+0\.5000\s+1\.0000\s+-\s+0\.6667\s+0\.5000", out, re.M)
    assert "FAIL    accuracy >= 0.9 on high_value" in out
    assert out.rstrip().endswith("FAILED: 1 of 3 gates failed")
    assert "running 6 cases through letters version 1 (mock/large, 2 at a time)" in r.stderr
    assert "6/6 cases, $0.000" in r.stderr  # not a terminal: a line every tenth

    r = run(settings, "evaluate", "letters", "2", "--data", str(cases), "--json")
    data = json.loads(r.stdout)
    assert data["kind"] == "llm"
    assert data["version"] == 2
    assert data["label_column"] == "category"
    assert data["metrics"]["json_valid"] == 1.0

    r = run(settings, "compare", "letters", "1", "2", "--data", str(cases))
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(
        "letters version 1 vs version 2 (mock/large vs mock/small) on cases.jsonl: 6 cases"
    )
    assert re.search(r"^overall\s+6\s+accuracy\s+0\.8000\s+0\.6000\s+-0\.2000$", r.stdout, re.M)
    assert re.search(r"^\s+cost_per_call\s+\$0\.000044\s+\$0\.000", r.stdout, re.M)
    r = run(settings, "compare", "letters", "1", "2", "--data", str(cases), "--json")
    assert json.loads(r.stdout)["b"]["metrics"]["json_valid"] == 1.0

    r = run(
        settings,
        "evaluate",
        "letters",
        "1",
        "--data",
        str(cases),
        "--max-cost",
        "0.0001",
        "--concurrency",
        "1",
    )
    assert r.exit_code == 1
    assert "stopped: the cost cap of $0.0001 was reached after" in r.stdout

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"inputs": {"message": "a"}}\n{"inputs": {"message": "b"}, "lable": "x"}\n')
    r = run(settings, "evaluate", "letters", "1", "--data", str(bad))
    assert r.exit_code == 2
    assert "bad.jsonl:2: unknown field(s) lable" in r.stderr
    assert "Traceback" not in r.output
