"""Routes: retries with backoff, fallbacks, breakers, deadlines and streams that fail
before or after their first chunk; against the scripted server of
``test_llm_upstream.py`` (exact sequences) and the mock LLM (faults as configured).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from prodgate.llm.breaker import Breakers, BreakerState
from prodgate.llm.mock import MockHandle, running_mock
from prodgate.llm.route import Attempt, Completion, Route, RouteFailed, RouteStream
from prodgate.llm.tokens import Usage
from prodgate.llm.upstream import Upstream, UpstreamError, Upstreams
from prodgate.spec.llm import Breaker, ModelRef, Provider, Retry, Timeouts
from test_llm_upstream import KEY, FakeLLM, chunks

pytestmark = pytest.mark.anyio

BODY = {"messages": [{"role": "user", "content": "My car was hit while parked."}]}
FAST = Timeouts(connect_ms=1000, first_token_ms=2000, total_ms=10000)
RETRY = Retry(attempts=2, backoff_ms=100, max_backoff_ms=2000)
PRIMARY = ModelRef("main", "primary")
BACKUP = ModelRef("spare", "backup")


class Waits:
    """An injected sleep: records what the route asked to wait, waits for nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def outcomes(completion: Completion) -> list[tuple[str, str]]:
    return [(f"{a.provider}/{a.model}", a.outcome) for a in completion.attempts]


async def read(stream: RouteStream, into: list[dict[str, Any]] | None = None) -> list[dict]:
    got = [] if into is None else into
    async for chunk in stream:
        got.append(chunk)
    return got


async def answer(route: Route, body: dict[str, Any], streamed: bool) -> Completion:
    """The completion of a plain call, or of a stream read to its end."""
    if not streamed:
        return await route.complete(body)
    stream = route.stream(body)
    await read(stream)
    return stream.completion


class Setup:
    """Providers ``main`` and ``spare`` (their key in ``MAIN_KEY``), upstreams, breakers
    and routes over them."""

    def __init__(
        self,
        main_url: str,
        spare_url: str,
        *,
        breaker: Breaker = Breaker(),
        key: str | None = KEY,
    ) -> None:
        self.providers = {
            "main": Provider("main", main_url, api_key_env="MAIN_KEY", breaker=breaker),
            "spare": Provider("spare", spare_url, breaker=breaker),
        }
        self.upstreams = Upstreams.from_spec(self.providers, environ={"MAIN_KEY": key or ""})
        self.clock = Clock()
        self.changes: list[tuple[str, str, BreakerState]] = []
        self.breakers = Breakers(
            self.providers, on_change=lambda *c: self.changes.append(c), clock=self.clock
        )
        self.sleep = Waits()

    def route(
        self,
        *targets: ModelRef,
        retry: Retry = RETRY,
        timeouts: Timeouts = FAST,
        seed: int = 7,
    ) -> Route:
        return Route(
            targets or (PRIMARY, BACKUP),
            self.upstreams,
            self.breakers,
            retry,
            timeouts,
            sleep=self.sleep,
            rng=random.Random(seed),
        )


# -- against the scripted server: exact sequences -------------------------------------------


@pytest.fixture
async def pair() -> AsyncIterator[tuple[FakeLLM, FakeLLM, Setup]]:
    main, spare = FakeLLM(), FakeLLM()
    await main.start()
    await spare.start()
    setup = Setup(main.url, spare.url)
    yield main, spare, setup
    await setup.upstreams.close()
    await main.stop()
    await spare.stop()


async def test_an_answer_from_the_primary(pair) -> None:
    main, spare, setup = pair
    done = await setup.route().complete(BODY)
    assert (done.provider, done.model) == ("main", "primary")
    assert done.response is not None
    assert done.response["model"] == "primary"
    assert done.text == "Hello there"
    assert done.usage == Usage(9, 3, 4)
    assert done.finish_reason == "stop"
    assert done.tool_calls == []
    assert done.error is None
    assert outcomes(done) == [("main/primary", "ok")]
    assert done.ttft_ms == done.latency_ms > 0
    assert main.requests[0]["model"] == "primary"
    assert spare.requests == []


