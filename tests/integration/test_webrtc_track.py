"""SessionAudioTrack and MediaClock between two real aiortc peers over loopback.

The receiver offers recv-only audio and the sender answers with the track, as a browser and
the WHEP endpoint do. What the receiver decodes is compared with what was pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from voxgate.gateway.webrtc.clock import MediaClock
from voxgate.gateway.webrtc.sdp import describe_mono_opus, send_opus_only
from voxgate.gateway.webrtc.track import SessionAudioTrack, TrackOptions
from voxgate.upstream.engine.espeak import Synthesizer
from voxgate.upstream.engine.voices import Prosody

RATE = 24000
FRAME = 480  # samples of one 20 ms frame at 24 kHz
TEXT = (
    "Real time voice needs steady packets, every twenty milliseconds. "
    "The quick brown fox jumps over the lazy dog."
)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # aioice gathers on every interface but loopback; these tests use loopback only.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda **_: ["127.0.0.1"])


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    async def synthesize() -> np.ndarray:
        synthesizer = Synthesizer()
        try:
            voice = Prosody("en-us", "", 50, 50, 1.0)
            return (await synthesizer.synthesize(TEXT, voice, 1.0, RATE)).pcm
        finally:
            await synthesizer.close()

    pcm = asyncio.run(synthesize())
    assert pcm.size > 3 * RATE
    return pcm


class RecordingTrack(SessionAudioTrack):
    """Notes the pts and the monotonic time of every packet handed to aiortc."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[int, float]] = []

    async def recv(self) -> Any:
        packet = await super().recv()
        self.sent.append((int(packet.pts or 0), time.monotonic()))
        return packet


@dataclass
class Link:
    sender: RTCPeerConnection
    receiver: RTCPeerConnection
    remote: MediaStreamTrack
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)  # pts, 48 kHz mono
    reader: asyncio.Task[None] | None = None

    def start_reading(self) -> None:
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                frame = await self.remote.recv()
                stereo = frame.to_ndarray().reshape(-1, len(frame.layout.channels))
                self.frames.append((int(frame.pts), stereo[:, 0].astype(np.float32) / 32768))
        except MediaStreamError:
            pass

    async def close(self) -> None:
        await self.sender.close()
        await self.receiver.close()
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)

    def decoded(self, after_pts: int = -1) -> np.ndarray:
        """Received audio after ``after_pts``, frame after frame in pts order, at 24 kHz.

        Frames are joined without the gaps of slots the sender skipped: no audio is lost
        in a skip, it only comes later, so joined frames are the audio as it was pushed.
        """
        frames = sorted(f for f in self.frames if f[0] > after_pts)
        if not frames:
            return np.zeros(0, np.float32)
        # Opus at 24 kHz input is super-wideband (< 12 kHz): taking every other sample of
        # the 48 kHz output is the 24 kHz signal without aliasing worth mentioning.
        return np.concatenate([samples for _, samples in frames])[::2]


async def connect(track: MediaStreamTrack) -> Link:
    """Receiver offers recv-only audio, sender answers with ``track``; waits for media."""
    config = RTCConfiguration(iceServers=[])
    sender, receiver = RTCPeerConnection(config), RTCPeerConnection(config)
    remote: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    receiver.on("track", remote.set_result)
    receiver.addTransceiver("audio", direction="recvonly")
    await receiver.setLocalDescription(await receiver.createOffer())
    await sender.setRemoteDescription(receiver.localDescription)
    sender.addTrack(track)
    send_opus_only(sender.getTransceivers()[0])
    await sender.setLocalDescription(await sender.createAnswer())
    answer = sender.localDescription
    answer.sdp = describe_mono_opus(answer.sdp, bitrate=24000)
    await receiver.setRemoteDescription(answer)
    return Link(sender, receiver, await asyncio.wait_for(remote, 10))


@pytest.fixture
async def clock() -> AsyncIterator[MediaClock]:
    clock = MediaClock()
    yield clock
    await clock.stop()


