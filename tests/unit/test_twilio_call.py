"""The fake Twilio's own behaviour, against a tiny WebSocket server written here: the messages
it sends as Twilio documents them, its playback of the server's audio, the marks it echoes and
when, ``clear``, what it refuses, and the signature on its handshake."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes.twilio_call import (
    CALLER_FRAME,
    OutboundBuffer,
    TwilioCall,
    mulaw_decode,
    mulaw_encode,
    signature,
)

PATH = "/v1/telephony/twilio"
AUDIO = bytes(range(256)) * 31 + bytes(range(64))  # 1 s of μ-law, every byte value in turn
TOLERANCE_S = 0.08

ServerFactory = Callable[..., Awaitable[TestServer]]


@dataclass
class Seen:
    """What the server saw: the handshake's signature, and each message with its loop time."""

    url: str = ""
    signature: str | None = None
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)  # what the script sent, when
    close_code: int | None = None

    def of(self, event: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if m.get("event") == event]

    async def stream_sid(self) -> str:
        while not self.of("start"):
            await asyncio.sleep(0.001)
        return str(self.of("start")[0]["streamSid"])


Script = Callable[[web.WebSocketResponse, Seen], Coroutine[Any, Any, None]]


async def stream_server(aiohttp_server: ServerFactory, script: Script | None = None) -> Seen:
    """Serve one Media Stream at ``PATH``; ``script`` speaks for the server."""
    seen = Seen()
    loop = asyncio.get_running_loop()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        seen.signature = request.headers.get("X-Twilio-Signature")
        speaking = asyncio.create_task(script(ws, seen)) if script else None
        async for msg in ws:
            seen.messages.append((loop.time(), json.loads(msg.data)))
        seen.close_code = ws.close_code
        if speaking:
            speaking.cancel()
        return ws

    app = web.Application()
    app.router.add_get(PATH, handle)
    server = await aiohttp_server(app)
    seen.url = str(server.make_url(PATH)).replace("http", "ws", 1)
    return seen


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def media(sid: str, audio: bytes) -> dict[str, Any]:
    return {
        "event": "media",
        "streamSid": sid,
        "media": {"payload": base64.b64encode(audio).decode()},
    }


def mark(sid: str, name: str) -> dict[str, Any]:
    return {"event": "mark", "streamSid": sid, "mark": {"name": name}}


async def speak(ws: web.WebSocketResponse, sid: str, audio: bytes, marks: dict[int, str]) -> None:
    """``audio`` in 20 ms messages as fast as they go, each mark after the byte it names."""
    for at in range(0, len(audio), 160):
        await ws.send_json(media(sid, audio[at : at + 160]))
        if at + 160 in marks:
            await ws.send_json(mark(sid, marks[at + 160]))


# The codec, the signature and the buffer, without a socket


def test_mulaw_decoder_gives_g711_values_and_the_encoder_inverts_it() -> None:
    every_code = bytes(range(256))
    pcm = mulaw_decode(every_code)
    assert pcm[0xFF] == pcm[0x7F] == 0
    assert pcm[0x80] == 32124
    assert pcm[0x00] == -32124
    assert pcm[0xEF] == 132
    assert pcm[0x6F] == -132
    assert pcm[0xFE] == 8
    assert pcm[0x7E] == -8
    assert np.all(np.diff(pcm[0x80:].astype(int)) < 0)  # magnitude falls as the code rises
    assert mulaw_encode(pcm) == every_code.replace(b"\x7f", b"\xff")  # -0 encodes as +0


def test_signature_is_twilios_documented_example() -> None:
    # https://www.twilio.com/docs/usage/security#validating-requests
    params = {
        "Digits": "1234",
        "To": "+18005551212",
        "From": "+14158675310",
        "Caller": "+14158675310",
        "CallSid": "CA1234567890ABCDE",
    }
    url = "https://example.com/myapp.php?foo=1&bar=2"
    assert signature("12345", url, params) == "L/OH5YylLD5NRKLltdqwSvS0BnU="