async def test_retries_wait_a_full_jitter_backoff_then_fall_back(pair) -> None:
    main, _, setup = pair
    main.script = ["503", "503", "503"]
    done = await setup.route(seed=3).complete(BODY)
    assert outcomes(done) == [
        ("main/primary", "server"),
        ("main/primary", "server"),
        ("main/primary", "server"),
        ("spare/backup", "ok"),
    ]
    assert [a.status for a in done.attempts] == [503, 503, 503, None]
    rng = random.Random(3)
    assert setup.sleep.waits == [rng.uniform(0, 0.1), rng.uniform(0, 0.2)]
    assert (done.provider, done.model) == ("spare", "backup")
    assert setup.breakers.get("main", "primary").failures == 3


def test_backoff_is_capped() -> None:
    route = Route([PRIMARY], {}, Breakers({}), Retry(5, 100, 300), FAST, rng=random.Random(1))
    error = UpstreamError("server", "x", status=500)
    waits = [route.backoff(error, n) for n in range(8) for _ in range(50)]
    assert all(w is not None and 0 <= w <= 0.3 for w in waits)
    assert max(w for w in waits if w is not None) > 0.25  # the cap is reached, not passed
    assert route.backoff(UpstreamError("rate_limited", "x", retry_after_s=0.3), 0) == 0.3
    assert route.backoff(UpstreamError("rate_limited", "x", retry_after_s=0.31), 0) is None


async def test_retry_after_within_the_cap_is_waited(pair) -> None:
    main, _, setup = pair
    main.script = ["429:1.5"]
    done = await setup.route().complete(BODY)
    assert outcomes(done) == [("main/primary", "rate_limited"), ("main/primary", "ok")]
    assert done.attempts[0].retry_after_s == 1.5
    assert setup.sleep.waits == [1.5]


async def test_retry_after_beyond_the_cap_moves_to_the_next_target_at_once(pair) -> None:
    main, _, setup = pair
    main.script = ["429:30"]
    done = await setup.route().complete(BODY)
    assert outcomes(done) == [("main/primary", "rate_limited"), ("spare/backup", "ok")]
    assert setup.sleep.waits == []


async def test_a_wrong_request_is_neither_retried_nor_sent_elsewhere(pair) -> None:
    main, spare, setup = pair
    main.script = ["400"]
    with pytest.raises(RouteFailed) as caught:
        await setup.route().complete(BODY)
    done = caught.value.completion
    assert outcomes(done) == [("main/primary", "client")]
    assert done.error is not None
    assert (done.error.kind, done.error.status) == ("client", 400)
    assert "failure 400" in str(caught.value)
    assert spare.requests == []
    breaker = setup.breakers.get("main", "primary")
    assert breaker.failures == 0  # the request was wrong, not the upstream


async def test_a_refused_key_falls_back_without_retrying(pair) -> None:
    main, _, setup = pair
    main.script = ["401"]
    done = await setup.route().complete(BODY)
    assert outcomes(done) == [("main/primary", "client"), ("spare/backup", "ok")]
    assert setup.sleep.waits == []
    assert KEY not in repr(done.attempts)


async def test_a_missing_key_falls_back(pair) -> None:
    main, spare, _ = pair
    setup = Setup(main.url, spare.url, key=None)
    done = await setup.route().complete(BODY)
    assert outcomes(done) == [("main/primary", "client"), ("spare/backup", "ok")]
    assert main.requests == []
    await setup.upstreams.close()


async def test_every_target_failing_raises_route_failed_with_the_last_error(pair) -> None:
    main, spare, setup = pair
    main.script = ["503"] * 3
    spare.script = ["429:30"]
    with pytest.raises(RouteFailed) as caught:
        await setup.route().complete(BODY)
    done = caught.value.completion
    assert [o for _, o in outcomes(done)] == ["server"] * 3 + ["rate_limited"]
    assert done.error is not None
    assert done.error.kind == "rate_limited"
    assert (done.provider, done.model) == ("spare", "backup")
    assert done.latency_ms > 0


async def test_a_route_with_an_unknown_provider_skips_it(pair) -> None:
    _, _, setup = pair
    done = await setup.route(ModelRef("nowhere", "m"), BACKUP).complete(BODY)
    assert outcomes(done) == [("nowhere/m", "client"), ("spare/backup", "ok")]


