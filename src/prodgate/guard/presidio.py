"""Names and places through Presidio and a spaCy pipeline on disk: an optional plug-in.

Rules find e-mails and card numbers (guard/pii.py); names and addresses need a named
entity model. Where a team has ``presidio-analyzer`` and a spaCy pipeline installed,
this detector reports PERSON and LOCATION entities (or others spaCy's recognizer
knows). Neither is a dependency of prodgate: the import is lazy, and a missing
package or model is a :class:`~prodgate.exceptions.SpecError` that says how to
install it.

Nothing is downloaded: Presidio's own loader fetches a missing spaCy model from the
network, so the pipeline is loaded here (a package name or a folder) and handed to
Presidio already loaded, and only spaCy's recognizer is registered (Presidio's
e-mail and URL recognizers would fetch a list of domain suffixes).

Presidio tags bare numbers as people (presidio #786, #1173); a name or a place has a
letter in it, so a span without one is dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prodgate.exceptions import SpecError
from prodgate.guard.finding import PII, Finding

NAME = "presidio"
#: The entities spaCy's recognizer in Presidio can report.
ENTITIES = ("PERSON", "LOCATION", "ORGANIZATION", "NRP", "DATE_TIME")
#: Texts longer than this are analysed in pieces cut at whitespace (spaCy's own limit
#: is one million characters, and its memory grows with the text).
CHUNK = 100_000
_HOWTO = "pip install presidio-analyzer"


def _chunks(text: str, size: int = CHUNK) -> list[tuple[int, str]]:
    """(offset, piece) pieces of at most *size* characters, cut at whitespace if any."""
    pieces = []
    start = 0
    while len(text) - start > size:
        cut = max(text.rfind(" ", start, start + size), text.rfind("\n", start, start + size))
        end = cut + 1 if cut > start else start + size
        pieces.append((start, text[start:end]))
        start = end
    pieces.append((start, text[start:]))
    return pieces


def _load(model: str, entities: Sequence[str]) -> tuple[Any, str]:
    """A Presidio analyzer over the spaCy pipeline *model*, and its language."""
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer
    except ImportError:
        raise SpecError(f"the presidio detector needs Presidio and spaCy: {_HOWTO}") from None
    if not (spacy.util.is_package(model) or Path(model).is_dir()):
        raise SpecError(
            f"spaCy model {model!r} is not installed: pip install it (its wheel from the "
            "spaCy models' releases), or give the path of a spaCy pipeline folder"
        )
    try:
        nlp = spacy.load(model)
    except Exception as exc:
        raise SpecError(f"{model}: not a loadable spaCy pipeline ({exc})") from exc
    lang = str(nlp.lang)
    engine = SpacyNlpEngine(models=[{"lang_code": lang, "model_name": str(model)}])
    # Handed over loaded: Presidio's own load() would download a missing model.
    loaded: Any = engine
    loaded.nlp = {lang: nlp}
    registry = RecognizerRegistry(supported_languages=[lang])
    registry.add_recognizer(
        SpacyRecognizer(supported_language=lang, supported_entities=list(entities))
    )
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=[lang])
    return analyzer, lang


class PresidioDetector:
    """Named entities found by Presidio with a local spaCy pipeline; kind is the entity
    in lower case (``person``, ``location``), score Presidio's."""

    name = NAME
    category = PII

    def __init__(
        self,
        entities: Sequence[str] = ("PERSON", "LOCATION"),
        model: str = "en_core_web_sm",
        score: float = 0.5,
    ) -> None:
        if isinstance(entities, str):
            entities = [entities]
        unknown = sorted(set(entities) - set(ENTITIES))
        if unknown or not entities:
            raise SpecError(
                f"presidio entities {unknown or '[]'} unknown; choose from {', '.join(ENTITIES)}"
            )
        if not 0.0 <= score <= 1.0:
            raise SpecError(f"presidio score must be between 0 and 1, not {score}")
        self.entities = list(dict.fromkeys(entities))
        self.model = str(model)
        self.score = score
        self.errors = 0
        self._analyzer, self._lang = _load(self.model, self.entities)
        # A spaCy pipeline is not documented as thread-safe; this detector is the slow,
        # optional layer, so it runs one text at a time.
        self._lock = threading.Lock()

    def scan(self, text: str) -> list[Finding]:
        if not text.strip():
            return []
        found = []
        try:
            with self._lock:
                for offset, piece in _chunks(text):
                    results = self._analyzer.analyze(
                        text=piece,
                        language=self._lang,
                        entities=self.entities,
                        score_threshold=self.score,
                    )
                    for r in results:
                        start, end = offset + r.start, offset + r.end
                        if end <= start or not any(ch.isalpha() for ch in text[start:end]):
                            continue
                        found.append(
                            Finding(PII, r.entity_type.lower(), NAME, float(r.score), start, end)
                        )
        except Exception:
            self.errors += 1  # under no lock, at worst a count is lost
            return []
        found.sort(key=lambda f: (f.start, f.end))
        return found
