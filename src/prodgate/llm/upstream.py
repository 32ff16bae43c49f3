"""The HTTP client of one OpenAI-compatible provider, and what its failures mean.

One :class:`Upstream` per provider owns one ``aiohttp.ClientSession`` with a bounded,
keep-alive connection pool: a session per request would pay a TCP (and TLS)
handshake every time, and httpx was measured slower than aiohttp under concurrency
(see ``bench/llm_client.py``). The session is made on first use, inside the running
event loop, because aiohttp binds a session to the loop that created it.

Every failure becomes an :class:`UpstreamError` whose ``kind`` says what the route
may do about it: retry the same model (rate limits, 5xx, connection failures,
timeouts, a stream cut before its first chunk), try another model (also a
misconfigured target: a missing key, 401/403/404), or stop because the request
itself is wrong (400, 422...). A failure after chunks went to the caller cannot be
retried: the answer cannot be taken back.

The API key is read from the environment once, when :meth:`Upstreams.from_spec`
builds the clients; it goes into the ``Authorization`` header and nowhere else. An
upstream's error text is scrubbed of it before it is quoted, since some providers
echo the key they were given.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import functools
import math
import os
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import aiohttp
import orjson

from prodgate.llm.tokens import Usage, usage_from_openai

from ..spec.llm import Provider, Timeouts
from .sse import SseParser

#: Kinds worth another try of the same model (before the first chunk went out).
RETRYABLE = frozenset({"rate_limited", "server", "connect", "timeout", "dropped", "stalled"})
#: Client statuses that say this target is misconfigured (key, model), not the request.
TARGET_STATUSES = frozenset({401, 402, 403, 404})
#: How much of an upstream's error body is quoted in a message.
QUOTE_LIMIT = 300
#: How much of an error answer's body is read (to quote its message).
ERROR_BODY_LIMIT = 64 * 1024
#: Fields of a request body that ask for a streamed answer.
_STREAM_FIELDS = ("stream", "stream_options")
#: Idle keep-alive connections live this long (seconds) in a provider's pool.
KEEPALIVE_S = 30.0


class UpstreamError(Exception):
    """A call to an upstream failed; ``kind`` says how, the flags say what may follow.

    ``kind`` is one of ``rate_limited`` (429), ``server`` (5xx, 409, an error event
    in a stream), ``connect`` (no connection, or not within ``connect_ms``),
    ``timeout`` (408, or ``total_ms`` passed), ``dropped`` (the connection closed
    before the answer was complete), ``stalled`` (no answer or chunk within
    ``first_token_ms``), ``client`` (another 4xx, or a key that is not set), or
    ``bad_response`` (an answer that is not the JSON it should be).
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        after_first_chunk: bool = False,
        fallback: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        self.after_first_chunk = after_first_chunk
        #: Whether another target may answer where this one failed: False only when the
        #: request itself is wrong (a 400, 413, 422...), which every target would refuse.
        if fallback is None:
            fallback = kind != "client" or status in TARGET_STATUSES
        self.fallback = fallback

    @property
    def retryable(self) -> bool:
        """Worth another try of the same model: a transient kind, nothing delivered yet."""
        return self.kind in RETRYABLE and not self.after_first_chunk

    def replace(self, *, after_first_chunk: bool) -> UpstreamError:
        """The same failure, with *after_first_chunk* as the caller saw it."""
        if after_first_chunk == self.after_first_chunk:
            return self
        return UpstreamError(
            self.kind,
            self.message,
            status=self.status,
            retry_after_s=self.retry_after_s,
            after_first_chunk=after_first_chunk,
            fallback=self.fallback,
        )

    def __repr__(self) -> str:
        return f"UpstreamError({self.kind!r}, {self.message!r}, status={self.status!r})"


def usage_of(answer: Mapping[str, Any]) -> Usage | None:
    """The :class:`Usage` in an OpenAI response or chunk's ``usage`` field, or None."""
    return usage_from_openai(answer.get("usage"))