def test_buffer_plays_in_real_time_and_reaches_marks_in_order() -> None:
    buffer = OutboundBuffer()
    assert buffer.append(10.0, AUDIO[:4000]) == []
    assert buffer.mark(10.0, "half") == []
    assert buffer.append(10.0, AUDIO[4000:]) == []
    assert buffer.mark(10.0, "end") == []
    assert buffer.due(10.499) == []
    assert buffer.due(10.5) == ["half"]
    assert buffer.played == AUDIO[:4000]
    assert buffer.due(10.9) == []
    assert buffer.due(11.0) == ["end"]
    assert buffer.played == AUDIO
    assert buffer.mark(12.0, "idle") == ["idle"]  # nothing buffered: echoed at once


def test_buffer_resumes_when_audio_comes_after_it_ran_dry() -> None:
    buffer = OutboundBuffer()
    buffer.append(0.0, AUDIO[:800])
    buffer.due(1.0)
    buffer.append(1.0, AUDIO[800:1600])
    buffer.due(1.05)
    assert len(buffer.played) == 1200


def test_buffer_clear_drops_the_rest_and_gives_back_every_pending_mark() -> None:
    buffer = OutboundBuffer()
    buffer.append(0.0, AUDIO)
    buffer.mark(0.0, "a")
    buffer.append(0.0, AUDIO)
    buffer.mark(0.0, "b")
    assert buffer.clear(0.25) == ["a", "b"]
    buffer.due(5.0)
    assert buffer.played == AUDIO[:2000]


# Over a socket


