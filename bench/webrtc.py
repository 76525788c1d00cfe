"""What does a real-time WebRTC audio stream cost, and how many fit on the machine?

Arms on the same espeak speech (24 kHz mono), every stream speaking continuously:

  bare        libopus alone (av.CodecContext, 24 kHz mono, same bitrate and complexity) on
              N streams' worth of 20 ms frames: in a tight loop ("bare"), and paced as real
              time, N frames every 20 ms ("bare-rt": the CPU idles between bursts and comes
              back with cold caches, which costs libopus 10-30 % more per frame).
  voxgate/W   N SessionAudioTracks bound to their transceivers (packets go straight to the
              SRTP socket from the media clock's tick, as behind the WHEP endpoint), fed
              PCM as a session transport would, in W sender processes of N/W streams each,
              as `voxgate serve --workers W` runs them.
  stock       N plain MediaStreamTracks returning av.AudioFrames (s16 mono 24 kHz), each
              paced with its own asyncio.sleep: aiortc resamples and encodes (48 kHz stereo,
              96 kbit/s) in its thread pool. One process.
  passthrough/W  Opus passthrough: the same tracks and W sender processes as voxgate/W,
              fed the upstream's own Opus packets with ``push_opus`` (100 ms runs, topped up
              as the PCM is), sent as they are: no libopus encode. The packets are recorded
              once at the start, not committed: the same text streamed from the embedded
              engine's ``/stream`` in Ogg Opus (espeak-ng, the engine's "Jane" voice, its
              32 kbit/s encoder, a page per delta) and demuxed by ``Upstream.stream_opus``,
              as a session fetches them; each stream loops over them, a new context every
              pass. Its ramp goes further (20, 80, 160, 240, ... 1000: ``PASSTHROUGH_LEVELS``,
              ``--max-passthrough-streams``); its "bare" baseline is libopus on at most
              BARE_MAX_STREAMS (160) streams (per stream it does not grow with N, and
              coding 1000 streams' frames would take minutes per level).
  passthrough-cpython-gc/W  the passthrough arm without the media collector
              (``VOXGATE_MEDIA_GC_FREEZE=false``): CPython's full collections walk every
              peer's objects at once (tens of ms with a hundred peers or more in a process)
              and stall every stream of the process. The other arms run as ``voxgate serve``
              does, with it: peers frozen once connected, swept when they close (see
              voxgate/gateway/webrtc/collector.py); each level also times a sweep with all
              its peers live, the pause it makes once per as many closed sessions.

Feeding is spread: a fifth of a process's streams are topped up every 10 ms, as sessions
take their audio each when its upstream sends it (all of them every 50 ms at once held the
event loop up for 8-15 ms at 240 streams a process). A sender process freezes what its
start-up built, as ``voxgate serve`` does, and collects each level's garbage when its
peers close (timed: the level's own cost, not its successor's). Under a failed level the
bench prints what held each sender's event loop up: the latest clock step, steps given up,
garbage collections (how many, the longest, full ones), tracked and frozen objects, what
the youngest generation holds by type, when the late packets left (seconds into the level,
grouped by 50 ms: one stalled phase shows as one group), and with ``--slow-callbacks`` the
event-loop callbacks over 4 ms (their wall and CPU time, the collections inside them, when).

Receivers are aiortc peers (ICE and DTLS-SRTP done for real) in one more process; once
connected they count RTP packets from the clear RTP header (SSRC, timestamp) instead of
decrypting and decoding them, and read their sockets every 10 ms instead of waiting on them
(see ``poll_sockets``: a receiver woken per packet costs the sender an IPI per send on this
VM), so they stay cheap next to the senders and do not inflate their send cost. They run
at SCHED_IDLE (they stand in for listeners on other machines: they take the CPU the senders
leave, and count timestamps, not arrival times) and count over their own window, which ends
before the senders report (a sender busy with its report sends nothing, and that gap would
be counted in every stream). CPU is the sender
processes' own (user + system; on loopback the system time includes the receivers' UDP
input). Send times are taken where the packet leaves: for voxgate after the socket send,
for stock where aiortc has the payload and is about to send it.

  due p99   send time - the slot's due time on the stream's own schedule
  grid p99  the same, less the stream's smallest lateness: pacing, without a constant
            offset (stock aiortc's resampler holds every frame back by one: +20 ms)
  jit p99   |interval between consecutive sends - 20 ms|
  late      packets sent over LATE_MS (10 ms) behind their stream's grid: with audio
            ready, each is an underrun the listener hears as a gap
  stoln     of those, packets late while the machine's steal time grew (sampled every
            10 ms): stalls of the VM by its host, not the gateway's doing
  gaps      RTP timestamp steps other than 960 seen by the receivers (skipped slots)
  tx/rx     the senders' CPU (all processes) and the receivers' process CPU, in cores:
            on 2 cores, what the receivers take is not the senders' to use

Each arm ramps N (10, 20, 40, 80, 120, 160, ...) until a level fails twice in a row (once
may be another process' doing): grid p99 > 5 ms, a late packet the host did not cause,
or a receiver under 49 packets/s. The bare baselines a level is divided by are measured
just before it, in the first sender process, on as many frames as the level sends (N
streams for its measured seconds): "bare" as fast as libopus goes, "bare-rt" paced over
the same seconds.

Then the sender time is taken apart (``--profile-streams``, 80 and 400 by default:
voxgate/W at the fewest, passthrough/W at each): every stage of the packet path is wrapped
with perf counters in the sender processes (the media clock's step, the track's tick: its
playout pull and packet choice and its libopus encode, the flush, RtpOut.send: SRTP
protect, ``sendto``, header and counters, and the feeding pushes), and the level prints
µs per packet sent by stage, the rest of the senders' CPU (event loop, aiortc's RTCP and
ICE, GC), and the receivers' CPU per packet and in cores beside it. The wrappers add a few
hundred ns per call: a profiled level is not counted in the ramp. The stage times are wall
time: on a machine busy with other work, a preempted stage counts its wait, and "the rest"
(CPU less the stages) can turn negative.

Then 20 streams of one process speak turns after pauses for ``--turn-seconds`` (30 s:
about 300 turns), on each path: PCM pushed and encoded (voxgate), then the upstream's
packets pushed with ``push_opus`` (passthrough; the same pauses and turn lengths, 60 ms
runs of packets), for the first-audio latency: a turn's first push to its first packet on
the socket. A turn that starts while the stream is quiet (DTX) is sent from the push itself;
one that starts within the 200 ms of silence packets after the last turn waits for its
stream's next slot (0-20 ms). Each turn notes what could have delayed it: whether its
first packet left from the push ("push") or from a later tick of the clock ("tick": the
push came while that tick was late), a garbage collection in between ("gc"), the sender
process preempted in between (involuntary context switches, "preempted"), and steal time.
p99 is printed with its sample count and the maximum; under 100 samples only the maximum.

Goals: the encode path at most 1.3x bare libopus per stream; passthrough at least 600
streams on 2 sender processes, at most 0.25x bare libopus per stream, and first audio no
later than on the encode path. The summary prints each against its measure.

    python bench/webrtc.py [--quick] [--seconds 8] [--max-streams 400] [--workers 1 2]
                           [--passthrough-workers 2] [--max-passthrough-streams 1000]
                           [--profile-streams 80 400] [--bitrate 24000] [--complexity 5]
                           [--phases 4] [--turn-seconds 30 (0: none)] [--json PATH]
                           [--arms voxgate stock passthrough passthrough-cpython-gc]
                           [--passthrough-levels N ...] [--slow-callbacks]

``--json PATH`` writes {"arms": {arm: [level, ...]}, "capacity": {arm: ...},
"first_audio": {...}, ...}; each level as ``Level.figures`` gives it (``bench/all.py``
documents the layout), passthrough's under "passthrough/W" like the others, each level
with "rx_cpu_pct" too (the receivers' process, % of one core). Beside them:
"first_audio_passthrough" (the layout of "first_audio"), "where_time_goes" ({"ARM N":
{"us_per_packet": {stage: µs}, "sender_us_per_packet", "receiver_us_per_packet",
"sender_cores", "receiver_cores", "packets_per_s", ...}}) and "upstream_opus" (packets,
seconds, kbit/s of the recording).

Only loopback addresses are used; every wait is bounded in time and every loop in count.
The figures depend on the machine being otherwise idle: each level prints the load average
and the CPU time the hypervisor withheld (steal; a throttled VM stalls every stream at once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import gc
import multiprocessing
import os
import random
import resource
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aioice.ice
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender
from figures import add_json_option, tail, tail_text, write_json

from voxgate.codecs.opus_packets import OpusRun
from voxgate.codecs.playout import Frame
from voxgate.gateway.webrtc.clock import PHASES, LatencyWindow, MediaClock
from voxgate.gateway.webrtc.collector import MediaCollector
from voxgate.gateway.webrtc.sdp import send_opus_only
from voxgate.gateway.webrtc.track import DTX_HANGOVER, SessionAudioTrack, TrackOptions

RATE, FRAME = 24000, 480  # 20 ms at 24 kHz
LEVELS = (10, 20, 40, 80, 120, 160, 200, 240, 320, 400)
# Passthrough sends no encode: its ramp goes further, in bigger steps.
PASSTHROUGH_LEVELS = (20, 80, 160, 240, 320, 400, 480, 600, 720, 840, 1000)
# The passthrough arm again without the media collector (VOXGATE_MEDIA_GC_FREEZE=false:
# CPython's full collections walk every peer's objects at once, tens of ms with a hundred
# peers or more in a process, and every stream of the process waits): what it is for.
STOCK_GC = "passthrough-cpython-gc"
STOCK_GC_LEVELS = (80, 160, 240, 320)
BARE_MAX_STREAMS = 160  # a passthrough level's bare baseline: libopus on at most this many
PACED_P99_MS, LATE_MS = 5.0, 10.0
JANE = "82c99ee6-f932-423f-a4a3-d403c8914b8d"  # the engine's preset voice for /stream
TEXT = (
    "Voice agents push tokens as they arrive, and the gateway turns them into speech with "
    "the lowest possible delay. Audio must start fast and never crackle, every twenty "
    "milliseconds, without a burst after a stall, for every listener at once."
)


def loopback_only() -> None:
    aioice.ice.get_host_addresses = lambda **_: ["127.0.0.1"]  # type: ignore[assignment]


def peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def speech() -> np.ndarray:
    """Real speech from the embedded engine's espeak-ng, whole 20 ms frames of it."""
    from voxgate.upstream.engine.espeak import Synthesizer
    from voxgate.upstream.engine.voices import Prosody

    synthesizer = Synthesizer()
    try:
        voice = Prosody("en-us", "", 50, 50, 1.0)
        pcm = (await synthesizer.synthesize(TEXT, voice, 1.0, RATE)).pcm
    finally:
        await synthesizer.close()
    return pcm[: pcm.size // FRAME * FRAME]


async def upstream_opus() -> OpusRun:
    """The same text as the upstream streams it in Ogg Opus: the embedded engine's
    ``/stream`` (espeak-ng, its 32 kbit/s encoder, a page per delta), demuxed into packets
    by the client sessions use (``Upstream.stream_opus``). Recorded once, kept in memory."""
    from voxgate.upstream import SpeechRequest, Upstream, UpstreamConfig
    from voxgate.upstream.engine.background import BackgroundEngine

    with BackgroundEngine() as engine:
        async with Upstream(UpstreamConfig(engine.base_url, engine.api_key)) as client:
            request = SpeechRequest(TEXT, voice_id=JANE, response_format="opus")
            return OpusRun.join([run async for run in client.stream_opus(request)])


async def gather_batched(calls: list[Callable[[], Awaitable[Any]]], size: int = 20) -> None:
    for start in range(0, len(calls), size):
        await asyncio.gather(*(call() for call in calls[start : start + size]))


async def until(condition: Callable[[], bool], within_s: float, step_s: float = 0.05) -> bool:
    for _ in range(int(within_s / step_s)):
        if condition():
            return True
        await asyncio.sleep(step_s)
    return condition()


async def serve(conn: Connection, handle: Callable[[str, Any], Awaitable[Any]]) -> None:
    """Answer commands from ``conn`` with ``handle`` until "exit" (bounded in count)."""
    loop = asyncio.get_running_loop()
    for _ in range(100_000):
        op, arg = await loop.run_in_executor(None, conn.recv)
        if op == "exit":
            return
        conn.send(await handle(op, arg))


async def call(conn: Connection, op: str, arg: Any = None, within_s: float = 120) -> Any:
    conn.send((op, arg))
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, conn.poll, within_s):
        raise TimeoutError(f"no answer to {op!r} within {within_s} s")
    return conn.recv()


