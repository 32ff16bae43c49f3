"""The claims-letter example: messages and cases, prompts, the mock's config, the spec."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import jsonschema_rs
import orjson
import pytest
import yaml

from prodgate import spec as spec_module
from prodgate.evaluation import Limits, evaluate_version
from prodgate.examples.claims_letter import build as letter_build
from prodgate.examples.claims_letter.generate import (
    CATEGORIES,
    REVIEWED,
    generate,
    write_cases,
)
from prodgate.examples.claims_letter.spec import (
    CONTRACT,
    OUTPUT,
    SERVICE,
    point_at_mock,
)
from prodgate.examples.claims_triage.spec import write_spec
from prodgate.exceptions import ApprovalRefused
from prodgate.llm.mock import MockHandle, load_config, running_mock
from prodgate.llm.mock_answers import MockConfig, choose_label
from prodgate.llm.prompt import load_prompt
from prodgate.registry import approvals, versions
from prodgate.settings import Settings
from prodgate.store.engine import open_store

VALIDATOR = jsonschema_rs.validator_for(CONTRACT)


# -- messages and cases ---------------------------------------------------------------


def test_messages_are_deterministic_for_a_seed() -> None:
    a = generate(300, seed=4)
    assert a == generate(300, seed=4)
    assert a != generate(300, seed=5)
    assert len({m.id for m in a}) == 300


def test_cases_file_is_the_same_bytes_for_a_seed(tmp_path: Path) -> None:
    one = write_cases(tmp_path / "a.jsonl", 200, seed=1).read_bytes()
    two = write_cases(tmp_path / "b.jsonl", 200, seed=1).read_bytes()
    assert one == two
    lines = [orjson.loads(line) for line in one.splitlines()]
    assert len(lines) == 200
    for line in lines:
        assert set(line) == {"id", "inputs", "label"}
        assert line["label"] in CATEGORIES
        assert line["inputs"][REVIEWED] == line["label"]  # for the fraud cohort
        assert VALIDATOR.is_valid(line["inputs"])


def test_every_category_is_there_and_fraud_is_rare() -> None:
    shares = Counter(m.category for m in generate(4_000, seed=0))
    assert set(shares) == set(CATEGORIES)
    assert 0.07 < shares["fraud_signal"] / 4_000 < 0.13
    for message in generate(500, seed=0):
        assert VALIDATOR.is_valid(message.inputs)
        assert REVIEWED not in message.inputs  # what production sends


# -- the prompts against the mock's rules ----------------------------------------------

PROMPTS = letter_build.PROMPTS


def _labels(name: str, n: int = 400) -> tuple[float, float]:
    """Accuracy overall and on fraud signals of prompt *name* as the mock answers it
    (the mock's own labelling function, no server)."""
    config = MockConfig.from_mapping(load_config(letter_build.MOCK_CONFIG))
    prompt = load_prompt(PROMPTS[name])
    options = config.options(prompt.model.model)
    assert options is not None
    system = " ".join(m.content.lower() for m in prompt.messages if m.role == "system")
    right = total = fraud_right = fraud = 0
    for message in generate(n, seed=0):
        user = prompt.render(message.inputs)[-1]["content"]
        ok = choose_label(config, options, user, system) == message.category
        right += ok
        total += 1
        if message.category == "fraud_signal":
            fraud_right += ok
            fraud += 1
    return right / total, fraud_right / fraud


def test_the_small_model_misses_fraud_unless_the_prompt_names_its_signs() -> None:
    v1, v2, v3 = _labels("v1"), _labels("v2"), _labels("v3")
    assert v1[0] > 0.9
    assert v1[1] > 0.9
    assert v2[0] > 0.85  # good enough overall...
    assert v2[1] == 0.0  # ...and blind to every fraud signal
    assert v3 == v1  # the hint gives the small model the large one's labels
    assert v1[0] < 1.0  # some messages are ambiguous: no prompt is perfect


def test_v2_is_v1_on_the_small_model_and_v3_adds_the_hint() -> None:
    mock = yaml.safe_load(letter_build.MOCK_CONFIG.read_text())
    hint = mock["models"]["small"]["misses"]["fraud_signal"]
    v1, v2, v3 = (load_prompt(PROMPTS[n]) for n in ("v1", "v2", "v3"))
    assert (str(v1.model), str(v2.model), str(v3.model)) == (
        "primary/large",
        "primary/small",
        "primary/small",
    )
    assert v1.as_dict()["messages"] == v2.as_dict()["messages"]
    assert all(hint not in m.content.lower() for m in v2.messages)
    assert any(hint in m.content.lower() for m in v3.messages if m.role == "system")
    for prompt in (v1, v2, v3):
        assert prompt.response_format == "json_schema"
        assert REVIEWED not in prompt.variables  # the team's category never reaches a model


# -- the spec -------------------------------------------------------------------------


@pytest.fixture
def demo_spec(tmp_path: Path) -> Path:
    path = tmp_path / "example" / "prodgate.yaml"
    write_spec(path)
    return path


def test_the_demo_spec_declares_the_llm_service_and_its_providers(demo_spec: Path) -> None:
    spec = spec_module.load(demo_spec)
    assert set(spec.services) == {"claims-triage", SERVICE}
    service = spec.service(SERVICE)
    assert service.kind == "llm"
    assert service.output_contract == OUTPUT
    assert service.llm is not None
    assert [str(f) for f in service.llm.fallbacks] == ["backup/large"]
    large = spec.providers["primary"].models["large"]
    small = spec.providers["primary"].models["small"]
    assert large.input / small.input == pytest.approx(large.output / small.output)
    assert 7.5 < large.input / small.input < 9  # about 8x cheaper on every token
    assert "accuracy >= 0.9 on fraud" in [g.text for g in service.policy.gates]


def test_point_at_mock_moves_only_the_local_providers(demo_spec: Path) -> None:
    text = demo_spec.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert point_at_mock(demo_spec, "http://127.0.0.1:40001/v1")
    assert not point_at_mock(demo_spec, "http://127.0.0.1:40001/v1")  # nothing to change
    spec = spec_module.load(demo_spec)
    assert {p.base_url for p in spec.providers.values()} == {"http://127.0.0.1:40001/v1"}
    assert [line for line in demo_spec.read_text().splitlines() if line.startswith("#")] == header
    # A provider moved to a real API by hand stays there.
    document = yaml.safe_load(demo_spec.read_text())
    document["providers"]["backup"]["base_url"] = "https://api.example.com/v1"
    demo_spec.write_text(yaml.safe_dump(document))
    assert point_at_mock(demo_spec, "http://127.0.0.1:40002/v1")
    spec = spec_module.load(demo_spec)
    assert spec.providers["primary"].base_url == "http://127.0.0.1:40002/v1"
    assert spec.providers["backup"].base_url == "https://api.example.com/v1"


def test_point_at_mock_adds_the_service_to_a_spec_made_before_it(demo_spec: Path) -> None:
    document = yaml.safe_load(demo_spec.read_text())
    del document["providers"]
    del document["services"][SERVICE]
    demo_spec.write_text("# an older demo home\n" + yaml.safe_dump(document, sort_keys=False))
    assert point_at_mock(demo_spec, "http://127.0.0.1:40003/v1")
    assert demo_spec.read_text().startswith("# an older demo home\n")
    spec = spec_module.load(demo_spec)
    assert set(spec.services) == {"claims-triage", SERVICE}
    assert spec.providers["backup"].base_url == "http://127.0.0.1:40003/v1"


def test_build_writes_the_files_once(tmp_path: Path) -> None:
    files = letter_build.build(tmp_path / "letter")
    assert set(files.built) == {"cases.jsonl", "v1.yaml", "v2.yaml", "v3.yaml", "mock.yaml"}
    assert files.prompts["v3"].read_bytes() == PROMPTS["v3"].read_bytes()
    assert letter_build.build(tmp_path / "letter").built == ()
    assert letter_build.main([str(tmp_path / "letter")]) == 0


# -- registered and evaluated over the mock LLM ------------------------------------------


@pytest.fixture(scope="module")
def mock() -> Iterator[MockHandle]:
    with running_mock(load_config(letter_build.MOCK_CONFIG)) as handle:
        yield handle


def test_the_three_prompts_register_and_v2_alone_fails_the_fraud_gate(
    settings: Settings, mock: MockHandle, tmp_path: Path
) -> None:
    write_spec(Path(settings.config))
    point_at_mock(Path(settings.config), mock.url)
    files = letter_build.build(tmp_path / "letter")
    service = spec_module.load(settings.config).service(SERVICE)
    store = open_store(settings)
    try:
        numbers = {
            name: versions.register(store, service, str(path), actor="author").number
            for name, path in files.prompts.items()
        }
        assert numbers == {"v1": 1, "v2": 2, "v3": 3}
        results = {
            name: evaluate_version(
                store, service, n, files.cases, actor="author", limits=Limits(concurrency=16)
            ).result
            for name, n in numbers.items()
        }
        failed = {
            name: [g["gate"] for g in r["gates"] if not g["passed"]] for name, r in results.items()
        }
        assert failed == {"v1": [], "v2": ["accuracy >= 0.9 on fraud"], "v3": []}
        cost = {name: r["metrics"]["cost_per_call"] for name, r in results.items()}
        assert cost["v1"] / cost["v2"] == pytest.approx(5.0 / 0.6)  # same tokens, 8.3x price
        assert cost["v3"] < cost["v1"] / 4
        with pytest.raises(ApprovalRefused, match=re.escape("accuracy >= 0.9 on fraud")):
            approvals.approve(store, service, 2, by="claims-lead")
    finally:
        store.dispose()
