"""The output guard over a streamed answer, without buffering the answer.

The caller gets the answer as it comes, less a bounded hold-back window (256
characters by default): a finding can only be acted on before its text is sent, so
the last *hold_back* characters wait until more text arrives or the answer ends. Each
scan covers the window, the new text and a little of what was sent before (for
detectors that read left context, such as "date of birth:"); text is released in
steps, never in the middle of a finding, with redacted spans already replaced, so a
secret split across chunks is redacted all the same. A finding whose action is
``block`` stops the stream at once: nothing after the text already sent goes out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prodgate.guard.policy import Context, Guard, Hit, Verdict, judge, replace
from prodgate.spec.guard import BLOCK, REDACT

#: Characters of already-sent text rescanned for left context.
LEFT_CONTEXT = 64


@dataclass(slots=True)
class StreamGuard:
    """Scans an answer chunk by chunk: :meth:`feed` each delta, send what it returns,
    then :meth:`finish`. After a block, :attr:`blocked` holds the finding and both
    return nothing more."""

    guard: Guard
    context: Context | None = None
    hold_back: int = 256
    #: Scan again once this many new characters are waiting (fewer, larger scans).
    stride: int = 0
    hits: list[Hit] = field(default_factory=list)
    blocked: Hit | None = None
    _sent_raw: str = ""  # the answer's text released so far, as the model wrote it
    _pending: str = ""  # received, not yet released
    _seen: set[tuple[str, str, int, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.stride <= 0:
            self.stride = max(16, self.hold_back // 4)

    @property
    def text(self) -> str:
        """The whole answer received so far, as the model wrote it."""
        return self._sent_raw + self._pending

    def feed(self, delta: str) -> str:
        """Take *delta*; answer the text that may be sent now (possibly empty)."""
        if self.blocked is not None or not delta:
            return ""
        self._pending += delta
        if len(self._pending) < self.hold_back + self.stride:
            return ""
        return self._release(len(self._pending) - self.hold_back)

    def finish(self) -> str:
        """The answer ended: the rest of the text, scanned."""
        if self.blocked is not None or not self._pending:
            return ""
        return self._release(len(self._pending))

    def verdict(self) -> Verdict:
        """The verdict on the whole answer received: every hit, the text redacted and
        masked as the caller and the record see it."""
        return judge(self.text, [h for h in self.hits if h.action != BLOCK] + self._block())

    def _block(self) -> list[Hit]:
        return [self.blocked] if self.blocked is not None else []

    def _release(self, cut: int) -> str:
        left = self._sent_raw[-LEFT_CONTEXT:]
        base = len(self._sent_raw)  # where _pending starts in the whole answer
        window = left + self._pending
        hits = [h.moved(base - len(left)) for h in self.guard.scan(window, self.context)]
        for h in hits:
            if h.action == BLOCK and h.finding.end > base:
                self.blocked = h
                self._note(h)
                return ""
        # Never cut through a finding: release up to its start, keep it for later.
        end = base + cut
        for h in hits:
            if h.finding.start < end < h.finding.end and h.finding.start >= base:
                end = h.finding.start
        released = [h for h in hits if h.finding.end <= end and h.finding.end > base]
        for h in released:
            self._note(h)
        piece = self._pending[: end - base]
        redact = [
            h.moved(-base).finding
            for h in released
            if h.action == REDACT and h.finding.start >= base
        ]
        out = replace(piece, redact)
        self._sent_raw += piece
        self._pending = self._pending[end - base :]
        return out

    def _note(self, hit: Hit) -> None:
        f = hit.finding
        key = (f.category, f.kind, f.start, f.end)
        if key not in self._seen:
            self._seen.add(key)
            self.hits.append(hit)