# -- receivers: aiortc peers that count packets from the clear RTP header ------------------


def receiver_main(conn: Connection) -> None:
    from aioice.ice import StunProtocol

    loopback_only()
    # The receivers stand in for listeners on other machines: they take the CPU the senders
    # leave, and never keep a sender waiting for a core (they count timestamps, not arrival
    # times, and their sockets' buffers hold seconds of packets). Nice 19 alone still let
    # them keep a waking sender off a core for milliseconds: at 600 passthrough streams,
    # side by side in one hour, grid p99 6.4-7.5 ms under nice 19, 5.1-6.2 ms under
    # SCHED_IDLE (2.7-3.1 ms in a quieter hour). If the senders leave them no CPU, their
    # sockets overflow and the level fails.
    os.nice(19)
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    arrivals: dict[int, list[int]] = {}  # RTP timestamps, per SSRC
    received = StunProtocol.datagram_received

    def counting(self: StunProtocol, data: bytes, addr: tuple[Any, ...]) -> None:
        # RTP (not RTCP: payload types 64-95 once the marker bit is masked off) is counted
        # and dropped; STUN, DTLS and RTCP go on to aiortc as usual.
        if len(data) >= 12 and 128 <= data[0] <= 191 and not 64 <= data[1] & 0x7F <= 95:
            ssrc, timestamp = int.from_bytes(data[8:12]), int.from_bytes(data[4:8])
            arrivals.setdefault(ssrc, []).append(timestamp)
            return
        received(self, data, addr)

    StunProtocol.datagram_received = counting  # type: ignore[method-assign,assignment]
    pcs: list[RTCPeerConnection] = []
    polling: list[asyncio.Task[None]] = []
    cpu_at_mark = [0.0]
    marked_at = [0.0]

    async def handle(op: str, arg: Any) -> Any:
        nonlocal pcs
        if op == "offers":
            pcs = [peer() for _ in range(arg)]
            for pc in pcs:
                pc.addTransceiver("audio", direction="recvonly")
            await gather_batched([lambda pc=pc: offer(pc) for pc in pcs])
            return [pc.localDescription.sdp for pc in pcs]
        if op == "answers":
            for pc, sdp in zip(pcs, arg, strict=True):
                await pc.setRemoteDescription(session_description(sdp, "answer"))
            # DTLS handshakes of hundreds of peers take a while on 2 cores.
            within = 60 + len(pcs) / 10
            connected = await until(
                lambda: all(p.connectionState == "connected" for p in pcs), within
            )
            if connected:
                polling.append(asyncio.create_task(poll_sockets(pcs)))
            return connected
        if op == "mark":
            arrivals.clear()
            cpu_at_mark[0], marked_at[0] = sum(cpu_times()), time.monotonic()
            return True
        if op == "report":
            # Over the receivers' own window: it ends before the senders report, as a
            # sender busy with its report sends nothing and would leave a gap in every
            # stream that the gateway did not cause.
            seconds = time.monotonic() - marked_at[0]
            report = receiver_report(arrivals, seconds)
            arrivals.clear()
            return {**report, "cpu": sum(cpu_times()) - cpu_at_mark[0], "seconds": seconds}
        if op == "close":
            for task in polling:
                task.cancel()
            await asyncio.gather(*polling, return_exceptions=True)
            polling.clear()
            await gather_batched([pc.close for pc in pcs])
            pcs = []
            return True
        raise ValueError(op)

    asyncio.run(serve(conn, handle))


async def poll_sockets(pcs: list[RTCPeerConnection]) -> None:
    """Read the connected peers' sockets every 10 ms instead of waiting on them.

    A process that sleeps in epoll on a socket is woken by every datagram sent to it, and
    on the reference VM that wake-up (an IPI to the other vCPU) costs the sender 25-160 µs
    per ``sendto`` (measured), several times the send itself: a cost of receivers on the
    same machine, which remote listeners do not cause. Nobody waits on a polled socket, so
    a ``sendto`` to it costs what a send costs (about 2 µs).
    """
    loop = asyncio.get_running_loop()
    sockets = []
    for pc in pcs:
        for transceiver in pc.getTransceivers():
            connection = transceiver.receiver.transport.transport._connection
            for protocol in connection._protocols:
                sock = protocol.transport._sock  # the socket, not asyncio's wrapper
                loop._remove_reader(sock.fileno())  # the public one refuses a transport's fd
                sockets.append((sock, protocol))
    for _ in range(10_000_000):  # bounded; cancelled at "close"
        for sock, protocol in sockets:
            for _ in range(1000):
                try:
                    data, addr = sock.recvfrom(4096)
                except (BlockingIOError, OSError):
                    break
                protocol.datagram_received(data, addr)
        await asyncio.sleep(0.01)