def carries_answer(chunk: Mapping[str, Any]) -> bool:
    """Does a stream *chunk* carry part of the answer (content, a tool call, a refusal,
    a finish, usage)? The role announcement that opens a stream does not: it is no
    first token, and a route may drop it with the try it came from."""
    if chunk.get("usage"):
        return True
    for choice in chunk.get("choices") or ():
        if choice.get("finish_reason"):
            return True
        delta = choice.get("delta")
        if delta and (delta.get("content") or delta.get("tool_calls") or delta.get("refusal")):
            return True
    return False


@functools.lru_cache(maxsize=64)
def _connect_timeout(connect_ms: float) -> aiohttp.ClientTimeout:
    """aiohttp's timeout of a request: the connect deadline only (made once per value)."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect_ms / 1000.0)


def _final(chunk: Mapping[str, Any]) -> bool:
    """Is *chunk* one that ends a stream: with a finish reason, or the usage?"""
    if chunk.get("usage"):
        return True
    return any(c.get("finish_reason") for c in chunk.get("choices") or ())


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait that the upstream asked for: ``retry-after-ms`` (OpenAI's, finer),
    else ``Retry-After`` as seconds or as an HTTP date; None if absent or unreadable."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(ms) and ms >= 0:
                return ms / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def kind_of_status(status: int) -> str:
    """The failure kind of an HTTP status that is not a success."""
    if status == 429:
        return "rate_limited"
    if status == 408:
        return "timeout"
    if status == 409 or status >= 500:
        return "server"
    if 400 <= status < 500:
        return "client"
    return "bad_response"  # 1xx or 3xx: not an answer an API gives


class _Expired(Exception):
    """A stream's deadline passed while it waited for data (see :class:`_Watch`)."""


class _Watch:
    """The deadlines of one stream on one timer, re-armed lazily.

    A stream reads once per token; a timer set and cancelled around every read (as
    ``asyncio.timeout`` does) costs more than the parsing. So the stream only moves
    :attr:`due` forward, and one timer, when it fires, looks at where things are: at
    the total deadline it ends the stream; past :attr:`due` while the stream waits for
    data, it ends it as stalled; otherwise it sets itself again for the next moment
    that could matter. A caller that takes long between reads is not the upstream
    stalling (the data waits in the buffer), so only waiting counts: a stream found
    late while the caller was busy gets a fresh ``first_token_ms``.
    """

    __slots__ = ("_content", "_gap", "_handle", "_loop", "_total", "due", "expired", "waiting")

    #: A timer may fire this much (seconds) before its time.
    SLACK = 0.001

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        content: aiohttp.StreamReader,
        due: float,
        gap: float,
        total: float,
    ) -> None:
        self._loop = loop
        self._content = content
        self._gap = gap
        self._total = total
        self.due = due
        self.waiting = False
        self.expired: str | None = None  # "stalled" or "timeout" once a deadline passed
        self._handle = loop.call_at(min(due, total), self._fire)

    def _fire(self) -> None:
        now = self._loop.time() + self.SLACK
        if now >= self._total:
            self.expired = "timeout"
        elif self.waiting and now >= self.due:
            self.expired = "stalled"
        else:
            # Not late yet; or late while the caller was busy elsewhere: a fresh gap.
            later = self.due if self.due > now else now + self._gap
            self._handle = self._loop.call_at(min(later, self._total), self._fire)
            return
        if self.waiting:
            self._content.set_exception(_Expired())

    def cancel(self) -> None:
        self._handle.cancel()