async def test_the_total_timeout_bounds_the_whole_route(pair) -> None:
    main, spare, setup = pair
    main.script = ["stall"] * 3
    timeouts = Timeouts(connect_ms=1000, first_token_ms=300, total_ms=500)
    with pytest.raises(RouteFailed) as caught:
        await setup.route(timeouts=timeouts).complete(BODY)
    done = caught.value.completion
    assert [o for _, o in outcomes(done)] == ["stalled", "timeout"]
    assert done.error is not None
    assert done.error.kind == "timeout"
    assert 450 < done.latency_ms < 1500
    assert spare.requests == []


async def test_a_stream_passes_chunks_and_fills_its_completion(pair) -> None:
    _, _, setup = pair
    stream = setup.route().stream(BODY)
    got = await read(stream)
    assert got == chunks("primary", ["Hel", "lo", " there"])
    done = stream.completion
    assert done.text == "Hello there"
    assert done.usage == Usage(9, 3)
    assert done.finish_reason == "stop"
    assert done.response is None
    assert outcomes(done) == [("main/primary", "ok")]
    assert done.ttft_ms is not None
    assert 0 < done.ttft_ms <= done.latency_ms
    assert [c async for c in stream] == []  # ended


async def test_a_stream_cut_before_its_first_token_falls_back_transparently(pair) -> None:
    main, _, setup = pair
    main.script = ["drop_before", "error_event"]  # the second: role chunk, then an error
    stream = setup.route(retry=Retry(1, 100, 2000)).stream(BODY)
    got = await read(stream)
    assert got == chunks("backup", ["Hel", "lo", " there"])  # one role chunk, one answer
    assert outcomes(stream.completion) == [
        ("main/primary", "dropped"),
        ("main/primary", "server"),
        ("spare/backup", "ok"),
    ]
    assert stream.completion.error is None
    assert stream.completion.text == "Hello there"


async def test_a_stream_cut_after_its_first_token_ends_with_the_error(pair) -> None:
    main, spare, setup = pair
    main.script = ["drop_after"]
    stream = setup.route().stream(BODY)
    got: list[dict] = []
    with pytest.raises(UpstreamError) as caught:
        await read(stream, got)
    assert got == chunks("primary", ["Hel"])[:2]
    err = caught.value
    assert (err.kind, err.after_first_chunk, err.retryable) == ("dropped", True, False)
    done = stream.completion
    assert done.error is err
    assert done.text == "Hel"
    assert outcomes(done) == [("main/primary", "dropped")]
    assert setup.breakers.get("main", "primary").failures == 1
    assert spare.requests == []


async def test_closing_a_stream_releases_the_upstream_connection(pair) -> None:
    main, _, setup = pair
    main.script = ["stall_after"]
    stream = setup.route().stream(BODY)
    await anext(stream)  # the role chunk
    await anext(stream)  # "Hel"
    await stream.aclose()
    await stream.aclose()  # idempotent
    for _ in range(100):
        if main.disconnected:
            break
        await asyncio.sleep(0.01)
    assert main.disconnected == 1
    assert stream.completion.text == "Hel"
    assert [c async for c in stream] == []


async def test_a_cancelled_probe_gives_its_turn_back(pair) -> None:
    main, _, setup = pair
    breaker = setup.breakers.get("main", "primary")
    for _ in range(5):
        breaker.failure()
    setup.clock.now += 15.0
    main.script = ["stall"]
    task = asyncio.create_task(setup.route(PRIMARY).complete(BODY))
    for _ in range(200):
        if main.requests:
            break
        await asyncio.sleep(0.01)
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # the probe is out
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.allow()


# -- against the mock LLM ----------------------------------------------------------------


@pytest.fixture(scope="module")
def mock() -> Iterator[MockHandle]:
    with running_mock(api_key=KEY) as handle:
        yield handle


@pytest.fixture
async def setup(mock: MockHandle) -> AsyncIterator[Setup]:
    mock.reset()
    s = Setup(mock.url, mock.url)
    # "spare" sends no key: give it one, so that both reach the mock.
    s.upstreams["spare"] = Upstream(s.providers["spare"], api_key=KEY)
    yield s
    await s.upstreams.close()


def served(mock: MockHandle, model: str) -> dict[str, int]:
    return mock.stats()["by_model"].get(model, {})