async def offer(pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())


def session_description(sdp: str, kind: str) -> Any:
    from aiortc import RTCSessionDescription

    return RTCSessionDescription(sdp=sdp, type=kind)


def receiver_report(arrivals: dict[int, list[int]], seconds: float) -> dict[str, float]:
    rates, gaps = [], 0
    for stamps in arrivals.values():
        rates.append(len(stamps) / seconds)
        gaps += int(np.count_nonzero(np.diff(np.array(stamps, dtype=np.int64)) % 2**32 != 960))
    return {"streams": len(rates), "min_rate": min(rates, default=0.0), "ts_gaps": gaps}


# -- senders: one process per worker ------------------------------------------------------


class MeasuredTrack(SessionAudioTrack):
    """Notes when each packet left (after the socket send) and its slot on the grid; for
    turns, a turn's first push, when its first packet left, and what came in between."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (sent at, slot due, slot timestamp) per packet, flat: an array is no container the
        # garbage collector walks, where a list of tuples made every full collection of the
        # sender slower by the bench's own bookkeeping (10-15 ms at 240 streams a process).
        self.sends = array("d")
        self.turn: str | None = None
        self.pushed_at = 0.0
        self.quiet = "talking"  # what the stream was doing when the turn's audio came
        self.before = (0, 0.0)  # involuntary context switches and steal ms at the push
        self.in_push = False
        self.first_audio: list[dict[str, Any]] = []  # one per turn, see _sent_frame

    def push(self, *args: Any, **kwargs: Any) -> int:
        with self.pushing():
            return super().push(*args, **kwargs)

    def push_opus(self, *args: Any, **kwargs: Any) -> int:
        with self.pushing():
            return super().push_opus(*args, **kwargs)

    @contextlib.contextmanager
    def pushing(self) -> Iterator[None]:
        """While a push runs: a packet sent now is sent from the push, not a tick."""
        self.in_push = True
        try:
            yield
        finally:
            self.in_push = False

    def _sent_frame(self, frame: Frame, timestamp: int, now: float, end_ms: float) -> None:
        super()._sent_frame(frame, timestamp, now, end_ms)
        self.sends.extend((now, frame.due, frame.timestamp))
        if self.turn is not None and frame.context_id == self.turn:
            switches, steal = involuntary_switches(), stolen_ms()
            self.first_audio.append({
                "ms": (now - self.pushed_at) * 1000,
                "state": self.quiet,
                "sent_from": "push" if self.in_push else "tick",
                "preempted": switches - self.before[0],
                "steal_ms": steal - self.before[1],
                "span": (self.pushed_at, now),  # for the GCs in between; not reported
            })  # fmt: skip
            self.turn = None


SLOW_CALLBACKS: list[tuple[float, str, float]] = []  # --slow-callbacks: (ms, what, at)
# Garbage collections of this process since the level (or the turns) started:
# (start, end, generation), monotonic.
GC_PAUSES: list[tuple[float, float, int]] = []
_gc_started = [0.0]


def note_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.monotonic()
    elif len(GC_PAUSES) < 1_000_000:
        GC_PAUSES.append((_gc_started[0], time.monotonic(), info["generation"]))


def involuntary_switches() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


# Stock arm: per sender, its track's timeline (due time of RTP offset 0) and its sends.
STOCK_SENDS: dict[int, tuple[float | None, list[tuple[float, int]]]] = {}
_next_encoded_frame = RTCRtpSender._next_encoded_frame


async def timed_next_encoded_frame(self: RTCRtpSender, codec: Any) -> Any:
    # The moment aiortc has the packet's payload and is about to send it.
    encoded = await _next_encoded_frame(self, codec)
    if encoded is not None:
        entry = STOCK_SENDS.get(id(self))
        if entry is None:
            entry = STOCK_SENDS[id(self)] = (getattr(self.track, "timeline_start", None), [])
        entry[1].append((time.monotonic(), encoded.timestamp))
    return encoded


class StockTrack(MediaStreamTrack):
    """What simple apps write: an AudioFrame per recv(), paced with asyncio.sleep."""

    kind = "audio"

    def __init__(self, frames: np.ndarray) -> None:
        super().__init__()
        self._frames = frames
        self._k = 0
        self.timeline_start: float | None = None  # frame k is due 20 ms * k after this

    async def recv(self) -> av.AudioFrame:
        if self.timeline_start is None:
            self.timeline_start = time.monotonic()
        wait = self.timeline_start + self._k * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = self._frames[self._k % len(self._frames)].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, self._k * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self._k += 1
        return frame


async def feed_continuously(tracks: list[MeasuredTrack], pcm: bytes, stop: asyncio.Event) -> None:
    """One task for all streams, as a session transport would: keep each buffer topped up
    with 100 ms pieces of speech, a new context every pass over the clip."""
    piece = RATE // 10 * 2

    def push(track: MeasuredTrack, at: int, context: str) -> int:
        track.push(pcm[at : at + piece], context, at / 48)
        return piece

    await top_up(tracks, len(pcm), piece, piece, push, stop)


async def feed_opus_continuously(
    tracks: list[MeasuredTrack], opus: OpusRun, stop: asyncio.Event
) -> None:
    """As ``feed_continuously``, with the upstream's packets: 100 ms runs of them (as a
    session cuts its Opus events), pushed with ``push_opus`` while the buffer has room."""
    starts = np.concatenate([[0], np.cumsum(opus.samples)]) / 48  # ms on the clip's timeline
    piece = 5  # packets: 100 ms of 20 ms packets
    room = opus.pieces(piece * 960)[0].timeline_bytes(RATE)

    def push(track: MeasuredTrack, k: int, context: str) -> int:
        run = OpusRun(opus.packets[k : k + piece], opus.samples[k : k + piece])
        return track.push_opus(run, context, float(starts[k]))

    await top_up(tracks, len(opus.packets), piece, room, push, stop)


async def top_up(
    tracks: list[MeasuredTrack],
    length: int,
    piece: int,
    room: int,
    push: Callable[[MeasuredTrack, int, str], int],
    stop: asyncio.Event,
) -> None:
    """Every 50 ms, push each stream pieces of a clip of ``length`` (bytes or packets)
    while its buffer has ``room`` bytes for one, from a random place, a new context every
    pass; ``push`` says how far the stream got. A fifth of the streams every 10 ms, as a
    gateway's sessions take their audio each when its upstream sends it, not all at once
    (hundreds of pushes in one go held the event loop up for 8-15 ms)."""
    offsets = [random.randrange(0, length // piece) * piece for _ in tracks]
    turns = [0] * len(tracks)
    slices = 5
    for round_ in range(100_000_000):  # bounded; the stop event ends it long before
        if stop.is_set():
            return
        for i in range(round_ % slices, len(tracks), slices):
            track = tracks[i]
            for _ in range(40):  # bounded: at most 4 s of audio per stream per round
                if track.room_bytes < room:
                    break
                if offsets[i] >= length:
                    track.end_of_turn(f"t{turns[i]}")
                    offsets[i], turns[i] = 0, turns[i] + 1
                offsets[i] += push(track, offsets[i], f"t{turns[i]}")
        await asyncio.sleep(0.05 / slices)


def quiet_state(quiet: int) -> str:
    """What a stream with ``quiet`` idle slots behind it was doing: "dtx" (a turn starts
    from the push) or "hangover" (its 200 ms of silence packets: the turn waits for the
    next slot)."""
    if quiet == 0:
        return "talking"
    return "hangover" if quiet <= DTX_HANGOVER else "dtx"


async def speak_turns(track: MeasuredTrack, pcm: bytes, stop: asyncio.Event, seed: int) -> None:
    """Turns of 0.6-1.5 s after pauses of 0.1-1.5 s (some shorter than the 200 ms DTX
    hangover), pushed in 60 ms pieces at 4x real time, as the upstream delivers them."""
    rng, piece = random.Random(seed), 3 * FRAME * 2
    for k in range(10_000):  # bounded; the stop event ends it long before
        await asyncio.sleep(rng.uniform(0.1, 1.5))
        if stop.is_set():
            return
        length = rng.randint(10, 25) * piece
        start = rng.randrange(0, (len(pcm) - length) // 2) * 2
        context = f"turn{k}"
        track.before = (involuntary_switches(), stolen_ms())
        track.turn, track.pushed_at = context, time.monotonic()
        track.quiet = quiet_state(track._quiet)
        for offset in range(0, length, piece):
            track.push(pcm[start + offset : start + offset + piece], context, offset / 48)
            await asyncio.sleep(0.015)
        track.end_of_turn(context)
        await until(lambda c=context, n=length: track.played_ms(c) >= n / 48, 5, 0.02)


async def speak_opus_turns(
    track: MeasuredTrack, opus: OpusRun, stop: asyncio.Event, seed: int
) -> None:
    """``speak_turns`` with the upstream's packets: the same pauses and turn lengths (same
    seed), runs of three 20 ms packets (60 ms) pushed with ``push_opus`` at 4x real time."""
    rng, piece = random.Random(seed), 3
    for k in range(10_000):  # bounded; the stop event ends it long before
        await asyncio.sleep(rng.uniform(0.1, 1.5))
        if stop.is_set():
            return
        length = rng.randint(10, 25) * piece
        start = rng.randrange(0, len(opus.packets) - length)
        context = f"turn{k}"
        track.before = (involuntary_switches(), stolen_ms())
        track.turn, track.pushed_at = context, time.monotonic()
        track.quiet = quiet_state(track._quiet)
        media_ms = 0.0
        for at in range(start, start + length, piece):
            run = OpusRun(opus.packets[at : at + piece], opus.samples[at : at + piece])
            track.push_opus(run, context, media_ms)
            media_ms += run.duration_ms
            await asyncio.sleep(0.015)
        track.end_of_turn(context)
        await until(lambda c=context, n=media_ms: track.played_ms(c) >= n, 5, 0.02)


@dataclass
class Sender:
    """The state of one sender process between commands."""

    frames: np.ndarray
    opus: OpusRun  # the upstream's packets, for the passthrough arm
    arm: str = "voxgate"
    clock: MediaClock | None = None
    tracks: list[MediaStreamTrack] = field(default_factory=list)
    pcs: list[RTCPeerConnection] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    cpu: tuple[float, float] = (0.0, 0.0)
    wall: float = 0.0
    steal: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, steal ms)
    stages: StageTimes | None = None  # while a level is profiled
    skipped: int = 0  # the clock's skipped steps at the mark
    warm_up: Any = None  # what was recorded before the mark, freed when the level closes

    @property
    def voxgate(self) -> list[MeasuredTrack]:
        return [t for t in self.tracks if isinstance(t, MeasuredTrack)]

    async def setup(
        self, arm: str, offers: list[str], options: TrackOptions, phases: int
    ) -> list[str]:
        self.arm = arm
        # As `voxgate serve` runs (VOXGATE_MEDIA_GC_FREEZE), but for the arm without it.
        if arm == STOCK_GC:
            MediaCollector.uninstall()
        elif MediaCollector.current() is None:
            MediaCollector.install()
        if arm == "stock":
            self.tracks = [StockTrack(self.frames) for _ in offers]
        else:
            self.clock = MediaClock(phases=phases)
            self.tracks = [MeasuredTrack(options, clock=self.clock) for _ in offers]
        self.pcs = [peer() for _ in offers]

        async def answer(pc: RTCPeerConnection, sdp: str, track: MediaStreamTrack) -> None:
            await pc.setRemoteDescription(session_description(sdp, "offer"))
            pc.addTrack(track)
            transceiver = pc.getTransceivers()[0]
            send_opus_only(transceiver)
            if isinstance(track, SessionAudioTrack):
                track.bind(transceiver)  # the direct path, as the WHEP endpoint does
            await pc.setLocalDescription(await pc.createAnswer())

        triples = zip(self.pcs, offers, self.tracks, strict=True)
        await gather_batched([lambda a=a: answer(*a) for a in triples])
        return [pc.localDescription.sdp for pc in self.pcs]

    def start(self, turns: bool) -> None:
        self.stop = asyncio.Event()
        pcm = self.frames.tobytes()
        GC_PAUSES.clear()
        passthrough = self.arm.startswith("passthrough")
        if turns:
            self.tasks = [
                asyncio.create_task(
                    speak_opus_turns(t, self.opus, self.stop, i)
                    if passthrough
                    else speak_turns(t, pcm, self.stop, i)
                )
                for i, t in enumerate(self.voxgate)
            ]
        elif self.voxgate:
            feeding = (
                feed_opus_continuously(self.voxgate, self.opus, self.stop)
                if passthrough
                else feed_continuously(self.voxgate, pcm, self.stop)
            )
            self.tasks = [asyncio.create_task(feeding)]

    def mark(self, profile: bool) -> None:
        # The warm-up's sends are set aside, not freed here (the stock arm's are tuples:
        # freeing tens of thousands at once holds the loop up for milliseconds).
        self.warm_up = dict(STOCK_SENDS)
        STOCK_SENDS.clear()
        for track in self.voxgate:
            track.sends = array("d")
        if profile:
            self.stages = StageTimes(self.voxgate)
        self.steal = [(time.monotonic(), stolen_ms())]
        self.tasks.append(asyncio.create_task(trace_steal(self.steal, self.stop)))
        GC_PAUSES.clear()
        SLOW_CALLBACKS.clear()
        if self.clock is not None:
            self.clock._late = LatencyWindow(3000)  # the level's steps only, not the setup's
            self.skipped = self.clock.stats().skipped_ticks
        self.cpu, self.wall = cpu_times(), time.monotonic()

    def report(self) -> dict[str, Any]:
        user, system = cpu_times()
        stages, self.stages = self.stages, None
        if stages is not None:
            stages.remove()
        lateness, jitter, sent_at = [], [], []
        if self.voxgate:
            for track in self.voxgate:
                sends = np.frombuffer(track.sends, dtype=np.float64).reshape(-1, 3).copy()
                sends = sends[sends[:, 1] >= self.wall]  # the level starts when the mark ends
                if len(sends) >= 2:
                    lateness.append(sends[:, 0] - sends[:, 1])
                    jitter.append(np.abs(np.diff(sends[:, 0]) - np.diff(sends[:, 2]) / 48000))
                    sent_at.append(sends[:, 0])
        for origin, samples in STOCK_SENDS.values():
            at = np.array([t for t, _ in samples])
            ts = np.array([s for _, s in samples], dtype=np.float64) / 48000
            if at.size >= 2:
                lateness.append(at - ts - (origin if origin is not None else 0.0))
                jitter.append(np.abs(np.diff(at) - np.diff(ts)))
                sent_at.append(at)
        late, stolen, late_at = late_packets(lateness, sent_at, np.array(self.steal))
        return {
            "user": user - self.cpu[0],
            "system": system - self.cpu[1],
            "wall": time.monotonic() - self.wall,
            "lateness": lateness,  # per stream, seconds
            "jitter": jitter,
            "late": late,  # packets over LATE_MS behind their stream's grid
            "stolen": stolen,  # of those, late while the hypervisor withheld CPU time
            "first_audio": [with_gc(turn) for t in self.voxgate for turn in t.first_audio],
            "stages": stages.seconds if stages is not None else None,  # perf-counter s
            "packets": sum(t.stats.packets_sent for t in self.voxgate),  # since start
            "passed": sum(t.stats.passed_packets for t in self.voxgate),
            "encoded": sum(t.stats.encoded_packets for t in self.voxgate),
            "stalls": {**self.stalls(), "late_at": late_clusters(late_at, self.wall)},
        }

    def stalls(self) -> dict[str, float]:
        """What held the event loop up during the level: the clock's steps (how late the
        latest one ran, how many were given up) and the garbage collections."""
        clock = self.clock.stats() if self.clock else None
        pauses = [(end - start) * 1000 for start, end, _ in GC_PAUSES]
        return {
            "step_late_max_ms": clock.late_max_ms if clock else 0.0,
            "skipped_steps": clock.skipped_ticks - self.skipped if clock else 0,
            "gc_count": len(pauses),
            "gc_max_ms": max(pauses, default=0.0),
            "gc_over_2ms": sum(p > 2 for p in pauses),
            "gc_full": sum(generation == 2 for _, _, generation in GC_PAUSES),
            "gc_objects": len(gc.get_objects()),
            "gc_frozen": gc.get_freeze_count(),
            "gc_young": young_by_type(),
            "slow": [
                (ms, f"{what}, at +{at - self.wall:.2f} s")
                for ms, what, at in sorted(SLOW_CALLBACKS, reverse=True)[:8]
            ],
            "sweep_ms": self.loaded_sweep_ms(),
        }

    def loaded_sweep_ms(self) -> float:
        """A sweep of the media collector with every peer of the level live: the pause it
        makes once per as many closed peers as are live (0.0 without the collector)."""
        collector = MediaCollector.current()
        if collector is None or not self.pcs:
            return 0.0
        collector.sweep()
        return collector.last_sweep_ms

    async def close(self) -> dict[str, float]:
        """Close every peer, then collect their garbage at once, timed: aiortc's objects
        hold cycles that only a full collection frees, and it is the level's own cost, not
        the next level's (whose first full collection would otherwise pause for it)."""
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await gather_batched([pc.close for pc in self.pcs])
        if self.clock is not None:
            await self.clock.stop()
        peers = len(self.pcs)
        self.tracks, self.pcs, self.tasks, self.clock = [], [], [], None
        self.warm_up = None
        started = time.perf_counter()
        collector = MediaCollector.current()
        if collector is not None:
            collector.sweep()  # what the closed peers left, now rather than a second later
        else:
            gc.collect()
        return {"peers": peers, "collect_ms": (time.perf_counter() - started) * 1000}


