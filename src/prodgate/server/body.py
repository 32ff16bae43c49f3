"""Reading a request body: one bounded reader for every route.

The size limit applies to the body as the application reads it, that is *after*
decompression: a small gzip body that inflates to gigabytes (a "gzip bomb") is
stopped as soon as it passes the limit, without ever holding more than the limit in
memory. It also applies to the body as sent, since a compressed body larger than
what the route takes decompressed is no compression at all.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import Request

from prodgate.exceptions import (
    MalformedJSONError,
    PayloadTooLargeError,
    RequestError,
    UnsupportedMediaTypeError,
)

#: The content codings a request body may have (``identity`` is no coding at all).
ENCODINGS = ("gzip", "identity")
#: What a 415 answers in ``Accept-Encoding`` (RFC 7694): the codings the server takes.
ACCEPT_ENCODING = ", ".join(ENCODINGS)
_GZIP = 16 + zlib.MAX_WBITS  # zlib's window bits for a gzip header and trailer


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def require_json(request: Request, *, missing_ok: bool = False) -> None:
    """Refuse (415) a body that does not say it is JSON; with *missing_ok*, a body that
    says nothing of its type is taken as JSON."""
    content_type = request.headers.get("content-type", "")
    if missing_ok and not content_type.strip():
        return
    if not is_json(content_type):
        raise UnsupportedMediaTypeError(
            f"send application/json, not {content_type or 'no content type'}"
        )


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSONError(f"the body is not JSON: {exc}") from None


def _coding(request: Request) -> str:
    """The body's one content coding: ``gzip`` or ``identity`` (415 for any other)."""
    header = request.headers.get("content-encoding", "")
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    codings = ["gzip" if c == "x-gzip" else c for c in codings if c != "identity"]
    if not codings:
        return "identity"
    if codings == ["gzip"]:
        return "gzip"
    raise UnsupportedMediaTypeError(
        f"Content-Encoding {header.strip()!r} is not accepted; send the body as it is "
        f"(identity) or compressed with gzip"
    )


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the body is over the limit of {limit} bytes")


class _Gunzip:
    """Inflates gzip members as they arrive, never producing more than *limit* bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] = []
        self._inflater = zlib.decompressobj(_GZIP)
        self._fed = False  # whether the current member has had any input

    def feed(self, data: bytes) -> None:
        try:
            while data:
                self._fed = True
                # One byte over the room left is enough to know the limit is passed.
                out = self._inflater.decompress(data, self.limit - self.size + 1)
                self.size += len(out)
                if self.size > self.limit:
                    raise _too_large(self.limit)
                self.chunks.append(out)
                data = self._inflater.unconsumed_tail
                if self._inflater.eof:
                    # Concatenated gzip members are one body (RFC 1952, 2.2).
                    data = self._inflater.unused_data
                    self._inflater = zlib.decompressobj(_GZIP)
                    self._fed = False
        except zlib.error as exc:
            raise RequestError(f"the body is not valid gzip: {exc}") from None

    def finish(self) -> bytes:
        if self._fed:
            raise RequestError("the gzip body ends before its gzip stream does")
        return b"".join(self.chunks)


async def read(request: Request, limit: int) -> bytes:
    """The request's body, decompressed; 413 past *limit* bytes (sent or decompressed),
    415 for a content coding other than gzip."""
    coding = _coding(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the body has {declared} bytes; the limit is {limit}")
    gunzip = _Gunzip(limit) if coding == "gzip" else None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        if gunzip is not None:
            gunzip.feed(chunk)
        else:
            chunks.append(chunk)
    return gunzip.finish() if gunzip is not None else b"".join(chunks)