@pytest.mark.parametrize(
    ("fault", "kind"), [("429", "rate_limited"), ("500", "server"), ("drop_before", "dropped")]
)
@pytest.mark.parametrize("streamed", [False, True])
async def test_mock_faults_of_the_primary_fall_back(
    mock: MockHandle, setup: Setup, fault: str, kind: str, streamed: bool
) -> None:
    mock.set_faults(error_rate=1.0, errors=[fault], models=["primary"], retry_after_s=0.5)
    route = setup.route()
    if streamed:
        stream = route.stream(BODY)
        text = "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in await read(stream)
            if c["choices"]
        )
        done = stream.completion
        assert text == done.text
    else:
        done = await route.complete(BODY)
    assert outcomes(done) == [("main/primary", kind)] * 3 + [("spare/backup", "ok")]
    assert done.text
    assert done.usage is not None
    assert done.usage.input_tokens > 0
    assert served(mock, "primary") == {fault: 3}
    assert served(mock, "backup") == {"ok": 1}
    if fault == "429":
        assert setup.sleep.waits == [0.5, 0.5]  # Retry-After, not the backoff
        assert [a.retry_after_s for a in done.attempts[:3]] == [0.5] * 3


async def test_mock_the_breaker_opens_then_closes_when_the_faults_stop(
    mock: MockHandle, setup: Setup
) -> None:
    for provider in ("main", "spare"):
        setup.providers[provider] = Provider(
            provider, mock.url, breaker=Breaker(failures=3, window_s=30, cooldown_s=10)
        )
    route = setup.route(PRIMARY, retry=Retry(0, 100, 2000))
    mock.set_faults(error_rate=1.0, errors=["500"], models=["primary"])
    for _ in range(3):
        with pytest.raises(RouteFailed):
            await route.complete(BODY)
    breaker = setup.breakers.get("main", "primary")
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(RouteFailed) as caught:
        await route.complete(BODY)
    assert outcomes(caught.value.completion) == [("main/primary", "breaker_open")]
    assert served(mock, "primary") == {"500": 3}  # the open breaker sent nothing
    mock.set_faults()  # the upstream recovers
    setup.clock.now += 9.0
    with pytest.raises(RouteFailed):
        await route.complete(BODY)  # still cooling down
    setup.clock.now += 1.0
    done = await route.complete(BODY)  # the probe
    assert outcomes(done) == [("main/primary", "ok")]
    assert breaker.state is BreakerState.CLOSED
    assert setup.changes == [
        ("main", "primary", BreakerState.OPEN),
        ("main", "primary", BreakerState.HALF_OPEN),
        ("main", "primary", BreakerState.CLOSED),
    ]


async def test_mock_a_drop_after_the_first_chunk_ends_the_stream(
    mock: MockHandle, setup: Setup
) -> None:
    mock.set_faults(error_rate=1.0, errors=["drop_after"], drop_after_chunks=2)
    stream = setup.route().stream(BODY)
    got: list[dict] = []
    with pytest.raises(UpstreamError) as caught:
        await read(stream, got)
    assert caught.value.after_first_chunk
    assert caught.value.kind == "dropped"
    assert len(got) == 2  # the role chunk and the first piece of content
    assert stream.completion.error is caught.value
    assert outcomes(stream.completion) == [("main/primary", "dropped")]
    assert served(mock, "backup") == {}


async def test_mock_a_drop_after_the_role_chunk_only_falls_back(
    mock: MockHandle, setup: Setup
) -> None:
    mock.set_faults(error_rate=1.0, errors=["drop_after"], drop_after_chunks=1, models=["primary"])
    stream = setup.route(retry=Retry(0, 100, 2000)).stream(BODY)
    got = await read(stream)
    assert [c["model"] for c in got] == ["backup"] * len(got)
    assert sum(1 for c in got if c["choices"] and "role" in c["choices"][0]["delta"]) == 1
    assert outcomes(stream.completion) == [("main/primary", "dropped"), ("spare/backup", "ok")]


