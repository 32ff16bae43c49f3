"""The guard engine: rules to detectors, thresholds, kinds, actions, the verdict, the
redacted and the masked text, what is new in an answer; and the streamed answer's
hold-back scanner (redaction across chunks, a block mid-stream, nothing held forever)."""

from __future__ import annotations

import re

import pytest

from prodgate.guard import policy
from prodgate.guard.finding import Finding
from prodgate.guard.policy import Context, Guard, judge, mask, replace
from prodgate.guard.stream import StreamGuard
from prodgate.spec.guard import INPUT, OUTPUT, GuardSpec, Rule


class Regex:
    """A detector by one pattern: kind and score fixed."""

    def __init__(self, name: str, category: str, kind: str, pattern: str, score: float) -> None:
        self.name, self.category, self.kind, self.score = name, category, kind, score
        self.pattern = re.compile(pattern)

    def scan(self, text: str) -> list[Finding]:
        return [
            Finding(self.category, self.kind, self.name, self.score, m.start(), m.end())
            for m in self.pattern.finditer(text)
        ]


CARD = r"\b4111(?:[ -]?1111){3}\b"


@pytest.fixture(autouse=True)
def detectors(monkeypatch: pytest.MonkeyPatch) -> None:
    builders = {
        "pii": lambda rule: Regex("pii", "pii", "card", CARD, 1.0),
        "injection": lambda rule: Regex("injection", "injection", "override", r"ignore it", 0.6),
        "secrets": lambda rule: Regex("secrets", "secret", "token", r"tok_[a-z0-9]{8}", 1.0),
    }
    monkeypatch.setattr(policy, "BUILDERS", builders)
    monkeypatch.setattr(policy, "_BUILT", {})


def _guard(*rules: Rule, direction: str = INPUT, hold_back: int = 256) -> Guard:
    spec = GuardSpec(
        input=rules if direction == INPUT else (),
        output=rules if direction == OUTPUT else (),
        hold_back=hold_back,
    )
    return Guard(spec, direction)


def test_the_strongest_action_is_the_verdict_and_spans_are_the_original_texts() -> None:
    guard = _guard(Rule("pii", "redact"), Rule("injection", "escalate"), Rule("secrets", "log"))
    text = "pay 4111 1111 1111 1111 now, ignore it, tok_abcdef12"
    verdict = guard.check(text)
    assert verdict.verdict == "escalate"
    assert [(h.finding.kind, h.action) for h in verdict.hits] == [
        ("card", "redact"),
        ("override", "escalate"),
        ("token", "log"),
    ]
    card = verdict.hits[0].finding
    assert text[card.start : card.end] == "4111 1111 1111 1111"
    # What goes on: only the redacted span replaced. What records keep: every PII or
    # secret span replaced, whatever its action.
    assert verdict.text == "pay [CARD] now, ignore it, tok_abcdef12"
    assert verdict.masked == "pay [CARD] now, ignore it, [TOKEN]"
    assert verdict.escalated
    assert verdict.blocked is None
    assert verdict.as_dict()["redacted"] == verdict.masked


def test_a_threshold_and_a_kinds_filter_drop_findings() -> None:
    assert _guard(Rule("injection", "block", threshold=0.7)).check("ignore it").verdict == "allow"
    assert _guard(Rule("injection", "block", threshold=0.6)).check("ignore it").verdict == "block"
    only_email = _guard(Rule("pii", "redact", kinds=("email",)))
    assert only_email.check("4111 1111 1111 1111").hits == []


def test_new_only_keeps_what_the_question_did_not_hold() -> None:
    guard = _guard(Rule("pii", "redact", new_only=True), direction=OUTPUT)
    asked = Context(question="my card is 4111-1111-1111-1111")
    assert guard.check("your card 4111 1111 1111 1111 is noted", asked).hits == []
    found = guard.check("your card 4111 1111 1111 1111 is noted", Context("no card here"))
    assert found.verdict == "redact"


def test_replace_merges_overlapping_spans_and_keeps_the_rest() -> None:
    text = "a 12345 b"
    spans = [
        Finding("pii", "phone", "p", 1, 2, 7),
        Finding("pii", "card", "p", 1, 4, 9),
        Finding("pii", "x", "p", 1, 0, 1),
    ]
    assert replace(text, spans) == "[X] [PHONE]"
    assert replace(text, []) == text


def test_mask_replaces_sensitive_values_anywhere_in_a_structure() -> None:
    verdict = judge("card 4111 1111 1111 1111", [])
    assert verdict.sensitive == []
    found = _guard(Rule("pii", "log")).check("card 4111 1111 1111 1111")
    out = mask({"a": ["repeat 4111 1111 1111 1111"], "b": 3}, found.sensitive)
    assert out == {"a": ["repeat [CARD]"], "b": 3}


# -- streams ---------------------------------------------------------------------------


def _feed(screen: StreamGuard, pieces: list[str]) -> list[str]:
    out = [screen.feed(p) for p in pieces]
    out.append(screen.finish())
    return out


def test_a_card_split_across_chunks_is_redacted_and_the_rest_streams() -> None:
    screen = StreamGuard(_guard(Rule("pii", "redact"), direction=OUTPUT), hold_back=16)
    answer = "Thank you. We charged the card 4111 1111 1111 1111 today; the refund follows."
    pieces = [answer[i : i + 3] for i in range(0, len(answer), 3)]  # 3 characters a chunk
    sent = _feed(screen, pieces)
    assert "".join(sent) == answer.replace("4111 1111 1111 1111", "[CARD]")
    assert sum(1 for s in sent if s) > 3  # released in several steps, not once at the end
    assert screen.blocked is None
    verdict = screen.verdict()
    assert verdict.verdict == "redact"
    card = verdict.hits[0].finding
    assert answer[card.start : card.end] == "4111 1111 1111 1111"  # offsets in the whole answer


def test_nothing_is_held_longer_than_the_window() -> None:
    screen = StreamGuard(_guard(Rule("pii", "redact"), direction=OUTPUT), hold_back=16, stride=4)
    sent = "".join(screen.feed("x" * 10) for _ in range(10))
    assert len(sent) >= 100 - 16 - 4
    assert screen.finish() == "x" * (100 - len(sent))


def test_a_block_mid_stream_stops_it_and_sends_no_more() -> None:
    screen = StreamGuard(_guard(Rule("secrets", "block"), direction=OUTPUT), hold_back=16)
    before = screen.feed("a" * 40)
    assert screen.feed("here: tok_abcdef12 and more") == ""
    assert screen.blocked is not None
    assert screen.blocked.finding.kind == "token"
    assert screen.feed("more text " * 10) == ""
    assert screen.finish() == ""
    assert "tok_" not in before
    assert screen.verdict().verdict == "block"


def test_a_stream_with_no_rails_hit_comes_out_unchanged() -> None:
    screen = StreamGuard(_guard(Rule("pii", "redact"), direction=OUTPUT), hold_back=8, stride=1)
    text = "Nothing to see in this answer at all, only words. " * 5
    assert "".join(_feed(screen, list(text))) == text
    assert screen.hits == []
