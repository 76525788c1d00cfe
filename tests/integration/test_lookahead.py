"""Lookahead: what a session holds ahead of its listener stays bounded, on every sink.

A 4,000-character turn is given at once (an LLM answer pasted whole) while the listener
takes its audio: in real time over the socket with realtime pacing and over WebRTC, and as
fast as it comes with fast pacing. The embedded engine synthesises far faster than real
time, so without the bounds the whole turn would be held within a second. Credits held are
read as a client reads them (``usage.get``).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import Target
from tests.gateway_harness import Gateway, Received, receive_until, running_gateway
from tests.integration.test_whep import Listener, offer_to_session, open_session, wait_for
from voxgate.codecs.opus_toc import packet_samples
from voxgate.gateway.protocol import unpack_audio_frame

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(120)]

SENTENCES = [
    "Your order shipped on Monday and should arrive by Thursday afternoon.",
    "If it does not, call us back and we will send another one at once.",
    "The warranty covers parts and labour for two years from the day of delivery.",
    "Keep the receipt, because the repair shop will ask for it.",
]
LONG_TURN = " ".join(SENTENCES[i % len(SENTENCES)] for i in range(58))  # ~4,000 characters
MAX_HELD_CREDITS = 1500
MAX_HELD_CHUNKS = 3
MAX_AHEAD_MS = 8000
WATCH_S = 5.0


class Watch:
    """What the session holds, sampled while the turn plays."""

    def __init__(self) -> None:
        self.held_credits: list[int] = []
        self.held_chunks: list[int] = []
        self.ahead_ms: list[float] = []


async def watch_usage(
    ws: aiohttp.ClientWebSocketResponse, gateway: Gateway, session_id: str, watch: Watch
) -> None:
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        await ws.send_json({"type": "usage.get"})
        session = gateway.services.live_sessions[session_id].session
        if session is not None:
            chunks, _ = session.held()
            watch.held_chunks.append(chunks)
            watch.ahead_ms.append(session.ahead_ms())
        await asyncio.sleep(0.1)


async def read_audio(
    ws: aiohttp.ClientWebSocketResponse, watch: Watch, *, real_time: bool = True
) -> Received:
    """A listener that takes audio as fast as it plays it (24 kHz PCM or Opus), or as it
    comes."""
    received = Received()
    started = time.monotonic()
    played_ms = 0.0
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.BINARY:
            frame = unpack_audio_frame(msg.data)
            received.frames.append(frame)
            opus = frame[0] == "opus"
            played_ms += packet_samples(frame[4]) / 48 if opus else len(frame[4]) / 48
            ahead = started + played_ms / 1000 - time.monotonic()
            if ahead > 0 and real_time:
                await asyncio.sleep(ahead)
            continue
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        message: dict[str, Any] = json.loads(msg.data)
        received.messages.append(message)
        if message["type"] == "usage":
            watch.held_credits.append(message["session_held"])
        if message["type"] in ("interrupted", "context.done"):
            return received


def assert_bounded(watch: Watch) -> None:
    assert len(watch.held_credits) >= 5
    assert max(watch.held_credits) <= MAX_HELD_CREDITS, watch.held_credits
    assert max(watch.held_chunks) <= MAX_HELD_CHUNKS, watch.held_chunks
    # A fetch stops reading at the bound; one SSE delta may land beyond it.
    assert max(watch.ahead_ms) <= MAX_AHEAD_MS + 1000, str([round(a) for a in watch.ahead_ms])
    assert max(watch.held_credits) > 0  # the turn was really under way


@pytest.mark.parametrize("pacing", ["realtime", "fast"])
@pytest.mark.parametrize("encoding", ["pcm_s16le", "opus"])  # opus: passed through
async def test_a_long_turn_holds_no_more_than_the_lookahead_on_the_socket(
    gateway: Gateway, pacing: str, encoding: str
) -> None:
    async with aiohttp.ClientSession() as http:
        ws, received, session_id = await open_session(http, gateway)
        update = {"type": "session.update", "pacing": pacing}
        await ws.send_json({**update, "output_format": {"encoding": encoding}})
        await receive_until(ws, "session.updated", received)
        await ws.send_json({"type": "text.append", "text": LONG_TURN})
        await ws.send_json({"type": "context.close"})
        watch = Watch()
        reader = asyncio.create_task(read_audio(ws, watch, real_time=pacing == "realtime"))
        await watch_usage(ws, gateway, session_id, watch)
        await ws.send_json({"type": "interrupt"})
        result = await reader
        assert_bounded(watch)
        if pacing == "realtime":
            interrupted = result.of("interrupted")[0]
            assert interrupted["heard"] + interrupted["unheard"] == LONG_TURN
        else:  # a reader that takes audio as it comes may have had the whole turn by now
            ended = result.of("interrupted") or result.of("context.done")
            assert ended
        await ws.send_json({"type": "usage.get"})
        after = await receive_until(ws, "usage", Received())
        assert after.of("usage")[0]["session_held"] == 0
        await ws.close()


@pytest.mark.parametrize("passthrough", [True, False], ids=["passthrough", "encode"])
async def test_a_long_turn_holds_no_more_than_the_lookahead_over_webrtc(
    target: Target, passthrough: bool
) -> None:
    async with (
        running_gateway(target, opus_passthrough=passthrough) as gateway,
        aiohttp.ClientSession() as http,
    ):
        ws, _, session_id = await open_session(http, gateway)
        listener = Listener()
        response = await offer_to_session(http, gateway, session_id, listener)
        await listener.answer(await response.text())
        await wait_for(lambda: listener.pc.connectionState == "connected")
        await ws.send_json({"type": "text.append", "text": LONG_TURN})
        await ws.send_json({"type": "context.close"})
        watch = Watch()
        reader = asyncio.create_task(read_audio(ws, watch))
        await watch_usage(ws, gateway, session_id, watch)
        await ws.send_json({"type": "interrupt"})
        result = await reader
        assert_bounded(watch)
        assert result.of("interrupted")[0]["played_ms"] > 3000  # it really played meanwhile
        await listener.close()
        await ws.close()
