"""Names and places through Presidio, on a spaCy pipeline built here and loaded from disk:
no model is downloaded, and the network is cut to prove it."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from prodgate.exceptions import SpecError
from prodgate.guard.finding import PII
from prodgate.guard.presidio import CHUNK, PresidioDetector

TEXT = "My name is Alice Martin, I live in Paris near Lake Geneva; ticket 4242, Acme Insurance."


@pytest.fixture(scope="module", autouse=True)
def no_network() -> Iterator[list[Any]]:
    """Every attempt to reach the network fails loudly and is remembered, from before
    Presidio is imported until the module's last test."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network access in a test")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        patch.setattr(socket, "create_connection", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        yield attempts
    assert attempts == [], "the detector tried to reach the network"


def test_the_network_is_cut(no_network: list[Any]) -> None:
    with pytest.raises(OSError, match="network access"):
        socket.create_connection(("localhost", 9))
    no_network.clear()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A blank English spaCy pipeline whose entity ruler knows a few names and places."""
    spacy = pytest.importorskip("spacy", reason="spaCy is absent (pip install presidio-analyzer)")
    pytest.importorskip("presidio_analyzer", reason="presidio-analyzer is absent")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns(
        [
            {"label": "PERSON", "pattern": [{"LOWER": "alice"}, {"LOWER": "martin"}]},
            {"label": "PERSON", "pattern": "4242"},  # a number taken for a person
            {"label": "GPE", "pattern": "Paris"},
            {"label": "LOC", "pattern": [{"LOWER": "lake"}, {"LOWER": "geneva"}]},
            {"label": "ORG", "pattern": [{"LOWER": "acme"}, {"LOWER": "insurance"}]},
        ]
    )
    path = tmp_path_factory.mktemp("spacy") / "pipeline"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def detector(pipeline: Path) -> PresidioDetector:
    return PresidioDetector(model=str(pipeline))


def found(detector: PresidioDetector, text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in detector.scan(text)]


def test_names_and_places_found_as_pii(detector: PresidioDetector) -> None:
    assert found(detector, TEXT) == [
        ("person", "Alice Martin"),
        ("location", "Paris"),
        ("location", "Lake Geneva"),
    ]
    finding = detector.scan(TEXT)[0]
    assert (finding.category, finding.detector) == (PII, "presidio")
    assert 0.5 <= finding.score <= 1.0
    assert finding.placeholder == "[PERSON]"


def test_a_number_is_never_a_person(detector: PresidioDetector) -> None:
    assert found(detector, "call 4242 now") == []


def test_entities_and_score_threshold_choose_what_is_reported(pipeline: Path) -> None:
    people = PresidioDetector(entities=["PERSON"], model=str(pipeline))
    assert found(people, TEXT) == [("person", "Alice Martin")]
    orgs = PresidioDetector(entities=("ORGANIZATION",), model=str(pipeline))
    assert found(orgs, TEXT) == [("organization", "Acme Insurance")]
    strict = PresidioDetector(model=str(pipeline), score=0.95)  # spaCy's entities score 0.85
    assert strict.scan(TEXT) == []


def test_a_long_text_is_analysed_in_pieces_with_offsets_kept(detector: PresidioDetector) -> None:
    text = "word " * (CHUNK // 5 + 100) + "and Alice Martin in Paris."
    (person, place) = detector.scan(text)
    assert text[person.start : person.end] == "Alice Martin"
    assert text[place.start : place.end] == "Paris"


def test_scans_from_many_threads_agree(detector: PresidioDetector) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda t: found(detector, t), [TEXT] * 20))
    assert results == [results[0]] * 20
    assert len(results[0]) == 3


@pytest.mark.parametrize("text", ["", "  ", "\x00\x01\xff" * 20, "\ud800 x", "ﷺ ß İ " * 50])
def test_never_raises(detector: PresidioDetector, text: str) -> None:
    for f in detector.scan(text):
        assert 0 <= f.start < f.end <= len(text)


def test_unknown_entities_and_scores_are_spec_errors(pipeline: Path) -> None:
    with pytest.raises(SpecError, match=r"\['EMAIL'\] unknown"):
        PresidioDetector(entities=["PERSON", "EMAIL"], model=str(pipeline))
    with pytest.raises(SpecError, match="between 0 and 1"):
        PresidioDetector(model=str(pipeline), score=2)


def test_a_missing_spacy_model_is_not_downloaded(pipeline: Path) -> None:
    with pytest.raises(SpecError, match="'en_core_web_sm' is not installed: pip install it"):
        PresidioDetector(model="en_core_web_sm")
    empty = pipeline.parent / "empty"
    empty.mkdir(exist_ok=True)
    with pytest.raises(SpecError, match="not a loadable spaCy pipeline"):
        PresidioDetector(model=str(empty))


@pytest.mark.parametrize("module", ["presidio_analyzer", "spacy"])
def test_without_presidio_says_how_to_install(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails
    with pytest.raises(SpecError, match="pip install presidio-analyzer"):
        PresidioDetector()
