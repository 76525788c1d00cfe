"""Every output format of the realtime socket, checked by a real decoder."""

from __future__ import annotations

import itertools
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from tests.audio_checks import assert_speech, decode, ffprobe
from tests.gateway_harness import Gateway, Received, receive_until

pytestmark = pytest.mark.engine_only

TEXT = "Testing every output format, one after the other."


async def speak(gateway: Gateway, output_format: dict[str, Any]) -> Received:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            gateway.ws_url, headers={"Authorization": f"Bearer {gateway.api_key}"}
        )
        received = await receive_until(ws, "session.created", Received())
        await ws.send_json({"type": "session.update", "output_format": output_format})
        await receive_until(ws, "session.updated", received)
        await ws.send_json({"type": "text.append", "text": TEXT})
        await ws.send_json({"type": "context.close"})
        await receive_until(ws, "context.done", received)
        await ws.close()
    return received


def marked_seconds(received: Received) -> float:
    return float(received.of("chunk.ended")[-1]["end_ms"]) / 1000


def assert_continuous(received: Received, ticks_per_frame: int | None = None) -> None:
    seqs = [f[2] for f in received.frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    if ticks_per_frame:
        stamps = [f[3] for f in received.frames]
        assert all(b - a == ticks_per_frame for a, b in itertools.pairwise(stamps))


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
async def test_pcm_at_each_rate(gateway: Gateway, rate: int) -> None:
    received = await speak(gateway, {"encoding": "pcm_s16le", "sample_rate": rate})
    assert {f[0] for f in received.frames} == {"pcm_s16le"}
    samples = np.frombuffer(received.audio(), dtype="<i2")
    assert len(samples) / rate == pytest.approx(marked_seconds(received), abs=0.02)
    assert float(np.sqrt(np.mean((samples / 32768.0) ** 2))) > 0.01
    assert_continuous(received)


async def test_mulaw_8k_in_20ms_frames(gateway: Gateway) -> None:
    received = await speak(gateway, {"encoding": "mulaw"})
    assert {len(f[4]) for f in received.frames} == {160}
    assert_continuous(received, ticks_per_frame=160)
    codec = av.CodecContext.create("pcm_mulaw", "r")
    codec.sample_rate, codec.layout = 8000, "mono"
    samples = np.concatenate(
        [
            frame.to_ndarray().reshape(-1)
            for f in received.frames
            for frame in codec.decode(av.Packet(f[4]))
        ]
    )
    assert len(samples) / 8000 == pytest.approx(marked_seconds(received), abs=0.03)
    assert float(np.sqrt(np.mean((samples / 32768.0) ** 2))) > 0.01


async def test_opus_one_20ms_packet_per_frame(gateway: Gateway) -> None:
    received = await speak(gateway, {"encoding": "opus", "bitrate": 24000})
    assert_continuous(received, ticks_per_frame=960)
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout = 48000, "mono"
    lengths = []
    pcm = []
    for f in received.frames:
        for frame in decoder.decode(av.Packet(f[4])):
            lengths.append(frame.samples)
            pcm.append(frame.to_ndarray().reshape(-1))
    assert set(lengths) == {960}
    samples = np.concatenate(pcm).astype(np.float32)
    if samples.dtype != np.float32 or np.abs(samples).max() > 2:
        samples = samples / 32768
    assert len(samples) / 48000 == pytest.approx(marked_seconds(received), abs=0.03)
    assert float(np.sqrt(np.mean(samples**2))) > 0.005


@pytest.mark.parametrize(
    ("encoding", "suffix", "codec"), [("ogg_opus", "ogg", "opus"), ("mp3", "mp3", "mp3")]
)
async def test_streams_that_concatenate_into_a_file(
    gateway: Gateway, encoding: str, suffix: str, codec: str
) -> None:
    received = await speak(gateway, {"encoding": encoding})
    data = received.audio()
    probe = ffprobe(data, suffix)
    assert probe["codec"] == codec
    assert probe["channels"] == 1
    decoded = decode(data)
    assert_speech(decoded)
    assert decoded.duration == pytest.approx(marked_seconds(received), abs=0.1)