class Upstream:
    """The client of one provider: ``POST {base_url}/chat/completions``, plain or streamed."""

    def __init__(self, provider: Provider, *, api_key: str | None) -> None:
        self.provider = provider
        self._api_key = api_key or None
        self._url = provider.base_url.rstrip("/") + "/chat/completions"
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._headers = headers
        self._stream_headers = headers | {"Accept": "text/event-stream"}

    def __repr__(self) -> str:  # the key stays out of every representation
        return f"Upstream({self.provider.name!r}, {self._url!r})"

    # -- the session ----------------------------------------------------------------------

    def _ensure_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and not session.closed:
            if self._loop is not loop:
                raise RuntimeError(
                    f"the upstream {self.provider.name!r} was used in another event loop; "
                    "close() it before using it in this one"
                )
            return session
        connector = aiohttp.TCPConnector(
            limit=self.provider.max_connections, keepalive_timeout=KEEPALIVE_S
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # Deadlines of the whole call are kept by this module (first token, total);
            # aiohttp keeps only the connect one, where it alone can tell the phases apart.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=None),
            auto_decompress=True,
        )
        self._loop = loop
        return self._session

    async def close(self) -> None:
        """Close the session and its connections (idempotent)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # -- calls ----------------------------------------------------------------------------

    def _check_key(self) -> None:
        env = self.provider.api_key_env
        if env and self._api_key is None:
            raise UpstreamError(
                "client",
                f"{self.provider.name}: the API key variable {env} is not set "
                "in the gateway's environment",
                fallback=True,
            )

    def _scrub(self, text: str) -> str:
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text

    def _where(self, model: str) -> str:
        return f"{self.provider.name}/{model}"

    async def complete(
        self, model: str, body: Mapping[str, Any], timeouts: Timeouts
    ) -> dict[str, Any]:
        """The upstream's answer (OpenAI's response JSON) to *body* sent for *model*.

        The whole answer must arrive within ``first_token_ms`` (a plain call's first
        token is its answer) and ``total_ms``. A ``stream`` field in *body* is dropped:
        this call reads one JSON answer.
        """
        self._check_key()
        plain = {k: v for k, v in body.items() if k not in _STREAM_FIELDS}
        payload = orjson.dumps({**plain, "model": model})
        loop = asyncio.get_running_loop()
        start = loop.time()
        first = start + timeouts.first_token_ms / 1000.0
        total = start + timeouts.total_ms / 1000.0
        deadline = min(first, total)
        session = self._ensure_session()
        try:
            async with asyncio.timeout_at(deadline):
                resp = await session.post(
                    self._url,
                    data=payload,
                    headers=self._headers,
                    timeout=self._client_timeout(timeouts),
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._failure(exc, model, total, False) from None
        try:
            if resp.status != 200:  # its status says what failed; the body may add why
                raise await self._status_error(model, resp, deadline)
            async with asyncio.timeout_at(deadline):
                raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._failure(exc, model, total, False) from None
        finally:
            resp.release()
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                "bad_response",
                f"{self._where(model)}: the answer is not JSON: {self._quote(raw)}",
                status=200,
            ) from None
        if not isinstance(answer, dict):
            raise UpstreamError(
                "bad_response", f"{self._where(model)}: the answer is not a JSON object"
            )
        if "choices" not in answer and "error" in answer:
            raise self._event_error(model, answer, after_first_chunk=False)
        return answer

    async def stream(
        self, model: str, body: Mapping[str, Any], timeouts: Timeouts
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The chunks of a streamed answer, parsed, as they arrive (``[DONE]`` ends it).

        The first chunk that carries part of the answer (see :func:`carries_answer`)
        must come within ``first_token_ms``, and each next one within ``first_token_ms``
        of the one before (a stream that goes silent that long is stalled); all within
        ``total_ms``. Closing the generator early (``aclose()``) closes the connection,
        so that the upstream stops generating.
        """
        self._check_key()
        options = body.get("stream_options")
        stream_options = dict(options) if isinstance(options, Mapping) else {}
        stream_options["include_usage"] = True
        payload = orjson.dumps(
            {**body, "model": model, "stream": True, "stream_options": stream_options}
        )
        loop = asyncio.get_running_loop()
        start = loop.time()
        gap = timeouts.first_token_ms / 1000.0
        total = start + timeouts.total_ms / 1000.0
        session = self._ensure_session()
        sent = 0
        finished = False
        # The first token is due first_token_ms after the request; each next one, that
        # long after the one before. A role announcement is no token: a server that
        # sends one and then nothing is stalled all the same.
        due = start + gap
        try:
            async with asyncio.timeout_at(min(due, total)):
                resp = await session.post(
                    self._url,
                    data=payload,
                    headers=self._stream_headers,
                    timeout=self._client_timeout(timeouts),
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._failure(exc, model, total, False) from None
        try:
            if resp.status != 200:
                raise await self._status_error(model, resp, min(due, total))
            parser = SseParser()
            answering = False  # a chunk with part of the answer has come
            last: dict[str, Any] | None = None
            content = resp.content
            watch = _Watch(loop, content, due, gap, total)
            try:
                while not parser.done:
                    if watch.expired:  # the total deadline passed while the caller read
                        raise self._late(model, watch.expired, sent > 0)
                    watch.waiting = True
                    try:
                        piece = await content.readany()
                    except _Expired:
                        raise self._late(model, watch.expired or "stalled", sent > 0) from None
                    except aiohttp.ClientError as exc:
                        raise self._failure(exc, model, total, sent > 0) from None
                    finally:
                        watch.waiting = False
                    if not piece:  # the end of the body without [DONE]
                        if last is not None and _final(last) and not parser.partial:
                            break  # a complete answer from a server that omits [DONE]
                        raise UpstreamError(
                            "dropped",
                            f"{self._where(model)}: the stream ended before it was complete",
                            after_first_chunk=sent > 0,
                        )
                    events = parser.feed(piece)
                    if answering and events:
                        watch.due = loop.time() + gap
                    for event in events:
                        last = self._chunk(model, event.data, event.name, sent > 0)
                        # Comments and the role announcement are no progress: the first
                        # token is due all the same.
                        if not answering and carries_answer(last):
                            answering = True
                            watch.due = loop.time() + gap
                        sent += 1
                        yield last
            finally:
                watch.cancel()
            # The answer is whole. Read to the end of the body (the chunked terminator,
            # often in a later packet): a connection returns to the pool only then.
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                async with asyncio.timeout_at(min(loop.time() + gap, total)):
                    while await content.readany():
                        pass
            finished = content.at_eof()
        finally:
            if finished:
                resp.release()
            else:  # failed or abandoned: do not leave the upstream generating for nobody
                resp.close()

    # -- failures ---------------------------------------------------------------------------

    @staticmethod
    def _client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
        return _connect_timeout(timeouts.connect_ms)

    def _failure(
        self, exc: TimeoutError | aiohttp.ClientError, model: str, total: float, late: bool
    ) -> UpstreamError:
        """What aiohttp's or asyncio's *exc* means as an :class:`UpstreamError`; *late*:
        chunks went out before it."""
        where = self._where(model)
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return UpstreamError("connect", f"{where}: no connection within the connect timeout")
        if isinstance(exc, TimeoutError):
            if asyncio.get_running_loop().time() >= total:
                return UpstreamError(
                    "timeout",
                    f"{where}: no complete answer within the total timeout",
                    after_first_chunk=late,
                )
            return UpstreamError(
                "stalled",
                f"{where}: no token within the first-token timeout",
                after_first_chunk=late,
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UpstreamError(
                "connect", f"{where}: cannot connect to {self._host()}: {exc.os_error}"
            )
        if isinstance(
            exc,
            aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError,
        ):
            return UpstreamError(
                "dropped",
                f"{where}: the connection closed before the answer was complete "
                f"({type(exc).__name__})",
                after_first_chunk=late,
            )
        return UpstreamError(
            "bad_response",
            f"{where}: {type(exc).__name__}: {self._scrub(str(exc))[:QUOTE_LIMIT]}",
            after_first_chunk=late,
        )

    def _late(self, model: str, kind: str, late: bool) -> UpstreamError:
        """A stream's deadline passed: ``stalled`` (no token in time) or ``timeout``."""
        where = self._where(model)
        if kind == "timeout":
            message = f"{where}: no complete answer within the total timeout"
        else:
            message = f"{where}: no token within the first-token timeout"
        return UpstreamError(kind, message, after_first_chunk=late)

    def _host(self) -> str:
        return self._url.split("://", 1)[-1].split("/", 1)[0]

    async def _status_error(
        self, model: str, resp: aiohttp.ClientResponse, deadline: float
    ) -> UpstreamError:
        """The error of an answer that is not a 200, quoting its body if it comes (the
        first :data:`ERROR_BODY_LIMIT` bytes, by *deadline* in loop time)."""
        status = resp.status
        raw = b""
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with asyncio.timeout_at(deadline):
                while len(raw) < ERROR_BODY_LIMIT:
                    piece = await resp.content.read(ERROR_BODY_LIMIT - len(raw))
                    if not piece:
                        break
                    raw += piece
        return UpstreamError(
            kind_of_status(status),
            f"{self._where(model)}: HTTP {status}: {self._quote(raw)}",
            status=status,
            retry_after_s=retry_after(resp.headers),
        )

    def _quote(self, raw: bytes) -> str:
        """What an upstream said, short: its ``error.message`` if JSON, else the text."""
        text = ""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            text = raw.decode("utf-8", "replace")
        else:
            error = data.get("error") if isinstance(data, dict) else None
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                text = error["message"]
            elif isinstance(error, str):
                text = error
            else:
                text = raw.decode("utf-8", "replace")
        text = " ".join(self._scrub(text).split())
        if len(text) > QUOTE_LIMIT:
            text = text[: QUOTE_LIMIT - 3] + "..."
        return text or "(no body)"

    def _chunk(self, model: str, data: bytes, event: str, late: bool) -> dict[str, Any]:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                "bad_response",
                f"{self._where(model)}: a stream event is not JSON: {self._quote(data)}",
                after_first_chunk=late,
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamError(
                "bad_response",
                f"{self._where(model)}: a stream event is not a JSON object",
                after_first_chunk=late,
            )
        if event == "error" or ("error" in chunk and "choices" not in chunk):
            raise self._event_error(model, chunk, after_first_chunk=late)
        return chunk

    def _event_error(
        self, model: str, data: Mapping[str, Any], *, after_first_chunk: bool
    ) -> UpstreamError:
        """An error the upstream sent as an answer or a stream event (HTTP said 200)."""
        error = data.get("error")
        fields = error if isinstance(error, Mapping) else {}
        code = str(fields.get("code") or fields.get("type") or "")
        kind = "rate_limited" if ("rate_limit" in code or code == "429") else "server"
        return UpstreamError(
            kind,
            f"{self._where(model)}: the upstream sent an error: {self._quote(orjson.dumps(data))}",
            after_first_chunk=after_first_chunk,
        )


class Upstreams(dict[str, Upstream]):
    """The upstreams of a spec's providers, by provider name; close them together."""

    @classmethod
    def from_spec(
        cls, providers: Mapping[str, Provider], environ: Mapping[str, str] | None = None
    ) -> Upstreams:
        """One :class:`Upstream` per provider, its key read from *environ* (the process's
        environment by default) now; a missing key fails the calls, not this."""
        env = os.environ if environ is None else environ
        out = cls()
        for name, provider in providers.items():
            key = env.get(provider.api_key_env) if provider.api_key_env else None
            out[name] = Upstream(provider, api_key=key or None)
        return out

    async def close(self) -> None:
        for upstream in self.values():
            await upstream.close()