@pytest.mark.parametrize("streamed", [False, True])
async def test_mock_a_stall_is_a_first_token_timeout(
    mock: MockHandle, setup: Setup, streamed: bool
) -> None:
    mock.set_faults(error_rate=1.0, errors=["stall"], stall_s=30, models=["primary"])
    timeouts = Timeouts(connect_ms=1000, first_token_ms=300, total_ms=10000)
    route = setup.route(retry=Retry(0, 100, 2000), timeouts=timeouts)
    if streamed:
        stream = route.stream(BODY)
        await read(stream)
        done = stream.completion
    else:
        done = await route.complete(BODY)
    assert outcomes(done) == [("main/primary", "stalled"), ("spare/backup", "ok")]
    assert 250 < done.attempts[0].latency_ms < 1500


async def test_mock_every_breaker_open_fails_without_calling_upstream(
    mock: MockHandle, setup: Setup
) -> None:
    for ref in (PRIMARY, BACKUP):
        breaker = setup.breakers.get(ref.provider, ref.model)
        for _ in range(5):
            breaker.failure()
    setup.clock.now += 4.0
    for streamed in (False, True):
        with pytest.raises(RouteFailed) as caught:
            await answer(setup.route(), BODY, streamed)
        done = caught.value.completion
        assert outcomes(done) == [
            ("main/primary", "breaker_open"),
            ("spare/backup", "breaker_open"),
        ]
        assert done.error is not None
        assert done.error.kind == "breaker_open"
        assert done.error.retry_after_s == 11.0  # the default cooldown of 15 s, 4 s later
    assert mock.stats()["requests"] == 0


async def test_mock_the_key_is_sent_and_never_in_an_error(mock: MockHandle, setup: Setup) -> None:
    done = await setup.route(PRIMARY).complete(BODY)
    assert done.error is None  # the mock answers only with the key
    wrong = "sk-wrong-0123456789abcdef"
    s = Setup(mock.url, mock.url, key=wrong)
    with pytest.raises(RouteFailed) as caught:
        await s.route(PRIMARY).complete(BODY)
    await s.upstreams.close()
    error = caught.value.completion.error
    assert error is not None
    assert (error.kind, error.status) == ("client", 401)
    for text in (str(caught.value), repr(error), error.message, repr(caught.value.completion)):
        assert wrong not in text
        assert KEY not in text


async def test_mock_tool_calls_are_assembled_from_a_stream(mock: MockHandle, setup: Setup) -> None:
    body = {
        "messages": [{"role": "user", "content": "please call lookup_policy for P-123"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup_policy",
                    "parameters": {
                        "type": "object",
                        "properties": {"policy_id": {"type": "string"}},
                        "required": ["policy_id"],
                    },
                },
            }
        ],
    }
    plain = await setup.route().complete(body)
    stream = setup.route().stream(body)
    await read(stream)
    assert plain.tool_calls
    assert stream.completion.tool_calls == plain.tool_calls
    assert stream.completion.finish_reason == plain.finish_reason == "tool_calls"


@pytest.mark.parametrize("streamed", [False, True])
async def test_mock_thirty_percent_faults_every_call_answered(
    mock: MockHandle, setup: Setup, streamed: bool
) -> None:
    # A breaker counts failures, not their share: at this rate it would open, which is
    # not what is tested here (answers despite faults, by retries and fallbacks).
    lenient = Breaker(failures=1000, window_s=30, cooldown_s=10)
    for provider in ("main", "spare"):
        setup.providers[provider] = Provider(provider, mock.url, breaker=lenient)
    mock.set_faults(error_rate=0.3, errors=["429", "500", "drop_before"])
    route = setup.route()

    async def one(n: int) -> Completion:
        body = {"messages": [{"role": "user", "content": f"claim number {n}"}]}
        if not streamed:
            return await route.complete(body)
        stream = route.stream(body)
        await read(stream)
        return stream.completion

    answered: list[Completion] = []
    for start in range(0, 100, 10):
        answered += await asyncio.gather(*(one(n) for n in range(start, start + 10)))
    assert len(answered) == 100
    assert all(c.error is None and c.text for c in answered)
    failed = sum(1 for c in answered for a in c.attempts if a.outcome != "ok")
    assert failed >= 30  # the faults did happen
    assert all(isinstance(a, Attempt) for c in answered for a in c.attempts)


async def test_closing_a_stream_never_started_calls_nothing(pair) -> None:
    main, _, setup = pair
    stream = setup.route().stream(BODY)
    await stream.aclose()
    assert [c async for c in stream] == []
    assert main.requests == []
    assert stream.completion.attempts == []