async def push_all(track: SessionAudioTrack, pcm: np.ndarray, context_id: str, piece: int) -> None:
    """Push ``pcm`` in pieces of ``piece`` samples as fast as the buffer takes them,
    waiting for room when it is full, as a transport does."""
    data = pcm.astype("<i2").tobytes()
    offset = 0
    while offset < len(data):
        taken = track.push(data[offset : offset + 2 * piece], context_id, offset / 2 / RATE * 1000)
        offset += taken
        if offset < len(data) and taken < 2 * piece:
            await wait_for(lambda: track.room_bytes > 0, 5)
    track.end_of_turn(context_id)


async def wait_for(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def best_alignment(sent: np.ndarray, got: np.ndarray) -> tuple[int, float]:
    """The lag of ``sent`` inside ``got`` and the normalised correlation there."""
    n = 1 << int(np.ceil(np.log2(len(sent) + len(got))))
    xcorr = np.fft.irfft(np.fft.rfft(got, n) * np.conj(np.fft.rfft(sent, n)), n)
    lag = int(np.argmax(xcorr[: len(got)]))
    window = got[lag : lag + len(sent)]
    ref = sent[: len(window)]
    return lag, float(np.dot(ref, window) / (np.linalg.norm(ref) * np.linalg.norm(window)))


# -- the track between two peers ----------------------------------------------------------


@pytest.mark.timeout(60)
async def test_received_audio_matches_and_cadence_is_steady(
    speech: np.ndarray, clock: MediaClock
) -> None:
    second_turn = speech[RATE : 2 * RATE][::-1]  # time-reversed: unlike anything in turn 1
    track = RecordingTrack(TrackOptions(), clock=clock)
    link = await connect(track)
    link.start_reading()
    try:
        await wait_for(lambda: len(track.sent) >= 10, 10)  # some silence first
        await push_all(track, speech, "turn-1", piece=2400)
        duration_ms = len(speech) * 1000 / RATE
        await wait_for(lambda: track.played_ms("turn-1") >= duration_ms, duration_ms / 1000 + 5)
        await asyncio.sleep(0.2)  # a pause: the next turn starts from silence, fresh libopus
        turn_2_from = track.stats.timestamp - track.sent[0][0]
        await push_all(track, second_turn, "turn-2", piece=960)
        await wait_for(lambda: track.played_ms("turn-2") >= 1000, 5)
        await asyncio.sleep(0.3)  # the receiver's jitter buffer holds a few frames
    finally:
        await link.close()

    for sent, got in ((speech, link.decoded()), (second_turn, link.decoded(turn_2_from))):
        lag, correlation = best_alignment(sent.astype(np.float32) / 32768, got)
        print(f"lag {lag} samples, correlation {correlation:.3f}")
        assert correlation > 0.8

    # Sender side: one packet per 20 ms slot, pts +960 each, except where a stall of the
    # loop made the playout buffer skip a slot (pts +1920...; rare, and never on a quiet
    # machine). Receiver side: exactly those steps, so nothing was lost or doubled.
    pts, at = np.array([p for p, _ in track.sent]), np.array([t for _, t in track.sent])
    steps = np.diff(pts)
    stats = track.stats
    assert set((steps % 960).tolist()) == {0}
    assert int(np.sum(steps // 960 - 1)) == stats.skipped_slots <= len(steps) // 100
    received = np.diff(sorted(pts for pts, _ in link.frames))
    assert sorted(received.tolist()) == sorted(steps[: len(received)].tolist())
    jitter_ms = np.abs(np.diff(at) - steps / 48000) * 1000
    print(f"send late p50 {stats.send_late_p50_ms:.2f} p99 {stats.send_late_p99_ms:.2f} ms")
    print(f"interval jitter p99 {np.percentile(jitter_ms, 99):.2f} ms, {stats}")
    assert np.percentile(jitter_ms, 99) < 5
    assert stats.send_late_p99_ms < 5
    assert stats.underruns_gateway <= len(steps) // 100  # 0 unless the machine stalls us
    assert stats.dropped_frames == 0
    assert stats.packets_sent == len(track.sent)
    rate = (len(track.sent) - 1) / (at[-1] - at[0])
    assert 49.5 < rate < 50.5


@pytest.mark.timeout(60)
async def test_interrupt_silences_within_two_frames(speech: np.ndarray, clock: MediaClock) -> None:
    track = RecordingTrack(TrackOptions(), clock=clock)
    link = await connect(track)
    link.start_reading()
    try:
        await wait_for(lambda: len(track.sent) >= 5, 10)
        first_pts = track.sent[0][0]
        feeding = asyncio.create_task(push_all(track, speech, "turn-1", piece=4800))
        await wait_for(lambda: track.played_ms("turn-1") >= 1000, 5)
        feeding.cancel()  # the session stops feeding a context it interrupts
        assert track.level > 0.01  # mid-speech
        track.interrupt("turn-1")
        interrupted_at = track.stats.timestamp - first_pts  # the last packet before it
        heard = track.played_ms("turn-1")
        await asyncio.sleep(0.5)
        assert track.played_ms("turn-1") == heard  # nothing of it went out afterwards
        # A new turn plays normally after the barge-in.
        await push_all(track, speech[: RATE // 2], "turn-2", piece=2400)
        await wait_for(lambda: track.played_ms("turn-2") >= 500, 5)
        await asyncio.sleep(0.3)
    finally:
        await link.close()

    frames = sorted((pts, samples) for pts, samples in link.frames if pts > interrupted_at)
    rms = [float(np.sqrt(np.mean(samples**2))) for _, samples in frames]
    print("rms after interrupt:", [round(r, 4) for r in rms[:6]])
    # Up to two frames may still carry the turn's audio; from the third on, silence.
    assert max(rms[2:20]) < 1e-3
    assert max(rms[20:]) > 0.01  # turn-2 came through


@pytest.mark.timeout(60)
async def test_audio_pushed_before_the_peer_connects_is_kept(
    speech: np.ndarray, clock: MediaClock
) -> None:
    track = RecordingTrack(TrackOptions(), clock=clock)
    half_second = speech[: RATE // 2]
    await push_all(track, half_second, "early", piece=FRAME * 3)
    assert track.room_bytes < TrackOptions().playout.max_buffer_ms * 48
    link = await connect(track)
    link.start_reading()
    try:
        await wait_for(lambda: track.played_ms("early") >= 500, 10)
        await asyncio.sleep(0.3)
    finally:
        await link.close()
    _, correlation = best_alignment(half_second.astype(np.float32) / 32768, link.decoded())
    assert correlation > 0.8
    assert track.stats.dropped_frames == 0
    assert track.level == 0.0  # the last packet was silence


@pytest.mark.timeout(60)
async def test_no_task_or_socket_leak_over_100_connections(clock: MediaClock) -> None:
    gc.collect()
    tasks_before, sockets_before = len(asyncio.all_tasks()), open_sockets()
    started = time.monotonic()
    for _ in range(100):
        track = SessionAudioTrack(clock=clock)
        link = await connect(track)
        await wait_for(lambda t=track: t.stats.packets_sent >= 1, 5)  # media flowed
        await link.close()
        assert track.readyState == "ended"
    elapsed = time.monotonic() - started
    await wait_for(lambda: not clock.running, 2)
    await asyncio.sleep(0.2)
    gc.collect()
    print(f"100 connect/disconnect cycles in {elapsed:.1f} s")
    assert len(asyncio.all_tasks()) == tasks_before
    assert open_sockets() == sockets_before
    assert clock.stream_count == 0


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd of the listing itself is gone by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def test_describe_mono_opus_keeps_the_offer_parameters() -> None:
    answer = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
    )
    described = describe_mono_opus(answer, bitrate=24000)
    assert "a=fmtp:111 minptime=10;useinbandfec=1;stereo=0;sprop-stereo=0;usedtx=0;" in described
    assert "maxaveragebitrate=24000\r\n" in described
    assert described.count("a=ptime:20") == 1  # audio only
    assert described.endswith("a=rtpmap:96 VP8/90000\r\n")
    assert "\n" not in described.replace("\r\n", "")


# -- the clock ------------------------------------------------------------------------------


class Recorder:
    def __init__(self, stall_s: float = 0.0, fail: bool = False) -> None:
        self.ticks: list[tuple[float, float]] = []  # (now passed in, monotonic at the call)
        self.stall_s = stall_s
        self.fail = fail

    def tick(self, now: float) -> None:
        self.ticks.append((now, time.monotonic()))
        if self.fail:
            raise RuntimeError("broken stream")
        if self.stall_s and len(self.ticks) == 5:
            time.sleep(self.stall_s)  # a stalled event loop


@pytest.mark.timeout(30)
async def test_clock_ticks_every_stream_on_one_grid() -> None:
    clock = MediaClock(phases=1)
    streams = [Recorder() for _ in range(3)]
    firsts = [clock.register(stream) for stream in streams]
    await asyncio.sleep(0.5)
    for stream in streams:
        clock.unregister(stream)
    await wait_for(lambda: not clock.running, 1)

    ticks = [now for now, _ in streams[0].ticks]
    assert all([now for now, _ in stream.ticks] == ticks for stream in streams)
    assert len(set(firsts)) == 1
    assert abs(ticks[0] - firsts[0]) < 0.005
    slots = (np.array(ticks) - clock.origin) / clock.period
    assert 20 <= len(ticks) <= 26
    assert set(np.diff(np.round(slots)).tolist()) == {1.0}  # consecutive, none skipped
    assert np.max(np.abs(slots - np.round(slots))) * clock.period < 0.005
    stats = clock.stats()
    print(stats)
    assert stats.skipped_ticks == 0
    assert stats.late_p50_ms < 2


@pytest.mark.timeout(30)
async def test_clock_spreads_streams_over_its_phases(clock: MediaClock) -> None:
    assert clock.phases == 4
    streams = [Recorder() for _ in range(8)]
    firsts = [clock.register(stream) for stream in streams]
    await asyncio.sleep(0.4)
    await clock.stop()

    step = clock.period / clock.phases
    phases = [round((first - clock.origin) / step) % clock.phases for first in firsts]
    assert sorted(phases) == [0, 0, 1, 1, 2, 2, 3, 3]  # balanced
    for stream, first in zip(streams, firsts, strict=True):
        ticks = np.array([now for now, _ in stream.ticks])
        assert abs(ticks[0] - first) < 0.005  # the first tick is the one announced
        intervals = np.diff(ticks)  # once a period, late by a few ms at worst
        assert abs(np.median(intervals) - clock.period) < 0.001
        assert np.all((intervals > clock.period / 2) & (intervals < clock.period * 1.5))
    assert clock.stats().ticks >= 4 * 15  # one wake-up per phase per period


@pytest.mark.timeout(30)
async def test_clock_skips_missed_ticks_instead_of_bursting(clock: MediaClock) -> None:
    clock = MediaClock(phases=1)
    other, stalled, failing = Recorder(), Recorder(stall_s=0.065), Recorder(fail=True)
    for stream in (other, stalled, failing):
        clock.register(stream)
    await asyncio.sleep(0.4)
    await clock.stop()

    assert len(failing.ticks) == 1  # unregistered after its failure...
    assert len(other.ticks) > 12  # ...while the others went on
    calls = np.array([called for _, called in other.ticks])
    assert np.min(np.diff(calls)) > 0.010  # never two ticks back to back after the stall
    assert clock.stats().skipped_ticks >= 2
