"""Opus passthrough over the socket, side by side with the encode path, and its fallback.

A socket in ``opus`` / ``ogg_opus`` with no bitrate or complexity of its own gets the
upstream's packets as they are; naming a bitrate makes the gateway code PCM itself. Both
must look the same to a client: 20 ms packets on a continuous clock, speech a real decoder
plays for as long as the marks say, the same credits, the same barge-in. A PCM sink that
takes over a passthrough turn (a WebRTC peer hangs up mid-turn) gets the rest decoded.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from tests.audio_checks import assert_speech, decode, ffprobe
from tests.gateway_harness import Gateway, Received, receive_until
from tests.integration.test_whep import Listener, offer_to_session, open_session, wait_for
from tests.ledger_checks import account_of, assert_ledger_exact
from voxgate.codecs.opus_toc import packet_samples
from voxgate.gateway.protocol import unpack_audio_frame

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(120)]

TEXT = "Passthrough sends the upstream's own packets. Nothing is decoded or coded again."
LONG = " ".join(["This sentence keeps the listener busy for a good while."] * 4)
PASSTHROUGH = {"encoding": "opus"}
ENCODE = {"encoding": "opus", "bitrate": 32000}
PATHS = pytest.mark.parametrize("fmt", [PASSTHROUGH, ENCODE], ids=["passthrough", "encode"])


async def passed_seconds(http: aiohttp.ClientSession, gateway: Gateway) -> float:
    scraped = await (await http.get(f"{gateway.url}/metrics")).text()
    found = re.search(r"^voxgate_opus_passthrough_seconds_total (\S+)$", scraped, re.M)
    assert found is not None
    return float(found.group(1))


async def connect(
    http: aiohttp.ClientSession, gateway: Gateway, **update: Any
) -> tuple[aiohttp.ClientWebSocketResponse, Received]:
    ws = await http.ws_connect(
        gateway.ws_url, headers={"Authorization": f"Bearer {gateway.api_key}"}
    )
    received = await receive_until(ws, "session.created", Received())
    await ws.send_json({"type": "session.update", **update})
    await receive_until(ws, "session.updated", received)
    return ws, received


def decoded_seconds(frames: list[tuple[str, str, int, int, bytes]]) -> tuple[float, float]:
    """Duration and RMS of the frames' packets, through libopus."""
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout = 48000, "mono"
    pcm = [
        frame.to_ndarray().reshape(-1).astype(np.float32) / 32768
        for f in frames
        for frame in decoder.decode(av.Packet(f[4]))
    ]
    samples = np.concatenate(pcm)
    return len(samples) / 48000, float(np.sqrt(np.mean(samples**2)))


@PATHS
async def test_socket_opus_looks_the_same_on_both_paths(
    gateway: Gateway, fmt: dict[str, Any]
) -> None:
    async with aiohttp.ClientSession() as http:
        before = await passed_seconds(http, gateway)
        ws, received = await connect(http, gateway, output_format=fmt)
        await ws.send_json({"type": "text.append", "text": TEXT})
        await ws.send_json({"type": "context.close"})
        await receive_until(ws, "context.done", received)
        await ws.close()
        passed = await passed_seconds(http, gateway) - before
    frames = received.frames
    assert {f[0] for f in frames} == {"opus"}
    assert {packet_samples(f[4]) for f in frames} == {960}  # 20 ms each, by their TOC
    stamps = [f[3] for f in frames]
    assert all(b - a == 960 for a, b in itertools.pairwise(stamps))
    seconds, rms = decoded_seconds(frames)
    marked_s = received.of("chunk.ended")[-1]["end_ms"] / 1000
    assert seconds == pytest.approx(marked_s, abs=0.03)
    assert rms > 0.005
    done = received.of("context.done")[0]
    chunks = received.of("chunk.ended")
    assert "".join(c["text"] for c in chunks) == TEXT
    assert done["usage"]["characters"] == sum(len(c["text"].strip()) for c in chunks)
    # Passthrough is what the metrics say went out as the upstream coded it: all or nothing.
    assert passed == (pytest.approx(seconds, abs=0.001) if fmt is PASSTHROUGH else 0)


