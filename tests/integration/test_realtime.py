"""The realtime WebSocket, as an agent uses it, against a real gateway and engine."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import numpy as np
import pytest

from tests.gateway_harness import Gateway, Received, receive_until
from voxgate.gateway.protocol import unpack_audio_frame

pytestmark = pytest.mark.engine_only

TEXT = "Hello! I can help with that. Your order shipped on Monday and arrives on Thursday."


async def connect(http: aiohttp.ClientSession, gateway: Gateway) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(
        gateway.ws_url, headers={"Authorization": f"Bearer {gateway.api_key}"}
    )


async def test_text_in_pcm_frames_out(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    ws = await connect(http, gateway)
    received = await receive_until(ws, "session.created", Received())
    created = received.of("session.created")[0]
    assert created["protocol_version"] == 1
    for i in range(0, len(TEXT), 5):
        await ws.send_json({"type": "text.append", "text": TEXT[i : i + 5], "seq": i})
    await ws.send_json({"type": "context.close"})
    await receive_until(ws, "context.done", received)
    assert len(received.of("text.ack")) == len(range(0, len(TEXT), 5))
    ended = received.of("chunk.ended")
    assert "".join(m["text"] for m in ended) == TEXT
    pcm = np.frombuffer(received.audio(), dtype="<i2")
    assert len(pcm) / 24000 == pytest.approx(ended[-1]["end_ms"] / 1000, abs=0.05)
    assert float(np.sqrt(np.mean((pcm / 32768) ** 2))) > 0.01
    usage = received.of("context.done")[0]["usage"]
    assert usage["characters"] == sum(len(m["text"].strip()) for m in ended)
    await ws.close()


async def test_time_to_first_audio_is_observed_once_per_context(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws = await connect(http, gateway)
    received = await receive_until(ws, "session.created", Received())
    await ws.send_json({"type": "text.append", "text": "Hello there, this comes first. "})
    await ws.send_json({"type": "text.flush"})
    await receive_until(ws, "chunk.started", received)
    for word in ("and ", "these ", "words ", "come ", "after ", "the ", "first ", "audio."):
        await ws.send_json({"type": "text.append", "text": word})
    await ws.send_json({"type": "context.close"})
    await receive_until(ws, "context.done", received)
    scraped = await (await http.get(f"{gateway.url}/metrics")).text()
    assert "voxgate_time_to_first_audio_seconds_count 1.0" in scraped
    await ws.close()


async def test_base64_audio_messages_and_word_marks(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws = await connect(http, gateway)
    received = await receive_until(ws, "session.created", Received())
    update = {"audio_transport": "base64", "segmenter": {"runway_ms": 500}, "event_id": "u1"}
    await ws.send_json({"type": "session.update", **update})
    await receive_until(ws, "session.updated", received)
    updated = received.of("session.updated")[0]
    assert updated["event_id"] == "u1"
    assert updated["config"]["segmenter"] == {"runway_ms": 500}
    await ws.send_json({"type": "text.append", "text": "Short and sweet."})
    await ws.send_json({"type": "context.close"})
    await receive_until(ws, "context.done", received)
    audio = received.of("audio")
    assert audio
    assert not received.frames
    offsets = [m["offset_ms"] for m in audio]
    assert offsets == sorted(offsets)
    assert [m["seq"] for m in audio] == list(range(audio[0]["seq"], audio[0]["seq"] + len(audio)))
    words = received.of("chunk.ended")[0]["words"]
    assert [w["text"] for w in words] == ["Short", "and", "sweet."]
    await ws.close()


async def test_duplicate_sequence_numbers_are_acknowledged_and_ignored(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws = await connect(http, gateway)
    received = await receive_until(ws, "session.created", Received())
    for seq, text in [(1, "Say this "), (2, "once. "), (2, "once. "), (1, "Say this ")]:
        await ws.send_json({"type": "text.append", "text": text, "seq": seq})
    await ws.send_json({"type": "context.close"})
    await receive_until(ws, "context.done", received)
    acks = [(a["seq"], a["duplicate"]) for a in received.of("text.ack")]
    assert acks == [(1, False), (2, False), (2, True), (1, True)]
    assert "".join(m["text"] for m in received.of("chunk.ended")) == "Say this once."
    await ws.close()


async def test_several_contexts_on_one_socket(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws = await connect(http, gateway)
    received = await receive_until(ws, "session.created", Received())
    await ws.send_json({"type": "text.append", "text": "First voice turn.", "context_id": "a"})
    await ws.send_json({"type": "text.append", "text": "Second one here.", "context_id": "b"})
    await ws.send_json({"type": "context.close", "context_id": "a"})
    await ws.send_json({"type": "context.close", "context_id": "b"})
    await receive_until(ws, "context.done", received, count=2)
    assert {m["context_id"] for m in received.of("context.done")} == {"a", "b"}
    assert received.audio("a")
    assert received.audio("b")
    await ws.close()


async def test_interrupt_stops_audio_and_reports_what_was_heard(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws = await connect(http, gateway)
    received = await receive_until(ws, "session.created", Received())
    await ws.send_json({"type": "session.update", "pacing": "realtime"})
    long_text = " ".join(["This sentence keeps the listener busy for a while."] * 6)
    await ws.send_json({"type": "text.append", "text": long_text})
    await ws.send_json({"type": "text.flush"})
    await receive_until(ws, "chunk.started", received)
    # Listen for about a second of real-time audio, then barge in.
    while sum(len(f[4]) for f in received.frames) < 48000:
        await receive_until(ws, "chunk.started", received, count=len(received.of("chunk.started")))
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.BINARY:
            received.frames.append(unpack_audio_frame(msg.data))
    played_ms = sum(len(f[4]) for f in received.frames) / 48
    await ws.send_json({"type": "interrupt", "played_ms": played_ms})
    frames_before = len(received.frames)
    await receive_until(ws, "interrupted", received)
    result = received.of("interrupted")[0]
    assert result["heard"] + result["unheard"] == long_text
    assert result["heard"].startswith("This sentence")
    assert result["played_ms"] == pytest.approx(played_ms, abs=1)
    late = received.frames[frames_before:]
    assert sum(len(f[4]) for f in late) / 48 < 200  # what was already on the wire, at most
    # After the interrupted message nothing of that context comes: a ping answers first.
    await ws.send_json({"type": "ping"})
    after = await receive_until(ws, "pong", Received())
    assert not after.frames
    await ws.close()


async def test_realtime_pacing_spreads_audio_over_its_duration(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    import time

    ws = await connect(http, gateway)
    received = await receive_until(ws, "session.created", Received())
    await ws.send_json({"type": "session.update", "pacing": "realtime"})
    await ws.send_json({"type": "text.append", "text": "One, two, three, four, five."})
    await ws.send_json({"type": "context.close"})
    arrivals: list[float] = []
    async with asyncio.timeout(30):
        while not received.of("context.done"):
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY:
                arrivals.append(time.perf_counter())
                received.frames.append(unpack_audio_frame(msg.data))
            else:
                received.messages.append(msg.json())
    audio_s = len(received.audio()) / 48000
    spread = arrivals[-1] - arrivals[0]
    assert audio_s > 1.0
    assert spread == pytest.approx(audio_s - 0.02, abs=0.15)  # last frame sent 20 ms before end
    sizes = {len(f[4]) for f in received.frames[:-1]}
    assert sizes == {960}  # 20 ms of 24 kHz s16le
    await ws.close()


async def test_a_context_id_can_be_reused_for_the_next_turn(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws = await connect(http, gateway)
    received = await receive_until(ws, "session.created", Received())
    await ws.send_json({"type": "session.update", "output_format": {"encoding": "opus"}})
    for turn, text in enumerate(["First turn here.", "Second turn now."], start=1):
        await ws.send_json({"type": "text.append", "text": text, "seq": 0})
        await ws.send_json({"type": "context.close"})
        await receive_until(ws, "context.done", received, count=turn)
    done = received.of("context.done")
    assert [d["usage"]["characters"] for d in done] == [16, 16]
    assert not received.of("chunk.failed")
    assert [a["duplicate"] for a in received.of("text.ack")] == [False, False]
    # One numbering for the whole socket, as an RTP bridge needs it.
    seqs = [f[2] for f in received.frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    stamps = [f[3] for f in received.frames]
    assert all(b - a == 960 for a, b in itertools.pairwise(stamps))
    account = (await gateway.services.keys.authenticate(gateway.api_key)).account_id
    assert await gateway.services.settlements.flushed(timeout_s=5)
    assert (await gateway.services.ledger.balance(account)).committed == 32
    await ws.close()


async def test_a_token_can_fix_the_session_id_and_voice(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    paul = "c56da398-a7b5-4a2d-862b-47f252d16d16"
    minted = await http.post(
        f"{gateway.url}/v1/client_tokens",
        json={"session_id": "call-42", "voice_id": paul},
        headers={"Authorization": f"Bearer {gateway.api_key}"},
    )
    token = (await minted.json())["data"]["token"]
    ws = await http.ws_connect(gateway.ws_url)
    await ws.send_json({"type": "auth", "token": token})
    received = await receive_until(ws, "session.created", Received())
    created = received.of("session.created")[0]
    assert created["session_id"] == "call-42"
    assert created["config"]["voice_id"] == paul
    await ws.send_json({"type": "text.append", "text": "Paul speaks."})
    await ws.send_json({"type": "context.close"})
    await receive_until(ws, "context.done", received)
    assert not received.of("error")
    await ws.close()
