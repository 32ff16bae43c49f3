"""The floor: a bare aiohttp passthrough in front of an OpenAI-compatible upstream.

``POST /v1/chat/completions`` reads the body, forwards it unchanged to the upstream
with one shared ``aiohttp.ClientSession`` and returns its answer, streaming it chunk
by chunk when the upstream streams. No key, no limit, no record, no parsing: what a
Python gateway on aiohttp costs at the very least (uvloop when installed, as prodgate
and LiteLLM run on it). ``GET /healthz`` answers 200 for the benchmark's probe.

Run it by hand (``bench/llm_gateway.py`` does this for you)::

    .venv/bin/python bench/llm_passthrough.py --port 8003 --upstream http://127.0.0.1:8001/v1
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web


async def chat(request: web.Request) -> web.StreamResponse:
    headers = {"Content-Type": "application/json"}
    session, url = request.app["session"], request.app["url"]
    async with session.post(url, data=await request.read(), headers=headers) as upstream:
        if upstream.content_type != "text/event-stream":
            body = await upstream.read()
            return web.Response(status=upstream.status, body=body, content_type="application/json")
        answer = web.StreamResponse(status=upstream.status)
        answer.content_type = "text/event-stream"
        await answer.prepare(request)
        async for chunk in upstream.content.iter_any():
            await answer.write(chunk)
        await answer.write_eof()
        return answer


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def app(upstream: str) -> web.Application:
    application = web.Application()
    application["url"] = upstream.rstrip("/") + "/chat/completions"

    async def session(application: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=0)  # as many connections as requests in flight
        async with aiohttp.ClientSession(connector=connector) as s:
            application["session"] = s
            yield

    application.cleanup_ctx.append(session)
    application.add_routes([web.post("/v1/chat/completions", chat), web.get("/healthz", healthz)])
    return application


def main() -> None:
    p = argparse.ArgumentParser(description="A bare aiohttp passthrough to an OpenAI upstream.")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="the upstream's base URL, ending /v1")
    args = p.parse_args()
    try:
        import uvloop
    except ImportError:
        loop = None
    else:
        loop = uvloop.new_event_loop()
    web.run_app(
        app(args.upstream), host="127.0.0.1", port=args.port, access_log=None, print=None, loop=loop
    )


if __name__ == "__main__":
    main()