async def test_connected_then_start_then_every_message_numbered(
    aiohttp_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    seen = await stream_server(aiohttp_server)
    params = {"session": "s-1", "caller": "+14155550100"}
    async with TwilioCall.connect(
        http, seen.url, custom_parameters=params, send_caller_audio=False
    ) as call:
        await call.dtmf("5")
        await call.send_raw({"event": "anything"})  # as is, and not numbered
        await call.dtmf("#")
    await asyncio.sleep(0.05)
    messages = [m for _, m in seen.messages]
    assert messages[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = messages[1]
    assert start["event"] == "start"
    assert start["sequenceNumber"] == "1"
    assert re.fullmatch("MZ[0-9a-f]{32}", start["streamSid"])
    assert start["streamSid"] == call.stream_sid
    assert start["start"] == {
        "accountSid": call.account_sid,
        "streamSid": call.stream_sid,
        "callSid": call.call_sid,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": params,
    }
    assert re.fullmatch("AC[0-9a-f]{32}", call.account_sid)
    assert re.fullmatch("CA[0-9a-f]{32}", call.call_sid)
    dtmf = {"track": "inbound_track", "digit": "5"}
    assert messages[2] == {
        "event": "dtmf",
        "sequenceNumber": "2",
        "dtmf": dtmf,
        "streamSid": call.stream_sid,
    }
    assert messages[3] == {"event": "anything"}
    assert messages[4]["sequenceNumber"] == "3"
    assert messages[4]["dtmf"]["digit"] == "#"
    stop = {"accountSid": call.account_sid, "callSid": call.call_sid}
    assert messages[5] == {
        "event": "stop",
        "sequenceNumber": "4",
        "stop": stop,
        "streamSid": call.stream_sid,
    }
    assert len(messages) == 6
    assert seen.close_code == 1000
    with pytest.raises(ValueError, match="not a key"):
        await call.dtmf("x")


async def test_caller_audio_is_a_tone_in_160_byte_frames_every_20_ms(
    aiohttp_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    seen = await stream_server(aiohttp_server)
    async with TwilioCall.connect(
        http, seen.url, custom_parameters={}, stream_sid="MZ" + "0" * 32, call_sid="CA" + "1" * 32
    ) as call:
        await call.wait_for(lambda: len(seen.of("media")) >= 26, timeout=2)
    arrivals = [t for t, m in seen.messages if m["event"] == "media"][:26]
    frames = seen.of("media")[:26]
    for n, frame in enumerate(frames, start=1):
        assert frame["sequenceNumber"] == str(n + 1)
        assert frame["streamSid"] == "MZ" + "0" * 32
        assert frame["media"]["track"] == "inbound"
        assert frame["media"]["chunk"] == str(n)
        assert frame["media"]["timestamp"] == str((n - 1) * 20)
        assert base64.b64decode(frame["media"]["payload"]) == CALLER_FRAME
    assert len(CALLER_FRAME) == 160
    pcm = mulaw_decode(CALLER_FRAME).astype(float)
    assert np.sqrt(np.mean(pcm**2)) > 1000  # far from silence
    gaps = np.diff(arrivals)
    assert 0.015 < statistics.median(gaps) < 0.025
    assert abs(arrivals[-1] - arrivals[0] - 25 * 0.020) < 0.04  # no drift
    assert call.call_sid == "CA" + "1" * 32
    assert seen.of("stop")[0]["stop"]["callSid"] == call.call_sid


async def test_a_mark_comes_back_once_the_audio_before_it_has_played(
    aiohttp_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async def script(ws: web.WebSocketResponse, seen: Seen) -> None:
        sid = await seen.stream_sid()
        seen.sent_at["audio"] = asyncio.get_running_loop().time()
        await speak(ws, sid, AUDIO, {4000: "half", 8000: "end"})

    seen = await stream_server(aiohttp_server, script)
    async with TwilioCall.connect(
        http, seen.url, custom_parameters={}, send_caller_audio=False
    ) as call:
        await call.wait_for(lambda: len(call.marks_echoed) == 1, timeout=2)
        assert 450 < call.played_ms() < 600
        await call.wait_for(lambda: len(call.marks_echoed) == 2, timeout=2)
        await call.wait_for(lambda: len(seen.of("mark")) == 2, timeout=1)
    first_audio = seen.sent_at["audio"]
    (half, half_at), (end, end_at) = call.marks_echoed
    assert (half, end) == ("half", "end")
    assert call.marks_received == ["half", "end"]
    assert 0.5 <= half_at - first_audio < 0.5 + TOLERANCE_S
    assert 1.0 <= end_at - first_audio < 1.0 + TOLERANCE_S
    echo = seen.of("mark")[0]
    assert echo == {
        "event": "mark",
        "sequenceNumber": "2",
        "mark": {"name": "half"},
        "streamSid": call.stream_sid,
    }
    assert call.played == AUDIO
    assert call.played_ms() == 1000
    assert call.received_media_messages == 50
    assert call.protocol_errors == []
    assert np.array_equal(call.played_pcm(), mulaw_decode(AUDIO))


async def test_clear_gives_back_the_pending_marks_at_once_and_stops_playback(
    aiohttp_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async def script(ws: web.WebSocketResponse, seen: Seen) -> None:
        sid = await seen.stream_sid()
        loop = asyncio.get_running_loop()
        seen.sent_at["audio"] = loop.time()
        await speak(ws, sid, AUDIO, {1920: "a", 4000: "b", 8000: "c"})
        await asyncio.sleep(0.35)
        seen.sent_at["clear"] = loop.time()
        await ws.send_json({"event": "clear", "streamSid": sid})

    seen = await stream_server(aiohttp_server, script)
    async with TwilioCall.connect(
        http, seen.url, custom_parameters={}, send_caller_audio=False
    ) as call:
        await call.wait_for(lambda: len(call.marks_echoed) == 3, timeout=2)
        played_at_clear = call.played_ms()
        await asyncio.sleep(0.2)
        assert call.played_ms() == played_at_clear
    first_audio, clear = seen.sent_at["audio"], seen.sent_at["clear"]
    assert [name for name, _ in call.marks_echoed] == ["a", "b", "c"]
    assert 0.24 <= call.marks_echoed[0][1] - first_audio < 0.24 + TOLERANCE_S
    assert all(0 <= at - clear < 0.03 for _, at in call.marks_echoed[1:])
    assert len(call.clears) == 1
    assert 0 <= call.clears[0] - clear < 0.03
    assert 350 <= played_at_clear < 350 + TOLERANCE_S * 1000
    assert call.played == AUDIO[: len(call.played)]


async def test_a_mark_with_nothing_buffered_comes_back_at_once_and_playback_resumes(
    aiohttp_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async def script(ws: web.WebSocketResponse, seen: Seen) -> None:
        sid = await seen.stream_sid()
        loop = asyncio.get_running_loop()
        await speak(ws, sid, AUDIO[:800], {})
        await asyncio.sleep(0.3)  # the 100 ms have played: the buffer ran dry
        seen.sent_at["mark"] = loop.time()
        await ws.send_json(mark(sid, "idle"))
        await speak(ws, sid, AUDIO[800:1600], {})

    seen = await stream_server(aiohttp_server, script)
    async with TwilioCall.connect(
        http, seen.url, custom_parameters={}, send_caller_audio=False
    ) as call:
        await call.wait_for(lambda: call.marks_echoed, timeout=2)
        assert call.marks_echoed[0][1] - seen.sent_at["mark"] < 0.03
        await call.wait_for(lambda: call.played_ms() == 200, timeout=1)
    assert call.played == AUDIO[:1600]


async def test_what_twilio_would_refuse_is_recorded_and_not_played(
    aiohttp_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async def script(ws: web.WebSocketResponse, seen: Seen) -> None:
        sid = await seen.stream_sid()
        await ws.send_bytes(b"\xff" * 160)
        await ws.send_str("not json")
        await ws.send_str("[1, 2]")
        await ws.send_json({"event": "start", "streamSid": sid})
        await ws.send_json(media("MZ" + "f" * 32, AUDIO[:160]))
        await ws.send_json({"event": "media", "media": {"payload": "AAAA"}})
        await ws.send_json({"event": "media", "streamSid": sid, "media": {"payload": "@@@@"}})
        await ws.send_json({"event": "media", "streamSid": sid, "media": {"payload": "AAA"}})
        await ws.send_json({"event": "media", "streamSid": sid})
        await ws.send_json({"event": "mark", "streamSid": sid, "mark": {}})
        await ws.send_json({"event": "clear"})
        await ws.send_json(mark(sid, "still here"))

    seen = await stream_server(aiohttp_server, script)
    async with TwilioCall.connect(
        http, seen.url, custom_parameters={}, send_caller_audio=False
    ) as call:
        await call.wait_for(lambda: call.marks_echoed, timeout=2)
    assert len(call.protocol_errors) == 11, call.protocol_errors
    assert "binary" in call.protocol_errors[0]
    assert "not JSON" in call.protocol_errors[1]
    assert [name for name, _ in call.marks_echoed] == ["still here"]
    assert call.played == b""
    assert call.received_media_messages == 0
    assert call.clears == []
    assert len(call.messages) == 9  # every JSON object, refused or not


async def test_the_server_closing_is_recorded(
    aiohttp_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async def script(ws: web.WebSocketResponse, seen: Seen) -> None:
        await seen.stream_sid()
        await ws.close(code=4000, message=b"session over")

    seen = await stream_server(aiohttp_server, script)
    async with TwilioCall.connect(http, seen.url, custom_parameters={}) as call:
        await call.wait_for(lambda: call.close_code is not None, timeout=2)
        with pytest.raises(TimeoutError, match="closed 4000 'session over'"):
            await call.wait_for(lambda: False, timeout=0.05)
    assert (call.close_code, call.close_reason) == (4000, "session over")
    assert seen.of("stop") == []  # the socket was gone before the hang-up


async def test_the_handshake_is_signed_as_twilio_signs_the_stream_url(
    aiohttp_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    seen = await stream_server(aiohttp_server)
    async with TwilioCall.connect(
        http, seen.url, custom_parameters={}, auth_token="tok3n", send_caller_audio=False
    ):
        pass
    digest = hmac.new(b"tok3n", seen.url.encode(), hashlib.sha1).digest()
    assert seen.signature == base64.b64encode(digest).decode()

    public = "wss://voice.example.com/v1/telephony/twilio"
    async with TwilioCall.connect(
        http, seen.url, custom_parameters={}, auth_token="tok3n", signed_url=public
    ):
        pass
    digest = hmac.new(b"tok3n", public.encode(), hashlib.sha1).digest()
    assert seen.signature == base64.b64encode(digest).decode()

    async with TwilioCall.connect(http, seen.url, custom_parameters={}):
        pass
    assert seen.signature is None