def young_by_type() -> list[tuple[str, int]]:
    """What the youngest generation holds, by type, the most first: a collection of it
    walks every one, so what stays young long (queued packets, say) makes it slow."""
    counts: dict[str, int] = {}
    for obj in gc.get_objects(0):
        name = type(obj).__name__
        counts[name] = counts.get(name, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:4]


def with_gc(turn: dict[str, Any]) -> dict[str, Any]:
    """The turn's figures, and whether a garbage collection ran between push and send."""
    pushed, sent = turn["span"]
    figures = {k: v for k, v in turn.items() if k != "span"}
    figures["gc"] = any(start < sent and end > pushed for start, end, _ in GC_PAUSES)
    return figures


def sender_main(
    conn: Connection, frames: np.ndarray, opus: OpusRun, slow_callbacks: bool = False
) -> None:
    loopback_only()
    RTCRtpSender._next_encoded_frame = timed_next_encoded_frame  # type: ignore[method-assign]
    gc.callbacks.append(note_gc)
    # As `voxgate serve` does once it has started: what start-up built is never collected.
    gc.collect()
    gc.freeze()

    if slow_callbacks:
        from asyncio.events import Handle

        run = Handle._run

        def timed_run(self: Any) -> None:
            started, cpu, collections = time.perf_counter(), time.thread_time(), len(GC_PAUSES)
            run(self)
            took = time.perf_counter() - started
            if took > 0.004 and len(SLOW_CALLBACKS) < 1000:
                task = getattr(self._callback, "__self__", None)
                coro = task.get_coro() if isinstance(task, asyncio.Task) else None
                name = getattr(coro, "__qualname__", None) or repr(self)[:160]
                cpu_ms = (time.thread_time() - cpu) * 1000
                gcs = GC_PAUSES[collections:]
                gc_ms = sum(end - start for start, end, _ in gcs) * 1000
                SLOW_CALLBACKS.append((
                    took * 1000, f"{name} cpu {cpu_ms:.1f} ms, {len(gcs)} GCs {gc_ms:.1f} ms",
                    time.monotonic(),
                ))  # fmt: skip

        Handle._run = timed_run  # type: ignore[method-assign]

    async def main() -> None:
        sender = Sender(frames, opus)

        async def handle(op: str, arg: Any) -> Any:
            if op == "setup":
                return await sender.setup(*arg)
            if op == "start":
                sender.start(arg)
            elif op == "mark":
                sender.mark(bool(arg))
            elif op == "report":
                return sender.report()
            elif op == "bare":
                n, options, seconds = arg
                return tuple(bare_level(frames, n, options, rt, seconds) for rt in (False, True))
            elif op == "close":
                return await sender.close()
            else:
                raise ValueError(op)
            return True

        await serve(conn, handle)

    asyncio.run(main())


