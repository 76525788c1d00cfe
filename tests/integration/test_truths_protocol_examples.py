"""docs/protocol.md's barge-in example, replayed against a real gateway: the server answers
what the page says it answers."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.gateway_harness import Gateway, Received, receive_until
from voxgate.gateway.protocol import unpack_audio_frame

pytestmark = pytest.mark.engine_only

PROTOCOL_MD = Path(__file__).parents[2] / "docs" / "protocol.md"
FRAME_MS = 20  # realtime pacing sends PCM in 20 ms frames


def documented_barge_in() -> tuple[dict[str, Any], float, dict[str, Any]]:
    """The example of the "Interrupt (barge-in)" section: (interrupt sent, audio the client
    had received when it sent it in ms, interrupted answered)."""
    section = PROTOCOL_MD.read_text().split("## Interrupt (barge-in)", 1)[1]
    block = section.split("```", 2)[1]
    sent = [_json(line) for line in block.splitlines() if line.startswith("-> {")]
    answers = [_json(line) for line in block.splitlines() if line.startswith("<- {")]
    received = re.search(r"binary: (\d+) ms of audio received", block)
    assert received is not None, "the example no longer says how much audio the client had"
    interrupt = next(m for m in sent if m["type"] == "interrupt")
    interrupted = next(m for m in answers if m["type"] == "interrupted")
    return interrupt, float(received.group(1)), interrupted


def _json(line: str) -> Any:
    """The JSON object of a transcript line, without the direction and any remark after it."""
    return json.JSONDecoder().raw_decode(line[3:])[0]


def audio_ms(received: Received) -> float:
    return len(received.audio("t1")) / 48  # pcm_s16le at 24 kHz: 48 bytes a millisecond


async def receive_audio(
    ws: aiohttp.ClientWebSocketResponse, received: Received, until_ms: float
) -> None:
    """Read messages and frames until ``until_ms`` of context t1's audio has arrived."""
    async with asyncio.timeout(30):
        while audio_ms(received) < until_ms:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                received.messages.append(json.loads(msg.data))
            else:
                assert msg.type is aiohttp.WSMsgType.BINARY, msg
                received.frames.append(unpack_audio_frame(msg.data))


async def test_the_documented_barge_in_is_what_the_server_answers(gateway: Gateway) -> None:
    interrupt, had_ms, documented = documented_barge_in()
    text = documented["heard"] + documented["unheard"]  # the whole text, normalised
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            gateway.ws_url, headers={"Authorization": f"Bearer {gateway.api_key}"}
        )
        received = await receive_until(ws, "session.created", Received())
        await ws.send_json({"type": "session.update", "pacing": "realtime"})
        await ws.send_json({"type": "text.append", "text": text, "context_id": "t1"})
        await ws.send_json({"type": "context.close", "context_id": "t1"})
        await receive_audio(ws, received, had_ms)
        await ws.send_json(interrupt)
        await receive_until(ws, "interrupted", received)
        answer = received.of("interrupted")[0]
        await ws.close()
    for field in ("context_id", "heard", "unheard", "played_ms", "event_id"):
        assert answer[field] == documented[field], field
    assert answer["usage"]["chunks"] == documented["usage"]["chunks"]
    # Delivered is what the socket wrote: every frame the client got before `interrupted`.
    assert abs(answer["usage"]["audio_ms"] - audio_ms(received)) <= FRAME_MS
    # A busy machine may write a frame or two more before the interrupt is read; within
    # the word "keeps" (959-1302 ms of espeak's speech) the charge is the same.
    assert had_ms <= answer["usage"]["audio_ms"] <= had_ms + 150
    assert answer["usage"]["characters"] == documented["usage"]["characters"]
    assert text[: documented["usage"]["characters"]] == "This sentence keeps"
