"""A small loopback server that breaks the Voxtral API's contract on request.

The request's ``input`` names the fault; each answer is what a misbehaving upstream or a
bad network would produce. Everything else about the API is the embedded engine's job.
The app counts the requests for each input in ``app[ATTEMPTS]``, so a test can see retries.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter

from aiohttp import web

DELTA = (
    b'event: speech.audio.delta\ndata: {"audio_data": "'
    + base64.b64encode(b"\0\1" * 480)
    + b'"}\n\n'
)
DONE = b"event: speech.audio.done\ndata: {}\n\n"
ATTEMPTS = web.AppKey("attempts", Counter[str])


async def _sse(request: web.Request, *parts: bytes, pause: float = 0.0) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for part in parts:
        await response.write(part)
        await asyncio.sleep(pause)
    return response


async def _silence(request: web.Request) -> None:
    """Say nothing more, the connection open, until the client hangs up."""
    while request.transport is not None and not request.transport.is_closing():
        await asyncio.sleep(0.05)


async def stream(request: web.Request) -> web.StreamResponse:
    fault = (await request.json())["input"]
    request.app[ATTEMPTS][fault] += 1
    if fault == "stall":  # once: a retry of it is answered in full
        if request.app[ATTEMPTS][fault] > 1:
            return await _sse(request, *([DELTA] * 8), DONE)
        response = await _sse(request, DELTA, DELTA, DELTA)
        await _silence(request)
        return response
    if fault == "truncated":
        return await _sse(request, DELTA, DELTA)
    if fault == "malformed-json":
        return await _sse(request, DELTA, b"event: speech.audio.delta\ndata: {nope\n\n", DONE)
    if fault == "bad-base64":
        return await _sse(request, b'event: speech.audio.delta\ndata: {"audio_data": "@@"}\n\n')
    if fault == "error-event":
        return await _sse(
            request, DELTA, b'event: error\ndata: {"code": 500, "message": "gpu on fire"}\n\n'
        )
    if fault == "slow-first-byte":
        await asyncio.sleep(2)
        return await _sse(request, DELTA, DONE)
    if fault == "trickle":
        return await _sse(request, *([DELTA] * 40), DONE, pause=0.1)
    if fault == "brisk":
        return await _sse(request, *([DELTA] * 20), DONE, pause=0.02)
    if fault == "odd-bytes":
        odd = base64.b64encode(b"\1\2\3")
        return await _sse(
            request,
            b'event: speech.audio.delta\ndata: {"audio_data": "' + odd + b'"}\n\n',
            DELTA,
            DONE,
        )
    if fault == "ok":
        return await _sse(request, DELTA, b": comment\n\n", DELTA, DONE)
    return await _status(fault)


async def generate(request: web.Request) -> web.Response:
    return await _status((await request.json())["input"])


async def _status(fault: str) -> web.Response:
    if fault == "busy":
        return web.json_response(
            {"code": 503, "message": "overloaded"}, status=503, headers={"Retry-After": "7"}
        )
    if fault == "rate-limited":
        return web.json_response(
            {"code": 429, "message": "slow down"},
            status=429,
            headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
        )
    if fault == "bad-request":
        return web.json_response({"code": 400, "message": "input too long"}, status=400)
    if fault == "envelope-error":
        return web.json_response({"code": 1234, "message": "quota", "data": None})
    if fault == "redirect":
        raise web.HTTPFound("http://127.0.0.1:9/steal-your-key")
    if fault == "html":
        return web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html")
    if fault == "no-envelope":
        return web.json_response({"audio_data": "AAAA"})
    raise web.HTTPNotFound()


def create_faulty_app() -> web.Application:
    app = web.Application()
    app[ATTEMPTS] = Counter()
    app.add_routes([web.post("/api/tts/stream", stream), web.post("/api/tts/generate", generate)])
    return app
