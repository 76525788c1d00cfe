"""Opus passthrough on a SessionAudioTrack between two real aiortc peers.

Packets coded elsewhere (here by libopus through PyAV, as an upstream codes them, at every
frame size Opus has from 10 ms up) are pushed with ``push_opus``. The receiver must get
them byte for byte, in order, each on the RTP clock where its audio starts, paced by its
own duration, and decode the speech that was coded; the track codes nothing itself.
"""

from __future__ import annotations

import asyncio
import itertools

import av
import numpy as np
import pytest

from tests.integration.test_webrtc_track import (
    RATE,
    best_alignment,
    clock,
    connect,
    loopback_only,
    speech,
    wait_for,
)
from voxgate.codecs.opus_packets import OpusRun, timeline_bytes
from voxgate.codecs.opus_toc import packet_samples
from voxgate.gateway.webrtc.clock import MediaClock
from voxgate.gateway.webrtc.track import SessionAudioTrack, TrackOptions

__all__ = ["clock", "loopback_only", "speech"]  # fixtures, used by name


def coded(pcm: np.ndarray, frame_ms: int) -> OpusRun:
    """``pcm`` (24 kHz mono) as an upstream codes it: libopus packets of ``frame_ms``."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = RATE, "mono", "s16"
    codec.bit_rate = 32000
    codec.options = {"frame_duration": str(frame_ms)}
    codec.open()
    step = RATE * frame_ms // 1000
    packets: list[bytes] = []
    for start in range(0, len(pcm) - step + 1, step):
        frame = av.AudioFrame.from_ndarray(
            pcm[start : start + step].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return OpusRun(tuple(packets), tuple(packet_samples(p) for p in packets))


async def push_all(track: SessionAudioTrack, run: OpusRun, context_id: str) -> None:
    """Push every packet as fast as the buffer takes them, as a transport does."""
    media_ms, packets, samples = 0.0, run.packets, run.samples
    while packets:
        taken = track.push_opus(OpusRun(packets, samples), context_id, media_ms)
        media_ms += sum(samples[:taken]) / 48
        packets, samples = packets[taken:], samples[taken:]
        if packets:  # room for the next packet's whole span
            need = timeline_bytes(samples[0], RATE)
            await wait_for(lambda: track.room_bytes >= need, 5)  # noqa: B023
    track.end_of_turn(context_id)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("frame_ms", [10, 20, 40, 60])
async def test_packets_arrive_as_coded_paced_by_their_own_duration(
    speech: np.ndarray, clock: MediaClock, frame_ms: int
) -> None:
    pcm = speech[: 3 * RATE]
    run = coded(pcm, frame_ms)
    assert set(run.samples) == {48 * frame_ms}
    track = SessionAudioTrack(TrackOptions(), clock=clock)
    link = await connect(track)
    link.start_reading()
    try:
        await wait_for(lambda: track.stats.dtx_slots > 3, 10)  # idle: DTX
        idle = len(link.rtp)
        await push_all(track, run, "turn")
        await wait_for(lambda: track.played_ms("turn") >= run.duration_ms, 10)
        await wait_for(lambda: track.stats.dtx_slots > 3 + 20, 5)  # quiet again
        await asyncio.sleep(0.3)  # the receiver jitter buffer
    finally:
        await link.close()
    stats = track.stats
    assert stats.passed_packets == len(run.packets)
    assert stats.encoded_packets == 0  # libopus coded nothing on the track
    assert stats.talkspurts == 1

    spurt = link.talkspurts()[0]
    talking = [a for a in link.rtp[idle:] if a.size > 3][: len(run.packets)]
    assert spurt[0] is talking[0]
    # Byte for byte, in order (sizes as the receiver got them, after SRTP).
    assert [a.size for a in talking] == [len(p) for p in run.packets]
    # Each on the RTP clock where its audio starts: +its own samples, no gap, no overlap.
    steps = [link.pts(b) - link.pts(a) for a, b in itertools.pairwise(talking)]
    assert set(steps) == {48 * frame_ms}
    # Paced by its duration: the packets of a second arrive over a second.
    at = np.array([a.at for a in talking])
    rate = (len(talking) - 2) / (at[-1] - at[1])
    assert rate == pytest.approx(1000 / frame_ms, rel=0.05)
    assert track.played_ms("turn") == pytest.approx(run.duration_ms)

    got = link.decoded(link.pts(spurt[0]) - 1)
    lag, correlation = best_alignment(pcm.astype(np.float32) / 32768, got)
    print(f"{frame_ms} ms packets: lag {lag} samples, correlation {correlation:.3f}")
    assert correlation > 0.8
