"""The request path of an LLM service, stage by stage.

::

    authenticate                       the server's access check: key, scope
    parse        envelope / wire       {"inputs": variables}, or an OpenAI chat body
    limit        Limits.admit          the key's and the service's request rates
    route        routing.choose        the prompt version the split sends it to (sticky)
    contract     validation.validate   the variables against the input contract
    guard input  Rails.check_*         injections, PII, secrets in the variables or messages
    route        routing.admit         the kill switch; nothing loaded to answer
    tools        check_tools           the functions offered, against the key's tool scopes
    budget       Spending.reserve      the worst case (prompt + max_tokens) on every budget
    infer        Route                 the model, its retries and fallbacks (streamed or not)
    settle       Spending.settle       the real cost replaces the worst case
    guard output Rails.check_answer    leaks, new PII or secrets, banned terms (streams too)
    output       Endpoint.parse_output the structured answer against the output contract
    record       Recorder.record       group commit; nothing is answered before it is durable

A stream is answered as it arrives; its record is made durable before the closing
usage chunk and ``[DONE]`` are sent, so a caller that saw ``[DONE]`` has a recorded
answer. A stream that fails after its first chunk ends with an error event, and is
recorded as failed with what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from prodgate.audit.record import new_id
from prodgate.contract import Contract
from prodgate.exceptions import (
    OutputContractError,
    ProdgateError,
    UnknownVersionError,
    UpstreamFailedError,
)
from prodgate.guard.policy import Context, Verdict, mask
from prodgate.guard.stream import StreamGuard
from prodgate.limits.budget import Reservation
from prodgate.llm import wire
from prodgate.llm.endpoint import Endpoint
from prodgate.llm.prices import worst_case_usd
from prodgate.llm.route import Completion, RouteFailed
from prodgate.llm.tokens import Usage, count_messages
from prodgate.pipeline.envelope import parse
from prodgate.pipeline.exchange import Exchange, Outcome
from prodgate.pipeline.fleet import Fleet, Live
from prodgate.pipeline.guarding import Rails, blocked_error, decision, question_of, verdicts
from prodgate.pipeline.limiting import Limits
from prodgate.pipeline.llm_answers import (
    check_tools,
    failure_of,
    llm_section,
    openai_usage,
    retry_after,
    trace_call,
    usage_and_cost,
    usage_dict,
)
from prodgate.pipeline.llm_chunks import END, pump, screened, tail
from prodgate.pipeline.llm_counts import CLIENT_CLOSED, CallCounts
from prodgate.pipeline.metrics import Metrics
from prodgate.pipeline.recorder import Recorder
from prodgate.pipeline.records import llm_record
from prodgate.pipeline.refusal import Refusal
from prodgate.pipeline.review_entry import Entry
from prodgate.pipeline.routing import admit, choose
from prodgate.pipeline.spending import Spending
from prodgate.pipeline.validation import validate
from prodgate.rollout.router import Router
from prodgate.spec import ServiceSpec
from prodgate.spec.guard import OUTPUT
from prodgate.store.engine import now_us
from prodgate.telemetry import Telemetry


@dataclass(slots=True)
class _Call:
    """One LLM call as it goes: what was asked, reserved and answered."""

    ex: Exchange
    live: Live
    endpoint: Endpoint
    body: dict[str, Any]
    mode: str  # "predict" or "chat"
    record_id: str = field(default_factory=new_id)
    reservation: Reservation | None = None
    prompt_tokens: int | None = None
    start_ns: int = 0  # when the upstream call began (wall clock, for its span)
    #: The messages as the record keeps them (PII and secrets replaced); None: as sent.
    recorded_messages: list[dict[str, Any]] | None = None
    #: The output guard's verdict on the answer, once it ran.
    out: Verdict | None = None
    #: The output guard over a streamed answer.
    screen: StreamGuard | None = None


class LlmPath:
    """Every stage a request to one LLM service goes through, in order."""

    def __init__(
        self,
        service: ServiceSpec,
        contract: Contract,
        *,
        fleet: Fleet,
        router: Router,
        recorder: Recorder,
        refusal: Refusal,
        metrics: Metrics,
        limits: Limits,
        spending: Spending,
        rails: Rails,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.name = service.name
        self.entry = Entry(service)
        self.service = service
        self.contract = contract
        self.fleet = fleet
        self.router = router
        self.recorder = recorder
        self.refusal = refusal
        self.metrics = metrics
        self.limits = limits
        self.spending = spending
        self.rails = rails
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self._finishing: set[asyncio.Task[Any]] = set()
        self.counts = CallCounts(service.name, metrics)

    # -- the two ways in -------------------------------------------------------------

    async def handle(self, ex: Exchange) -> Outcome:
        """``POST /v1/services/{service}/predict`` with ``{"inputs": variables}``."""
        return await self._guarded(ex, self._predict)

    async def chat(self, ex: Exchange) -> Outcome:
        """``POST /v1/chat/completions``: *ex.chat* is the checked chat request."""
        return await self._guarded(ex, self._chat)

    async def _guarded(self, ex: Exchange, stages: Any) -> Outcome:
        name = "prodgate.chat" if ex.chat is not None else "prodgate.predict"
        with self.telemetry.request(
            name, service=self.name, key_id=ex.caller.key_id, started=ex.started
        ) as span:
            try:
                outcome: Outcome = await stages(ex)
            except ProdgateError as exc:
                with self.telemetry.stage("refuse"):
                    outcome = await self.refusal(ex, exc)
            finally:
                if ex.lease is not None:  # a stream gives its slots back when it ends
                    await self.limits.release(ex)
            span.answered(outcome.status, version=ex.version)
        if ex.limit_headers and outcome.status != 429:
            outcome.headers = {**ex.limit_headers, **(outcome.headers or {})}
        return outcome

    async def _predict(self, ex: Exchange) -> Outcome:
        stage = self.telemetry.stage
        with stage("parse"):
            parse(ex, 1)
        with stage("limit"):
            await self.limits.admit(ex)
        state = self.fleet.services[self.name]
        with stage("route"):
            chosen = choose(ex, state, self.router)
        with stage("contract"):
            validate(ex, self.contract)
        with stage("guard_input"):
            await self.rails.check_variables(ex)
        live = admit(ex, state, chosen)
        endpoint = _endpoint(live)
        messages = self._plant(live, endpoint.prompt.render(ex.rows[0]))
        call = _Call(ex, live, endpoint, endpoint.body(messages, {}), "predict")
        self._shadow(call)
        return await self._complete(call)

    async def _chat(self, ex: Exchange) -> Outcome:
        chat: wire.ChatRequest = ex.chat
        ex.rows = ({"messages": chat.messages},)
        with self.telemetry.stage("limit"):
            await self.limits.admit(ex)
        state = self.fleet.services[self.name]
        if chat.version is None:
            chosen = choose(ex, state, self.router)
        else:
            chosen = state.versions.get(chat.version) if not state.disabled else None
            ex.version = chat.version
            if chosen is None and not state.disabled:
                raise UnknownVersionError(
                    f"{self.name} version {chat.version} is not being served; name one of "
                    f"{', '.join(map(str, sorted(state.versions))) or 'none'}, or the service"
                )
        with self.telemetry.stage("guard_input"):
            messages, hidden = await self.rails.check_messages(ex, chat.messages)
        live = admit(ex, state, chosen)
        endpoint = _endpoint(live)
        check_tools(ex.caller, chat.tools)
        fixed = self._plant(live, endpoint.prompt.fixed_messages)
        body = endpoint.body(fixed + messages, chat.params)
        call = _Call(ex, live, endpoint, body, "chat")
        if hidden is not messages:
            call.recorded_messages = fixed + hidden
        self._shadow(call)
        if chat.stream:
            return await self._stream(call, chat.include_usage)
        return await self._complete(call)

    def _plant(self, live: Live, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The version's messages with its canary planted, when a leak rail is on."""
        leaks = self.rails.leaks(live.version.number, _endpoint(live).prompt)
        return leaks.plant(messages) if leaks is not None else messages

    def _context(self, call: _Call) -> Context:
        """What the output guard knows of the call besides its answer."""
        leaks = self.rails.leaks(call.live.version.number, call.endpoint.prompt)
        return Context(question_of(call.ex), leaks.detectors if leaks is not None else ())

    # -- shadow ----------------------------------------------------------------------

    def _shadow(self, call: _Call) -> None:
        """Send a copy of the call to the shadow version, if there is one, in the
        background: its answer is recorded (action ``shadow``), never returned."""
        shadow = self.fleet.services[self.name].shadow
        if shadow is None or shadow.endpoint is None or shadow is call.live:
            return
        endpoint = shadow.endpoint
        if call.mode == "predict":
            body = endpoint.body(endpoint.prompt.render(call.ex.rows[0]), {})
        else:
            chat: wire.ChatRequest = call.ex.chat
            body = endpoint.body(endpoint.prompt.fixed_messages + chat.messages, chat.params)
            body.pop("tools", None)  # a shadow must not act
        copy = _Call(call.ex, shadow, endpoint, body, call.mode)
        task = asyncio.get_running_loop().create_task(self._run_shadow(copy))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _run_shadow(self, call: _Call) -> None:
        try:
            completion = await call.endpoint.route.complete(call.body)
            failure: ProdgateError | None = None
        except RouteFailed as failed:
            completion = failed.completion
            failure = failure_of(completion)
        usage, cost = usage_and_cost(call.endpoint, call.body, completion)
        parsed: Any = None
        if failure is None and _checks_output(call, completion):
            try:
                parsed = call.endpoint.parse_output(completion.text)
            except OutputContractError as exc:
                failure = exc
        status = 200 if failure is None else failure.status
        try:
            await self._record(
                call, completion, usage, cost, status, failure, parsed, action="shadow"
            )
        except ProdgateError:  # a shadow's record lost is not the caller's problem
            return

    # -- budget ----------------------------------------------------------------------

    async def _reserve(self, call: _Call) -> None:
        """Reserve the call's worst case on every budget and token limit that applies."""
        if not self.spending.allowances(call.ex.caller, self.name):
            return
        with self.telemetry.stage("budget"):
            tokens = call.prompt_tokens = count_messages(call.body["messages"])
            most = call.endpoint.max_tokens(call.body)
            worst = worst_case_usd(call.endpoint.worst_price, tokens, most)
            call.reservation = await self.spending.reserve(
                call.ex.caller, self.name, worst, tokens + most
            )

    async def _settle(self, call: _Call, usage: Usage | None, cost: float) -> None:
        if call.reservation is not None:
            tokens = usage.input_tokens + usage.output_tokens if usage else 0
            await self.spending.settle(call.reservation, cost, tokens)
            call.reservation = None

    # -- not streamed ----------------------------------------------------------------

    async def _complete(self, call: _Call) -> Outcome:
        await self._reserve(call)
        start_ns = time.time_ns()
        try:
            with self.telemetry.stage("infer"):
                completion = await call.endpoint.route.complete(call.body)
            failure: ProdgateError | None = None
        except RouteFailed as failed:
            completion = failed.completion
            failure = failure_of(completion)
        usage, cost = usage_and_cost(call.endpoint, call.body, completion)
        trace_call(self.telemetry, call.endpoint, call.body, completion, usage, start_ns)
        await self._settle(call, usage, cost)
        text = completion.text
        if failure is None and self.rails.output.on and text:
            with self.telemetry.stage("guard_output"):
                call.out = await self.rails.check_answer(text, self._context(call))
            text = call.out.text
            if call.out.blocked is not None:
                failure = blocked_error(call.out.blocked, OUTPUT)
        parsed: Any = None
        if failure is None and _checks_output(call, completion):
            try:
                parsed = call.endpoint.parse_output(text)
            except OutputContractError as exc:
                failure, call.out = self.rails.schema_rail(exc, call.out)
        status = 200 if failure is None else failure.status
        await self._record(call, completion, usage, cost, status, failure, parsed)
        if failure is not None:
            body = failure.problem()
            body["id"] = call.record_id
            headers = retry_after(failure)
            return Outcome(failure.status, body, headers)
        if call.mode == "chat":
            return Outcome(200, self._chat_answer(call, completion, usage, cost, text))
        return Outcome(200, self._predict_answer(call, completion, usage, cost, parsed, text))

    def _predict_answer(
        self, call: _Call, c: Completion, usage: Usage, cost: float, parsed: Any, text: str
    ) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "id": call.record_id,
            "service": self.name,
            "version": call.live.version.number,
            "text": text,
            "output": parsed,
            "model": f"{c.provider}/{c.model}",
            "finish_reason": c.finish_reason,
            "usage": usage_dict(usage),
            "cost_usd": cost,
            "decision": decision(call.ex.guard, call.out, 200),
            "latency_ms": _ms(call.ex.started),
        }
        found = verdicts(call.ex.guard, call.out)
        if found:
            answer["guard"] = found
        if c.tool_calls:
            answer["tool_calls"] = c.tool_calls
        return answer

    def _chat_answer(
        self, call: _Call, c: Completion, usage: Usage, cost: float, text: str
    ) -> dict[str, Any]:
        response = dict(c.response or {})
        if text != c.text and response.get("choices"):
            first = dict(response["choices"][0])
            first["message"] = {**first.get("message", {}), "content": text}
            response["choices"] = [first, *response["choices"][1:]]
        response["id"] = call.record_id
        response["usage"] = openai_usage(usage, (c.response or {}).get("usage"))
        response["prodgate"] = self._extension(call, c, usage, cost)
        return response

    def _extension(self, call: _Call, c: Completion, usage: Usage, cost: float) -> dict[str, Any]:
        extension: dict[str, Any] = {
            "inference_id": call.record_id,
            "service": self.name,
            "version": call.live.version.number,
            "model": f"{c.provider}/{c.model}",
            "cost_usd": cost,
            "usage_estimated": usage.estimated,
            "decision": decision(call.ex.guard, call.out, 200),
        }
        found = verdicts(call.ex.guard, call.out)
        if found:
            extension["guard"] = found
        return extension

    # -- streamed --------------------------------------------------------------------

    async def _stream(self, call: _Call, include_usage: bool) -> Outcome:
        await self._reserve(call)
        call.start_ns = time.time_ns()
        stream = call.endpoint.route.stream(call.body)
        events = stream.__aiter__()
        try:
            first = await events.__anext__()
        except StopAsyncIteration:
            first = None
        except RouteFailed as failed:  # before the first chunk: an ordinary failure
            completion = failed.completion
            failure = failure_of(completion)
            usage, cost = usage_and_cost(call.endpoint, call.body, completion)
            await self._settle(call, usage, cost)
            await self._record(call, completion, usage, cost, failure.status, failure, None)
            body = failure.problem()
            body["id"] = call.record_id
            return Outcome(failure.status, body, retry_after(failure))
        lease, call.ex.lease = call.ex.lease, None  # held until the stream ends
        return Outcome(
            200,
            {},
            {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            stream=self._events(call, stream, events, first, include_usage, lease),
        )

    async def _events(
        self,
        call: _Call,
        stream: Any,
        events: AsyncIterator[dict[str, Any]],
        first: dict[str, Any] | None,
        include_usage: bool,
        lease: Any,
    ) -> AsyncIterator[bytes]:
        rid = call.record_id
        failure: ProdgateError | None = None
        finished = False
        pending: asyncio.Queue[Any] = asyncio.Queue()
        reader = asyncio.get_running_loop().create_task(pump(events, pending))
        if self.rails.output.on:
            call.screen = self.rails.stream(self._context(call))
        screen = call.screen
        try:
            if first is not None and first.get("choices"):
                first["id"] = rid
                shown = screened(screen, first) if screen is not None else first
                if shown is not None:
                    yield wire.sse(shown)
            done = False
            while not done:
                # What arrived together goes out together: every chunk one network read
                # brought is in the queue by now, and one write (not one each) sends them.
                items = [await pending.get()]
                while not pending.empty():
                    items.append(pending.get_nowait())
                out = []
                for item in items:
                    if item is END:
                        done = True
                        break
                    if isinstance(item, BaseException):
                        raise item
                    if not item.get("choices"):
                        continue  # the usage chunk: sent last, with the prodgate figures
                    item["id"] = rid
                    if screen is not None:
                        item = screened(screen, item)
                        if item is None:
                            continue
                    out.append(wire.sse(item))
                if screen is not None and done:  # the rest of a stream without finish_reason
                    rest = tail(screen, rid, stream.completion.model)
                    if rest is not None:
                        out.append(wire.sse(rest))
                if out:
                    yield b"".join(out)
        except ProdgateError as exc:
            failure = exc
        except RouteFailed as failed:
            failure = failure_of(failed.completion)
        except Exception as exc:  # an upstream error after the first chunk
            failure = UpstreamFailedError(f"the stream broke after it began: {exc}")
        else:
            finished = True
        finally:
            if not reader.done():  # the caller went away: stop reading for nobody
                reader.cancel()
            if not finished and failure is None:  # the caller went away (cancelled)
                task = asyncio.ensure_future(
                    self._finish_stream(call, stream, None, CLIENT_CLOSED, lease)
                )
                self._finishing.add(task)
                task.add_done_callback(self._finishing.discard)
        if not finished and failure is None:
            return
        completion: Completion = stream.completion
        usage, cost = await self._finish_stream(
            call, stream, failure, 200 if failure is None else failure.status, lease
        )
        if failure is not None:
            yield wire.error_event(failure, rid)
            return
        if not include_usage:
            yield wire.DONE
            return
        usage_chunk = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": completion.model,
            "choices": [],
            "usage": openai_usage(usage, None),
            "prodgate": self._extension(call, completion, usage, cost),
        }
        yield wire.sse(usage_chunk) + wire.DONE

    async def _finish_stream(
        self, call: _Call, stream: Any, failure: ProdgateError | None, status: int, lease: Any
    ) -> tuple[Usage, float]:
        """Settle, record (durably) and give back the slots of a stream that ended."""
        completion: Completion = stream.completion
        try:
            if status != 200:  # the caller went away, or the stream was stopped
                with contextlib.suppress(Exception):
                    await stream.aclose()
            if call.screen is not None:
                call.out = call.screen.verdict()
                self.rails.count(call.screen.hits, OUTPUT)
            usage, cost = usage_and_cost(call.endpoint, call.body, completion)
            trace_call(self.telemetry, call.endpoint, call.body, completion, usage, call.start_ns)
            await self._settle(call, usage, cost)
            await self._record(call, completion, usage, cost, status, failure, None, stream=True)
            return usage, cost
        finally:
            if lease is not None:
                await self.limits.limiter.release(lease)

    # -- usage, cost, record ---------------------------------------------------------

    async def _record(
        self,
        call: _Call,
        c: Completion,
        usage: Usage,
        cost: float,
        status: int,
        failure: ProdgateError | None,
        parsed: Any,
        *,
        stream: bool = False,
        action: str = "predict",
    ) -> None:
        ex, version = call.ex, call.live.version.number
        llm = llm_section(c, call.mode, call.endpoint.prompt_model, usage, cost, stream=stream)
        out = call.out
        output: dict[str, Any] = {"text": out.masked if out is not None else c.text}
        if parsed is not None:
            output["parsed"] = parsed
        if c.tool_calls:
            output["tool_calls"] = c.tool_calls
        if ex.guard is not None and ex.guard.sensitive:  # an answer repeating them
            output = mask(output, ex.guard.sensitive)
        error: dict[str, Any] | None = None
        if failure is not None:
            error = {"problem": failure.slug, "detail": failure.detail}
            if isinstance(failure, OutputContractError):
                error["errors"] = [v.as_dict() for v in failure.violations]
        elif status == CLIENT_CLOSED:
            error = {"problem": "client-closed", "detail": "the caller went away mid-stream"}
        if call.mode == "predict":
            inp: Any = ex.masked["inputs"] if ex.masked is not None else ex.rows[0]
        else:
            inp = {"messages": call.recorded_messages or call.body["messages"]}
        found = verdicts(call.ex.guard, call.out)
        if found:
            error = {**(error or {}), "guard": found}
        latency_ms = _ms(ex.started)
        record = llm_record(
            record_id=call.record_id,
            service=self.name,
            version=version,
            status=status,
            decision=decision(call.ex.guard, call.out, status),
            input=inp,
            output=output,
            llm=llm,
            ts_us=now_us(),
            latency_ms=latency_ms,
            caller=ex.caller,
            error=error,
            action=action,
        )
        if self.entry.on and action == "predict" and status == 200:
            self.entry.mark([record])
        await self.recorder.record([record])
        if action == "predict":
            self.counts.count(
                str(version),
                ex.caller.key_id or "-",
                call.endpoint.prompt_model,
                c,
                usage,
                cost,
                status,
                failure,
                latency_ms,
            )

    async def close(self) -> None:
        """Wait for the records of streams whose callers went away."""
        if self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)


def _checks_output(call: _Call, c: Completion) -> bool:
    """Whether the answer is held to the output contract: it is, unless the chat caller
    asked for another format of its own, or the model answered with tool calls only."""
    if c.tool_calls and not c.text:
        return False
    return call.mode == "predict" or "response_format" not in call.ex.chat.params


def _endpoint(live: Live) -> Endpoint:
    endpoint = live.endpoint
    assert endpoint is not None  # the fleet loads every version of an llm service so
    return endpoint


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