async def test_ogg_opus_passthrough_concatenates_into_a_file(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        ws, received = await connect(http, gateway, output_format={"encoding": "ogg_opus"})
        for text in (TEXT, "And a second turn on the same stream."):
            await ws.send_json({"type": "text.append", "text": text})
            await ws.send_json({"type": "context.close"})
            count = len(received.of("context.done")) + 1
            await receive_until(ws, "context.done", received, count=count)
        await ws.close()
        assert await passed_seconds(http, gateway) > 0
    data = received.audio()
    assert ffprobe(data, "ogg")["codec"] == "opus"
    decoded = decode(data)
    assert_speech(decoded)
    marked_s = sum(c["end_ms"] - c["start_ms"] for c in received.of("chunk.ended")) / 1000
    assert decoded.duration == pytest.approx(marked_s, abs=0.1)


@PATHS
async def test_barge_in_is_exact_on_both_paths(gateway: Gateway, fmt: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as http:
        ws, received = await connect(http, gateway, output_format=fmt, pacing="realtime")
        await ws.send_json({"type": "text.append", "text": LONG})
        await ws.send_json({"type": "text.flush"})
        await read_frames(ws, received, 60)  # 1.2 s heard
        played_ms = len(received.frames) * 20 - 10  # the last frame half played
        await ws.send_json({"type": "interrupt", "played_ms": played_ms})
        await receive_until(ws, "interrupted", received)
        result = received.of("interrupted")[0]
        assert result["played_ms"] == pytest.approx(played_ms, abs=1)
        assert result["heard"] + result["unheard"] == LONG
        assert result["heard"].startswith("This sentence")
        assert 0 < result["usage"]["characters"] <= len(result["heard"].strip())
        account = await account_of(gateway.services, gateway.api_key)
        await ws.close()
        await assert_ledger_exact(gateway.services, {account: result["usage"]["characters"]})


async def read_frames(ws: aiohttp.ClientWebSocketResponse, received: Received, count: int) -> None:
    """Read the socket into ``received`` until it holds ``count`` audio frames."""
    async with asyncio.timeout(30):
        while len(received.frames) < count:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY:
                received.frames.append(unpack_audio_frame(msg.data))
            elif msg.type is aiohttp.WSMsgType.TEXT:
                received.messages.append(msg.json())
            else:
                raise AssertionError(f"socket ended: {msg.type}")


async def test_a_pcm_socket_takes_over_a_passthrough_turn_decoded(gateway: Gateway) -> None:
    """A WebRTC peer hangs up mid-turn: the socket (PCM) gets the rest of the turn, decoded
    from the packets already fetched as Opus; nothing is lost and the charge is whole."""
    async with aiohttp.ClientSession() as http:
        ws, received, session_id = await open_session(http, gateway)
        listener = Listener()
        response = await offer_to_session(http, gateway, session_id, listener)
        await listener.answer(await response.text())
        location = response.headers["Location"]
        await wait_for(lambda: listener.pc.connectionState == "connected")
        await ws.send_json({"type": "text.append", "text": LONG})
        await ws.send_json({"type": "context.close"})
        await wait_for(lambda: sum(e > 0.01 for e in listener.energy_since(0)) > 25)
        deleted = await http.delete(
            f"{gateway.url}{location}", headers={"Authorization": f"Bearer {gateway.api_key}"}
        )
        assert deleted.status == 200
        await receive_until(ws, "context.done", received, timeout=60)
        await listener.close()
        await ws.close()
    assert received.frames, "the rest of the turn came over the socket"
    assert {f[0] for f in received.frames} == {"pcm_s16le"}
    pcm = np.frombuffer(received.audio(), dtype="<i2").astype(np.float32) / 32768
    assert float(np.sqrt(np.mean(pcm**2))) > 0.01  # decoded speech, not silence
    done = received.of("context.done")[0]
    chunks = received.of("chunk.ended")
    assert "".join(c["text"] for c in chunks) == LONG
    assert done["usage"]["characters"] == sum(len(c["text"].strip()) for c in chunks)
    assert not received.of("interrupted")