class TimedSocket:
    """A socket whose ``sendto`` counts into the "sendto" stage."""

    def __init__(self, sock: Any, seconds: dict[str, float]) -> None:
        self._sock, self._seconds = sock, seconds

    def sendto(self, data: bytes, addr: Any) -> int:
        started = time.perf_counter()
        try:
            sent: int = self._sock.sendto(data, addr)
            return sent
        finally:
            self._seconds["sendto"] += time.perf_counter() - started


class StageTimes:
    """Perf-counter time spent in each stage of a sender's packet path, while installed:
    each stage's function is wrapped (at class level, in this process only). The times
    are inclusive (a tick includes its encode); ``where_time_goes`` takes them apart. The
    wrappers cost a few hundred ns per call, so a profiled level costs a little more."""

    def __init__(self, tracks: list[MeasuredTrack]) -> None:
        from asyncio.selector_events import _SelectorDatagramTransport  # type: ignore[attr-defined]

        import pylibsrtp

        from voxgate.gateway.webrtc.rtp import RtpOut
        from voxgate.gateway.webrtc.track import _Packetizer

        self.seconds: dict[str, float] = {}
        self._undo: list[tuple[Any, str, Any]] = []
        for owner, name, stage in (
            (MediaClock, "_tick_phase", "step"),  # one phase's ticks and flushes
            (SessionAudioTrack, "tick", "tick"),  # playout pull, packet choice, encode
            (_Packetizer, "_encode", "encode"),  # libopus
            (SessionAudioTrack, "flush", "flush"),  # the sends, and their bookkeeping
            (RtpOut, "send", "send"),  # header, SRTP, sendto, report counters
            (pylibsrtp.Session, "protect", "protect"),
            (_SelectorDatagramTransport, "sendto", "sendto"),  # the kernel's UDP send
            (SessionAudioTrack, "push", "feed"),  # the session side
            (SessionAudioTrack, "push_opus", "feed"),
        ):
            self._wrap(owner, name, stage)
        # RtpOut's own shortcuts to libsrtp and the socket, per instance.
        for track in tracks:
            out = track._out
            if out is not None:
                self._wrap_slot(out, "_protect", "protect")
                if out._sock is not None:
                    self._undo.append((out, "_sock", out._sock))
                    out._sock = TimedSocket(out._sock, self.seconds)
        self.seconds["packets"] = -sum(t.stats.packets_sent for t in tracks)
        self._tracks = tracks

    def _wrap_slot(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)
        seconds = self.seconds

        def timed(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args)
            finally:
                seconds[stage] += time.perf_counter() - started

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def _wrap(self, owner: Any, name: str, stage: str) -> None:
        original = owner.__dict__[name]
        seconds = self.seconds
        seconds.setdefault(stage, 0.0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - started

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def remove(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()
        self.seconds["packets"] += sum(t.stats.packets_sent for t in self._tracks)


async def trace_steal(trace: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """The machine's steal time every 10 ms, to tell a stall the host caused from ours."""
    for _ in range(1_000_000):  # bounded; the stop event ends it
        if stop.is_set():
            return
        await asyncio.sleep(0.01)
        trace.append((time.monotonic(), stolen_ms()))


def late_packets(
    lateness: list[np.ndarray], sent_at: list[np.ndarray], steal: np.ndarray
) -> tuple[int, int, list[float]]:
    """Packets more than LATE_MS behind their stream's grid, how many of them were sent
    while the machine's steal time grew (from 10 ms before the packet's slot was due to 10
    ms after it left: stalls the hypervisor caused, not the gateway), and when each left."""
    late = stolen = 0
    when: list[float] = []
    for behind, at in zip(lateness, sent_at, strict=True):
        grid = behind - behind.min()
        for lag, sent in zip(grid[grid > LATE_MS / 1000], at[grid > LATE_MS / 1000], strict=True):
            late += 1
            when.append(float(sent))
            if len(steal) >= 2:
                before = np.interp(sent - lag - 0.01, steal[:, 0], steal[:, 1])
                after = np.interp(sent + 0.01, steal[:, 0], steal[:, 1])
                stolen += bool(after > before)
    return late, stolen, when


def late_clusters(when: list[float], since: float) -> list[tuple[float, int]]:
    """Late packets grouped by the 50 ms they left in, as (seconds into the level, how
    many), the largest groups first: one stall of a whole phase shows as one group."""
    groups: dict[float, int] = {}
    for at in when:
        key = round((at - since) / 0.05) * 0.05
        groups[key] = groups.get(key, 0) + 1
    return sorted(groups.items(), key=lambda group: -group[1])[:4]


def cpu_times() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def stolen_ms() -> float:
    """The machine's steal time so far (a VM's vCPUs waiting for the host), in ms."""
    try:
        with open("/proc/stat") as stat:
            return int(stat.readline().split()[8]) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


# -- one level of one arm -----------------------------------------------------------------


@dataclass
class Level:
    arm: str
    streams: int
    user: float  # CPU per stream, share of one core: user time
    system: float  # and kernel time (on loopback it includes the receivers' UDP input)
    due_p99_ms: float = 0.0  # send time - its slot's due time on the stream's own schedule
    grid_p99_ms: float = 0.0  # the same minus the stream's least lateness: pacing only
    jitter_p99_ms: float = 0.0  # |interval - 20 ms| between consecutive sends
    late: int = 0  # packets sent over LATE_MS behind the stream's grid
    stolen: int = 0  # of those, sent late while the hypervisor withheld CPU (steal grew)
    rx_min_rate: float = 50.0  # packets/s of the slowest receiver
    ts_gaps: int = 0  # RTP timestamp steps other than 960 seen by receivers
    load: float = 0.0  # 1-minute load average after the level: others' work shows here
    steal_ms: float = 0.0  # CPU time the hypervisor withheld from this VM during the level
    bare: float = float("nan")  # libopus alone on the level's frames, tight loop
    bare_rt: float = float("nan")  # and paced over the level's seconds
    attempt: int = 1  # 2: the level again after a failure
    rx_cpu: float = 0.0  # the receivers' process over the level, share of one core
    senders: list[dict[str, Any]] = field(default_factory=list)  # their reports, for stages
    stalls: list[dict[str, float]] = field(default_factory=list)  # per sender process

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def figures(self) -> dict[str, Any]:
        """The level in ``--json``: percentages are of one core, per stream."""
        return {
            "streams": self.streams,
            "attempt": self.attempt,
            "cpu_per_stream_pct": self.cpu * 100,
            "user_pct": self.user * 100,
            "system_pct": self.system * 100,
            "bare_pct": self.bare * 100,
            "bare_rt_pct": self.bare_rt * 100,
            "ratio_to_bare": self.cpu / self.bare,
            "ratio_to_bare_rt": self.cpu / self.bare_rt,
            "due_p99_ms": self.due_p99_ms,
            "grid_p99_ms": self.grid_p99_ms,
            "jit_p99_ms": self.jitter_p99_ms,
            "late": self.late,
            "stolen": self.stolen,
            "rx_min_pps": self.rx_min_rate,
            "ts_gaps": self.ts_gaps,
            "load": self.load,
            "steal_ms": self.steal_ms,
            "rx_cpu_pct": self.rx_cpu * 100,
            "stalls": self.stalls,
            "passed": self.ok,
        }

    @property
    def ok(self) -> bool:
        # The grid, not the due time: stock aiortc's resampler holds every frame back by
        # one frame (a constant 20 ms of latency, not a pacing fault).
        paced = self.grid_p99_ms <= PACED_P99_MS
        return paced and self.late == self.stolen and self.rx_min_rate >= 49


class Bench:
    """The receivers' process and a pool of sender processes, driven over pipes."""

    def __init__(
        self,
        frames: np.ndarray,
        opus: OpusRun,
        workers: int,
        phases: int,
        slow_callbacks: bool = False,
    ) -> None:
        self.phases = phases
        context = multiprocessing.get_context("spawn")
        self.receivers, child = context.Pipe()
        self._processes = [context.Process(target=receiver_main, args=(child,), daemon=True)]
        self.senders: list[Connection] = []
        for _ in range(workers):
            parent, child = context.Pipe()
            self.senders.append(parent)
            self._processes.append(
                context.Process(
                    target=sender_main, args=(child, frames, opus, slow_callbacks), daemon=True
                )
            )
        for process in self._processes:
            process.start()

    async def close(self) -> None:
        for conn in [self.receivers, *self.senders]:
            conn.send(("exit", None))
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()

    async def connect(
        self, arm: str, n: int, workers: int, options: TrackOptions, turns: bool
    ) -> list[Connection]:
        senders = self.senders[:workers]
        offers = await call(self.receivers, "offers", n)
        shares = [offers[i::workers] for i in range(workers)]
        answers = await asyncio.gather(
            *(
                call(c, "setup", (arm, s, options, self.phases))
                for c, s in zip(senders, shares, strict=True)
            )
        )
        ordered = [None] * n
        for i, share in enumerate(answers):
            ordered[i::workers] = share
        if not await call(self.receivers, "answers", ordered, 180 + n / 5):
            raise RuntimeError("not every receiver connected within 60 s")
        await asyncio.gather(*(call(c, "start", turns) for c in senders))
        return senders

    async def disconnect(self, senders: list[Connection]) -> list[dict[str, float]]:
        """Close both sides; each sender's peers and the time it took to collect them."""
        closed = await asyncio.gather(*(call(c, "close") for c in senders))
        await call(self.receivers, "close")
        return list(closed)

    async def bare(self, n: int, options: TrackOptions, seconds: float) -> tuple[float, float]:
        """libopus alone in the first sender process, on n streams for ``seconds``: tight
        and paced CPU per stream."""
        tight, real_time = await call(self.senders[0], "bare", (n, options, seconds), 600)
        return tight, real_time

    async def level(
        self,
        arm: str,
        n: int,
        workers: int,
        options: TrackOptions,
        seconds: float,
        profile: bool = False,
    ) -> Level:
        senders = await self.connect(arm, n, workers, options, turns=False)
        try:
            await asyncio.sleep(1.5)  # warm-up: every peer sending, buffers full
            await asyncio.gather(*(call(c, "mark", profile) for c in senders))
            await call(self.receivers, "mark")
            steal = stolen_ms()
            await asyncio.sleep(seconds)
            received = await call(self.receivers, "report")
            reports = await asyncio.gather(*(call(c, "report") for c in senders))
            steal = stolen_ms() - steal
            wall = max(r["wall"] for r in reports)
        finally:
            closed = await self.disconnect(senders)
        lateness = [x for r in reports for x in r["lateness"]]
        jitter = [x for r in reports for x in r["jitter"]]
        if lateness:
            due = np.concatenate(lateness) * 1000
            grid = np.concatenate([x - x.min() for x in lateness]) * 1000
            jit = np.concatenate(jitter) * 1000
            p99 = [float(np.percentile(x, 99)) for x in (due, grid, jit)]
        else:
            p99 = [float("inf")] * 3
        per = wall * n
        return Level(
            f"{arm}/{workers}" if arm != "stock" else arm, n,
            sum(r["user"] for r in reports) / per, sum(r["system"] for r in reports) / per,
            p99[0], p99[1], p99[2],
            sum(r["late"] for r in reports), sum(r["stolen"] for r in reports),
            received["min_rate"] if received["streams"] == n else 0.0, received["ts_gaps"],
            os.getloadavg()[0], steal, rx_cpu=received["cpu"] / received["seconds"],
            senders=[stage_figures(r) for r in reports],
            stalls=[{**r["stalls"], **c} for r, c in zip(reports, closed, strict=True)],
        )  # fmt: skip

    async def first_audio(
        self, arm: str, options: TrackOptions, seconds: float
    ) -> list[dict[str, Any]]:
        """20 streams speaking turns after pauses: per turn, push -> first packet sent."""
        senders = await self.connect(arm, 20, 1, options, turns=True)
        try:
            await asyncio.sleep(seconds)
            report = await call(senders[0], "report")
        finally:
            await self.disconnect(senders)
        return report["first_audio"]


def bare_level(
    frames: np.ndarray, n: int, options: TrackOptions, real_time: bool, seconds: float
) -> float:
    """CPU per stream (share of one core) of libopus alone on n streams for ``seconds`` of
    audio: in a tight loop, or paced as real time (a burst of n frames every 20 ms)."""
    from voxgate.codecs.opus import open_libopus

    codecs = [open_libopus(options.opus_format, RATE) for _ in range(n)]
    audio = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
    audio.sample_rate = RATE
    pieces = [frame.tobytes() for frame in frames]
    cpu, start = 0.0, time.monotonic()
    for k in range(round(seconds * 50)):
        if real_time:
            time.sleep(max(0.0, start + k * 0.02 - time.monotonic()))
        began = time.process_time()
        for i, codec in enumerate(codecs):
            audio.planes[0].update(pieces[(k + i * 7) % len(pieces)])
            codec.encode(audio)
        cpu += time.process_time() - began
    return cpu / n / seconds


# -- the run --------------------------------------------------------------------------------

HEADER = (
    "arm             N  cpu/stream (user+sys)  bare  /bare  /bare-rt  due p99  grid p99  jit p99"
    "  late stoln  rx/s gaps       tx/rx cores   load steal\n" + "-" * 145
)
SLOW_TURN_MS = 5.0  # the first-audio p99 goal: a turn over it is looked at for its cause
GOALS = {
    "ratio_to_bare": 1.3,  # the encode path
    "jit_p99_ms": 2.0,
    "grid_p99_ms": PACED_P99_MS,
    "passthrough_streams": 600,  # with 2 sender processes
    "passthrough_ratio_to_bare": 0.25,
}


def row(level: Level) -> str:
    return (
        f"{level.arm:14} {level.streams:4} {level.cpu * 100:6.2f}% ({level.user * 100:5.2f}+"
        f"{level.system * 100:4.2f}) {level.bare * 100:5.2f}% {level.cpu / level.bare:5.2f}x "
        f"{level.cpu / level.bare_rt:7.2f}x "
        f"{level.due_p99_ms:8.2f} {level.grid_p99_ms:9.2f} {level.jitter_p99_ms:8.2f} "
        f"{level.late:5} {level.stolen:5} {level.rx_min_rate:5.1f} {level.ts_gaps:4}  "
        f"{'ok' if level.ok else 'FAIL':4} {level.cpu * level.streams:5.2f}/{level.rx_cpu:4.2f}  "
        f"{level.load:5.2f} {level.steal_ms:4.0f}ms"
    )


def stall_row(level: Level) -> str:
    """What held each sender's event loop up during a level, printed under a failed one."""
    return "".join(
        f"\n{'':14} sender {i}: latest clock step {s['step_late_max_ms']:.1f} ms late, "
        f"{s['skipped_steps']} steps given up; {s['gc_count']} GCs, {s['gc_over_2ms']} over "
        f"2 ms, longest {s['gc_max_ms']:.1f} ms, {s['gc_full']} full; "
        f"{s['gc_objects']:,} objects tracked, {s['gc_frozen']:,} frozen, young: "
        + ", ".join(f"{n:,} {name}" for name, n in s["gc_young"])
        + "; "
        f"a sweep with its peers live {s['sweep_ms']:.0f} ms; "
        f"the garbage of its {s['peers']:.0f} closed peers collected in {s['collect_ms']:.0f} ms"
        + "".join(f"; {n} late at +{at:.2f} s" for at, n in s["late_at"])
        + "".join(f"\n{'':18}{ms:.1f} ms: {name}" for ms, name in s["slow"][:3])
        for i, s in enumerate(level.stalls)
    )


def ramp(args: argparse.Namespace) -> list[tuple[str, int, list[int]]]:
    """(arm, sender processes, levels) in the order they run, of the arms asked for."""
    levels = [n for n in LEVELS if n <= args.max_streams]
    further = [n for n in PASSTHROUGH_LEVELS if n <= args.max_passthrough_streams]
    return [
        (arm, w, ns)
        for arm, w, ns in (
            [("voxgate", w, levels) for w in args.workers]
            + [("stock", 1, levels)]
            + [("passthrough", w, args.passthrough_levels or further)
               for w in args.passthrough_workers]
            + [(STOCK_GC, w, args.passthrough_levels or STOCK_GC_LEVELS)
               for w in args.passthrough_workers]
        )
        if arm in args.arms
    ]  # fmt: skip


async def run(args: argparse.Namespace) -> None:
    options = TrackOptions(bitrate=args.bitrate, complexity=args.complexity)
    frames = (await speech()).reshape(-1, FRAME)
    opus = await upstream_opus()
    workers = max([*args.workers, *args.passthrough_workers])
    bench = Bench(frames, opus, workers, args.phases, args.slow_callbacks)
    results: list[Level] = []
    profiled: list[Level] = []
    print(
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; opus {args.bitrate} bit/s "
        f"complexity {args.complexity}; {len(frames) / 50:.1f} s of speech; "
        f"{args.seconds:g} s per level; voxgate/W = W sender processes, "
        f"{args.phases} clock phases each; passthrough: the upstream's {len(opus.packets)} "
        f"packets ({opus.duration_ms / 1000:.1f} s, "
        f"{sum(map(len, opus.packets)) * 8 / opus.duration_ms:.1f} kbit/s)"
    )
    try:
        # Warm-up, not reported: the first level after start-up pays for first-use paths.
        await bench.level("voxgate", 10, 1, options, 1.0)
        await bench.level("passthrough", 10, 1, options, 1.0)
        print(HEADER)
        for arm, w, levels in ramp(args):
            for n in levels:
                # Passthrough codes nothing: its baseline is libopus' cost per stream,
                # which does not grow with N, measured on at most BARE_MAX_STREAMS.
                bare_n = min(n, BARE_MAX_STREAMS) if arm.startswith("passthrough") else n
                bare = await bench.bare(bare_n, options, args.seconds)
                for attempt in (1, 2):  # a failure counts when it happens twice in a row
                    level = await bench.level(arm, n, w, options, args.seconds)
                    level.bare, level.bare_rt = bare
                    level.attempt = attempt
                    results.append(level)
                    print(row(level) + ("" if level.ok else stall_row(level)), flush=True)
                    if level.ok:
                        break
                if not level.ok:
                    break
        for arm, n, w in profile_levels(args):
            bare = await bench.bare(min(n, BARE_MAX_STREAMS), options, args.seconds)
            level = await bench.level(arm, n, w, options, args.seconds, profile=True)
            level.bare, level.bare_rt = bare
            profiled.append(level)
            print(row(level), " (profiled)", flush=True)
        turns = opus_turns = []
        if args.turn_seconds > 0:
            turns = await bench.first_audio("voxgate", options, args.turn_seconds)
            opus_turns = await bench.first_audio("passthrough", options, args.turn_seconds)
    finally:
        await bench.close()
    print()
    print(HEADER)
    for level in results:
        print(row(level))
    figures = {
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "cores": os.cpu_count(),
        "speech_s": len(frames) / 50,
        "upstream_opus": {
            "packets": len(opus.packets),
            "seconds": opus.duration_ms / 1000,
            "kbit_s": sum(map(len, opus.packets)) * 8 / opus.duration_ms,
        },
        "goals": GOALS,
        "arms": {
            arm: [r.figures() for r in results if r.arm == arm]
            for arm in dict.fromkeys(r.arm for r in results)
        },
        "capacity": capacity(results),
        "where_time_goes": where_time_goes(profiled),
        "first_audio": first_audio_figures(turns, args.turn_seconds, "encode"),
        "first_audio_passthrough": first_audio_figures(
            opus_turns, args.turn_seconds, "passthrough"
        ),
    }
    goals_met(figures)
    write_json(args.json, figures)


def profile_levels(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """The levels whose sender time is taken apart, (arm, N, W): the encode path at the
    fewest streams asked (where it passes), passthrough at each."""
    if not args.profile_streams:
        return []
    w = max(args.passthrough_workers)
    encode = [("voxgate", min(args.profile_streams), w)] if "voxgate" in args.arms else []
    passed = [("passthrough", n, w) for n in args.profile_streams]
    return encode + (passed if "passthrough" in args.arms else [])


def stage_figures(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("user", "system", "wall", "stages", "packets", "passed", "encoded")
    return {k: report[k] for k in keys}


# (name, what it is, how it is reckoned from the inclusive stage times)
STAGES: tuple[tuple[str, str, Callable[[dict[str, float]], float]], ...] = (
    ("pull", "tick: playout pull, packet choice", lambda t: t["tick"] - t["encode"]),
    ("encode", "tick: libopus encode", lambda t: t["encode"]),
    ("protect", "SRTP protect (libsrtp)", lambda t: t["protect"]),
    ("sendto", "sendto: kernel UDP, loopback", lambda t: t["sendto"]),
    ("rtp", "RtpOut: header, counters", lambda t: t["send"] - t["protect"] - t["sendto"]),
    ("sent", "flush: stats, the bench's log", lambda t: t["flush"] - t["send"]),
    ("clock", "clock step: its loop, batching", lambda t: t["step"] - t["tick"] - t["flush"]),
    ("feed", "feeding: push / push_opus", lambda t: t["feed"]),
    ("rest", "event loop, aiortc, GC, the rest", lambda t: t["cpu"] - t["step"] - t["feed"]),
)


def where_time_goes(levels: list[Level]) -> dict[str, dict[str, Any]]:
    """Sender CPU per packet by stage (perf counters around each stage, summed over the
    sender processes), beside the receivers' CPU per packet: printed and returned."""
    table: dict[str, dict[str, Any]] = {}
    if not levels:
        return table
    print("\nwhere a sender's time goes, µs per packet sent (perf counters: wall time, so a "
          "stage preempted counts its wait, and on a busy machine 'the rest' turns negative; "
          "sendto also counts aiortc's RTCP and STUN sends)")  # fmt: skip
    names = [f"{lv.arm} {lv.streams}" for lv in levels]
    print(f"{'':34}" + "".join(f"{name:>18}" for name in names))
    per_level = []
    for lv in levels:
        total: dict[str, float] = {}
        for report in lv.senders:
            for key, value in (report["stages"] or {}).items():
                total[key] = total.get(key, 0.0) + value
        total["cpu"] = sum(r["user"] + r["system"] for r in lv.senders)
        packets = max(1.0, total.pop("packets", 0.0))
        wall = max(r["wall"] for r in lv.senders)
        us = {name: reckon(total) / packets * 1e6 for name, _, reckon in STAGES}
        per_level.append((lv, us, packets, wall))
        table[f"{lv.arm} {lv.streams}"] = {
            "arm": lv.arm,
            "streams": lv.streams,
            "passed": lv.ok,
            "us_per_packet": us,
            "sender_us_per_packet": total["cpu"] / packets * 1e6,
            "receiver_us_per_packet": lv.rx_cpu * wall / packets * 1e6,
            "sender_cores": total["cpu"] / wall,
            "receiver_cores": lv.rx_cpu,
            "packets_per_s": packets / wall,
            "cpu_per_stream_pct": lv.cpu * 100,
            "ratio_to_bare": lv.cpu / lv.bare,
        }
    for name, what, _ in STAGES:
        print(f"  {what:32}" + "".join(f"{us[name]:18.1f}" for _, us, _, _ in per_level))
    for label, key in (
        ("senders, all of it", "sender_us_per_packet"),
        ("receivers (one process)", "receiver_us_per_packet"),
    ):
        print(f"  {label:32}" + "".join(f"{table[n][key]:18.1f}" for n in table))
    for label, key in (("senders, cores", "sender_cores"), ("receivers, cores", "receiver_cores")):
        print(f"  {label:32}" + "".join(f"{table[n][key]:18.2f}" for n in table))
    print(f"  {'packets/s':32}" + "".join(f"{table[n]['packets_per_s']:18.0f}" for n in table))
    print(f"  {'passed':32}" + "".join(f"{table[n]['passed']!s:>18}" for n in table))
    return table


def capacity(results: list[Level]) -> dict[str, dict[str, Any]]:
    """Per arm: the most streams that passed, where it failed, and the passing levels'
    ratios to bare and jitter; printed as the summary."""
    print()
    table: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(r.arm for r in results):
        passed = [r for r in results if r.arm == arm and r.ok]
        failed = [r for r in results if r.arm == arm and not r.ok]
        passed_n = {r.streams for r in passed}
        fails_at = min((r.streams for r in failed if r.streams not in passed_n), default=None)
        ratios = [r.cpu / r.bare for r in passed] or [float("nan")]
        rt = [r.cpu / r.bare_rt for r in passed] or [float("nan")]
        jitter = max((r.jitter_p99_ms for r in passed), default=float("nan"))
        table[arm] = {
            "max_streams": max((r.streams for r in passed), default=0),
            "fails_at": fails_at,
            "ratio_to_bare": [min(ratios), max(ratios)],
            "ratio_to_bare_rt": [min(rt), max(rt)],
            "jit_p99_ms_max": jitter,
        }
        stop = f", fails at {fails_at}" if fails_at else " (end of ramp)"
        cpu = f"{min(ratios):.2f}-{max(ratios):.2f}x bare, {min(rt):.2f}-{max(rt):.2f}x bare-rt"
        goal = GOALS[
            "passthrough_ratio_to_bare" if arm.startswith("passthrough") else "ratio_to_bare"
        ]
        print(
            f"{arm:14} max streams {table[arm]['max_streams']}{stop}; "
            f"CPU/stream {cpu if passed else 'n/a'} (goal <= {goal:g}x); "
            f"interval jitter p99 <= {jitter:.2f} ms (goal <= 2)"
        )
    return table


def first_audio_figures(turns: list[dict[str, Any]], seconds: float, path: str) -> dict[str, Any]:
    """First audio per state the stream was in, with its tail, and what the slow turns
    (over SLOW_TURN_MS) had in common: printed (on ``path``), and returned for ``--json``."""
    figures: dict[str, Any] = {"streams": 20, "seconds": seconds, "turns": turns, "by_state": {}}
    for state in ("all", "dtx", "hangover", "talking"):
        rows = [t for t in turns if state in ("all", t["state"])]
        if not rows:
            continue
        summary = tail((t["ms"] for t in rows), keep=state == "all")
        figures["by_state"][state] = summary
        print(
            f"first audio ({path}), {'all turns' if state == 'all' else 'after ' + state}: "
            f"{len(rows)} turns on 20 streams, push -> packet sent {tail_text(summary)} "
            f"(goal p50 2 / p99 5)"
        )
    slow = [t for t in turns if t["state"] != "hangover" and t["ms"] > SLOW_TURN_MS]
    causes = {
        "sent_from_tick": sum(t["sent_from"] == "tick" for t in slow),
        "gc": sum(t["gc"] for t in slow),
        "preempted": sum(t["preempted"] > 0 for t in slow),
        "steal": sum(t["steal_ms"] > 0 for t in slow),
        "none_seen": sum(
            t["sent_from"] == "push" and not t["gc"] and not t["preempted"] and not t["steal_ms"]
            for t in slow
        ),
    }
    figures["slow"] = {"over_ms": SLOW_TURN_MS, "turns": len(slow), **causes}
    print(
        f"{path}: turns not in a hangover over {SLOW_TURN_MS:g} ms: {len(slow)}; of them "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in causes.items())
    )
    return figures


def goals_met(figures: dict[str, Any]) -> None:
    """The passthrough goals, each against its measure: printed."""
    print()
    for arm, c in figures["capacity"].items():
        if not arm.startswith("passthrough"):
            continue
        passed = [lv for lv in figures["arms"][arm] if lv["passed"]]
        top = max(passed, key=lambda lv: lv["streams"]) if passed else None
        ratio = top["ratio_to_bare"] if top else float("nan")
        if arm.startswith(STOCK_GC):
            print(
                f"{arm} (without the media collector): {c['max_streams']} streams, CPU per "
                f"stream {ratio:.3f}x bare libopus there"
            )
            continue
        streams, goal = c["max_streams"], GOALS["passthrough_streams"]
        met = "met" if streams >= goal else "not met"
        print(
            f"{arm}: {streams} streams (goal >= {goal}: {met}); "
            f"CPU per stream {ratio:.3f}x bare libopus at that level (goal <= "
            f"{GOALS['passthrough_ratio_to_bare']:g}: "
            f"{'met' if ratio <= GOALS['passthrough_ratio_to_bare'] else 'not met'})"
        )
    encode = figures["first_audio"]["by_state"]
    passed = figures["first_audio_passthrough"]["by_state"]
    for state in ("dtx", "all"):
        if state in encode and state in passed:
            e, p = encode[state], passed[state]
            print(
                f"first audio {state}: passthrough p50 {p['p50']:.2f} / p99 {fmt(p['p99'])} / "
                f"max {p['max']:.2f} ms vs encode p50 {e['p50']:.2f} / p99 {fmt(e['p99'])} / "
                f"max {e['max']:.2f} ms"
            )


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes: 2 s per level")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured per level")
    parser.add_argument("--max-streams", type=int, default=LEVELS[-1])
    parser.add_argument("--bitrate", type=int, default=TrackOptions().bitrate)
    parser.add_argument("--complexity", type=int, default=TrackOptions().complexity)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="voxgate arms: sender processes"
    )
    parser.add_argument(
        "--passthrough-workers", type=int, nargs="+", default=[2],
        help="passthrough arms: sender processes",
    )  # fmt: skip
    parser.add_argument("--max-passthrough-streams", type=int, default=PASSTHROUGH_LEVELS[-1])
    parser.add_argument(
        "--passthrough-levels", type=int, nargs="*", default=[],
        help="the passthrough ramp's levels instead of PASSTHROUGH_LEVELS",
    )  # fmt: skip
    parser.add_argument(
        "--arms", nargs="+", choices=("voxgate", "stock", "passthrough", STOCK_GC),
        default=["voxgate", "stock", "passthrough", STOCK_GC], help="the arms ramped",
    )  # fmt: skip
    parser.add_argument(
        "--profile-streams", type=int, nargs="*", default=[80, 400],
        help="levels whose sender time is taken apart (none: skip)",
    )  # fmt: skip
    parser.add_argument("--phases", type=int, default=PHASES, help="media clock phases")
    parser.add_argument(
        "--turn-seconds", type=float, default=30.0, help="turns spoken for first audio"
    )
    parser.add_argument(
        "--slow-callbacks", action="store_true",
        help="name the event-loop callbacks over 4 ms in each failed level's stalls",
    )  # fmt: skip
    add_json_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.turn_seconds = 2.0, min(args.turn_seconds, 10.0)
    loopback_only()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
