"""What does a real-time WebRTC audio stream cost, and how many fit in one process?

Arms on the same espeak speech (24 kHz mono), every stream speaking continuously:

  bare       libopus alone (av.CodecContext, 24 kHz mono, same bitrate and complexity) on
             N streams' worth of 20 ms frames: in a tight loop ("bare"), and paced as real
             time, N frames every 20 ms ("bare-rt": the CPU idles between bursts and comes
             back with cold caches, which costs libopus 10-30 % more per frame).
  voxgate/P  N SessionAudioTracks on one MediaClock with P phases, fed PCM as a session
             transport would, sending to N aiortc receivers over loopback.
  stock      N plain MediaStreamTracks returning av.AudioFrames (s16 mono 24 kHz), each
             paced with its own asyncio.sleep: aiortc resamples and encodes (48 kHz stereo,
             96 kbit/s) in its thread pool.

Receivers live in a subprocess and count packets instead of decoding, so only the gateway
process' CPU is measured (user + system; on loopback the system time includes the
receivers' UDP input). Send times are taken where aiortc has the payload and is about to
send it (the same hook in every arm):

  due p99   send time - the slot's due time on the stream's own schedule
  grid p99  the same, less the stream's smallest lateness: pacing, without a constant
            offset (stock aiortc's resampler holds every frame back by one: +20 ms)
  jit p99   |interval between consecutive sends - 20 ms|
  late      packets sent over half a frame behind their stream's grid
  under     gateway-caused underruns: voxgate's playout buffer counts its pulls over half
            a frame late with audio ready; stock has no buffer, its late packets count

Each arm ramps N (10, 20, 40, 80, 120, 160, ...) until a level fails twice in a row (once
may be another process' doing): grid p99 > 5 ms, an underrun, a receiver under 49
packets/s or an RTP timestamp step other than 960 (a slot skipped by a stall). Then
20 voxgate streams speak turns with pauses, for the first-audio latency: the first push
of a turn to its first packet handed to aiortc, split into the wait for the stream's next
20 ms slot and the slot's due time to the hand-over.

    python bench/webrtc.py [--quick] [--seconds 8] [--max-streams 400] [--phases 1 4]
                           [--bitrate 24000] [--complexity 5]

Only loopback addresses are used; every wait is bounded in time and every loop in count.
The figures depend on the machine being otherwise idle: each level prints the load average
and the CPU time the hypervisor withheld (steal; a throttled VM stalls every stream at once).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import multiprocessing
import os
import random
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import aioice.ice
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from voxgate.gateway.webrtc.clock import MediaClock
from voxgate.gateway.webrtc.sdp import send_opus_only
from voxgate.gateway.webrtc.track import SessionAudioTrack, TrackOptions

RATE, FRAME = 24000, 480  # 20 ms at 24 kHz
LEVELS = (10, 20, 40, 80, 120, 160, 200, 240, 320, 400)
PACED_P99_MS, LATE_MS = 5.0, 10.0
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


# -- receivers: a subprocess of aiortc peers that count packets instead of decoding -------


def receiver_main(conn: Connection) -> None:
    loopback_only()
    arrivals: dict[int, list[int]] = {}  # RTP timestamps, per receiver

    async def lean(self: RTCRtpReceiver, packet: Any, arrival_time_ms: int) -> None:
        arrivals.setdefault(id(self), []).append(packet.timestamp)

    RTCRtpReceiver._handle_rtp_packet = lean  # type: ignore[method-assign]
    asyncio.run(serve_receivers(conn, arrivals))


async def serve_receivers(conn: Connection, arrivals: dict[int, list[int]]) -> None:
    loop = asyncio.get_running_loop()
    pcs: list[RTCPeerConnection] = []
    for _ in range(100_000):  # bounded: one command each
        op, arg = await loop.run_in_executor(None, conn.recv)
        if op == "offers":
            pcs = [peer() for _ in range(arg)]
            for pc in pcs:
                pc.addTransceiver("audio", direction="recvonly")
            await gather_batched([lambda pc=pc: offer(pc) for pc in pcs])
            conn.send([pc.localDescription.sdp for pc in pcs])
        elif op == "answers":
            for pc, sdp in zip(pcs, arg, strict=True):
                await pc.setRemoteDescription(answer_of(sdp))
            conn.send(await until(lambda pcs=pcs: all_connected(pcs), 60))
        elif op == "mark":
            arrivals.clear()
            conn.send(True)
        elif op == "report":
            conn.send(receiver_report(arrivals, arg))
        elif op == "close":
            await gather_batched([pc.close for pc in pcs])
            pcs = []
            conn.send(True)
        else:
            return


def all_connected(pcs: list[RTCPeerConnection]) -> bool:
    return all(pc.connectionState == "connected" for pc in pcs)


async def offer(pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())


def answer_of(sdp: str) -> Any:
    from aiortc import RTCSessionDescription

    return RTCSessionDescription(sdp=sdp, type="answer")


def receiver_report(arrivals: dict[int, list[int]], seconds: float) -> dict[str, float]:
    rates, gaps = [], 0
    for stamps in arrivals.values():
        rates.append(len(stamps) / seconds)
        gaps += int(np.count_nonzero(np.diff(np.array(stamps, dtype=np.int64)) % 2**32 != 960))
    return {"streams": len(rates), "min_rate": min(rates, default=0.0), "ts_gaps": gaps}


async def gather_batched(calls: list[Callable[[], Awaitable[Any]]], size: int = 20) -> None:
    for start in range(0, len(calls), size):
        await asyncio.gather(*(call() for call in calls[start : start + size]))


async def until(condition: Callable[[], bool], within_s: float, step_s: float = 0.05) -> bool:
    for _ in range(int(within_s / step_s)):
        if condition():
            return True
        await asyncio.sleep(step_s)
    return condition()


# -- gateway side: send-time hook, the stock track, the feeder ----------------------------

# Per sender: its track's timeline (monotonic due time of RTP offset 0) and the sends seen.
SENDS: dict[int, tuple[float | None, list[tuple[float, int]]]] = {}
_next_encoded_frame = RTCRtpSender._next_encoded_frame


async def timed_next_encoded_frame(self: RTCRtpSender, codec: Any) -> Any:
    # Both arms: the moment aiortc has the packet's payload and is about to send it.
    encoded = await _next_encoded_frame(self, codec)
    if encoded is not None:
        entry = SENDS.get(id(self))
        if entry is None:
            entry = SENDS[id(self)] = (getattr(self.track, "timeline_start", None), [])
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


async def feed_continuously(
    tracks: list[SessionAudioTrack], pcm: bytes, stop: asyncio.Event
) -> None:
    """One task for all streams, as a session transport would: keep each buffer topped up
    with 100 ms pieces of speech, a new context every pass over the clip."""
    piece = RATE // 10 * 2
    offsets = [random.randrange(0, len(pcm) // piece) * piece for _ in tracks]
    turns = [0] * len(tracks)
    while not stop.is_set():
        for i, track in enumerate(tracks):
            for _ in range(40):  # bounded: at most 4 s of audio per stream per round
                if track.room_bytes < piece:
                    break
                if offsets[i] >= len(pcm):
                    track.end_of_turn(f"t{turns[i]}")
                    offsets[i], turns[i] = 0, turns[i] + 1
                track.push(pcm[offsets[i] : offsets[i] + piece], f"t{turns[i]}", offsets[i] / 48)
                offsets[i] += piece
        await asyncio.sleep(0.05)


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
    late: int = 0  # packets sent over half a frame behind the stream's grid
    underruns: int = 0  # gateway-caused: see the module docstring
    rx_min_rate: float = 50.0  # packets/s of the slowest receiver
    ts_gaps: int = 0  # RTP timestamp steps other than 960 seen by receivers
    load: float = 0.0  # 1-minute load average after the level: others' work shows here
    steal_ms: float = 0.0  # CPU time the hypervisor withheld from this VM during the level

    @property
    def cpu(self) -> float:
        return self.user + self.system

    @property
    def ok(self) -> bool:
        # The grid, not the due time: stock aiortc's resampler holds every frame back by
        # one frame (a constant 20 ms of latency, not a pacing fault).
        paced = self.grid_p99_ms <= PACED_P99_MS
        received = self.rx_min_rate >= 49 and self.ts_gaps == 0
        return paced and self.underruns == 0 and received


def bare_level(frames: np.ndarray, n: int, options: TrackOptions, real_time: bool) -> float:
    """CPU per stream (share of one core) of libopus alone on n streams for 1 s of audio:
    in a tight loop, or paced as real time (a burst of n frames every 20 ms)."""
    from voxgate.codecs.opus import open_libopus

    codecs = [open_libopus(options.opus_format, RATE) for _ in range(n)]
    audio = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
    audio.sample_rate = RATE
    pieces = [frame.tobytes() for frame in frames]
    cpu, start = 0.0, time.monotonic()
    for k in range(50):
        if real_time:
            time.sleep(max(0.0, start + k * 0.02 - time.monotonic()))
        began = time.process_time()
        for i, codec in enumerate(codecs):
            audio.planes[0].update(pieces[(k + i * 7) % len(pieces)])
            codec.encode(audio)
        cpu += time.process_time() - began
    return cpu / n


def send_delays() -> tuple[float, float, float, int]:
    """Pooled p99 of lateness against each slot's due time, of lateness against the
    stream's own grid (its least lateness taken off), of interval jitter; and the packets
    more than LATE_MS behind their stream's grid."""
    due, grid, jitter = [], [], []
    for origin, samples in SENDS.values():
        at = np.array([t for t, _ in samples])
        ts = np.array([s for _, s in samples], dtype=np.float64) / 48000
        if at.size < 2:
            continue
        offset = at - ts
        due.append((offset - (origin if origin is not None else offset.min())) * 1000)
        grid.append((offset - offset.min()) * 1000)
        jitter.append(np.abs(np.diff(at) - np.diff(ts)) * 1000)
    if not due:
        return float("inf"), float("inf"), float("inf"), 1
    late = int(np.count_nonzero(np.concatenate(grid) > LATE_MS))
    p99 = [float(np.percentile(np.concatenate(x), 99)) for x in (due, grid, jitter)]
    return p99[0], p99[1], p99[2], late


async def call(conn: Connection, op: str, arg: Any = None, within_s: float = 120) -> Any:
    conn.send((op, arg))
    loop = asyncio.get_running_loop()
    ready = await loop.run_in_executor(None, conn.poll, within_s)
    if not ready:
        raise TimeoutError(f"receiver did not answer {op!r} within {within_s} s")
    return conn.recv()


async def connect_all(conn: Connection, tracks: list[MediaStreamTrack]) -> list[RTCPeerConnection]:
    offers = await call(conn, "offers", len(tracks))
    pcs = [peer() for _ in tracks]

    async def answer(pc: RTCPeerConnection, sdp: str, track: MediaStreamTrack) -> None:
        from aiortc import RTCSessionDescription

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        pc.addTrack(track)
        send_opus_only(pc.getTransceivers()[0])
        await pc.setLocalDescription(await pc.createAnswer())

    calls = [lambda a=a: answer(*a) for a in zip(pcs, offers, tracks, strict=True)]
    await gather_batched(calls)
    if not await call(conn, "answers", [pc.localDescription.sdp for pc in pcs]):
        raise RuntimeError("not every receiver connected within 60 s")
    return pcs


def stolen_ms() -> float:
    """The machine's steal time so far (a VM's vCPUs waiting for the host), in ms."""
    try:
        with open("/proc/stat") as stat:
            return int(stat.readline().split()[8]) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_times() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def make_tracks(arm: str, n: int, frames: np.ndarray, options: TrackOptions) -> Any:
    if arm == "stock":
        return None, [StockTrack(frames) for _ in range(n)]
    clock = MediaClock(phases=int(arm.partition("/")[2] or 4))
    return clock, [SessionAudioTrack(options, clock=clock) for _ in range(n)]


async def run_level(
    arm: str, n: int, conn: Connection, frames: np.ndarray, options: TrackOptions, seconds: float
) -> Level:
    clock, tracks = make_tracks(arm, n, frames, options)
    voxgate = [t for t in tracks if isinstance(t, SessionAudioTrack)]
    stop = asyncio.Event()
    feeder = asyncio.create_task(feed_continuously(voxgate, frames.tobytes(), stop))
    pcs = await connect_all(conn, tracks)
    try:
        await asyncio.sleep(1.5)  # warm-up: every peer sending, buffers full
        SENDS.clear()
        await call(conn, "mark")
        before = sum(t.stats.underruns_gateway for t in voxgate)
        (user, system), wall, steal = cpu_times(), time.monotonic(), stolen_ms()
        await asyncio.sleep(seconds)
        user_end, system_end = cpu_times()
        steal = stolen_ms() - steal
        wall = time.monotonic() - wall
        due, grid, jitter, late = send_delays()
        underruns = sum(t.stats.underruns_gateway for t in voxgate) - before
        received = await call(conn, "report", wall)
    finally:
        stop.set()
        await asyncio.gather(feeder, return_exceptions=True)
        await gather_batched([pc.close for pc in pcs])
        await call(conn, "close")
        if clock is not None:
            await clock.stop()
    per = wall * n
    return Level(
        arm, n, (user_end - user) / per, (system_end - system) / per,
        due, grid, jitter, late, underruns if voxgate else late,
        received["min_rate"] if received["streams"] == n else 0.0, received["ts_gaps"],
        os.getloadavg()[0], steal,
    )  # fmt: skip


# -- first-audio latency: turns with pauses -------------------------------------------------


class TurnTrack(SessionAudioTrack):
    """Notes, for each turn, its first push and when its first packet went to aiortc."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turn: str | None = None
        self.pushed_at = 0.0
        self.samples: list[tuple[float, float]] = []  # (waiting for the slot, slot -> handed)

    async def recv(self) -> Any:
        packet = await super().recv()
        if self.turn is not None and self.played_ms(self.turn) > 0:
            due = (self.timeline_start or 0.0) + (packet.pts or 0) / 48000
            self.samples.append((due - self.pushed_at, time.monotonic() - due))
            self.turn = None
        return packet


async def speak_turns(track: TurnTrack, pcm: bytes, stop: asyncio.Event, seed: int) -> None:
    """Turns of 0.6-1.5 s after pauses of 0.15-0.5 s, pushed in 60 ms pieces at 4x real
    time, as the upstream delivers them."""
    rng, piece = random.Random(seed), 3 * FRAME * 2
    for k in range(10_000):  # bounded; the stop event ends it long before
        await asyncio.sleep(rng.uniform(0.15, 0.5))
        if stop.is_set():
            return
        length = rng.randint(10, 25) * piece
        start = rng.randrange(0, (len(pcm) - length) // 2) * 2
        context, track.pushed_at, track.turn = f"turn{k}", time.monotonic(), f"turn{k}"
        for offset in range(0, length, piece):
            track.push(pcm[start + offset : start + offset + piece], context, offset / 48)
            await asyncio.sleep(0.015)
        track.end_of_turn(context)
        await until(lambda c=context, n=length: track.played_ms(c) >= n / 48, 5, 0.02)


async def latency_phase(
    conn: Connection, frames: np.ndarray, options: TrackOptions, phases: int, seconds: float
) -> dict[str, float]:
    """20 streams speaking turns; per turn: first push -> first packet handed to aiortc,
    split into the wait for the stream's next 20 ms slot and the slot's due -> handed."""
    n, clock, stop = 20, MediaClock(phases=phases), asyncio.Event()
    tracks = [TurnTrack(options, clock=clock) for _ in range(n)]
    pcs = await connect_all(conn, list(tracks))
    speakers = [
        asyncio.create_task(speak_turns(t, frames.tobytes(), stop, i)) for i, t in enumerate(tracks)
    ]
    try:
        await asyncio.sleep(seconds)
    finally:
        stop.set()
        await asyncio.gather(*speakers, return_exceptions=True)
        await gather_batched([pc.close for pc in pcs])
        await call(conn, "close")
        await clock.stop()
    waits = np.array([w for t in tracks for w, _ in t.samples]) * 1000
    work = np.array([g for t in tracks for _, g in t.samples]) * 1000
    total = waits + work
    return {
        "turns": float(total.size),
        **{f"total_p{q}": float(np.percentile(total, q)) for q in (50, 99)},
        **{f"wait_p{q}": float(np.percentile(waits, q)) for q in (50, 99)},
        **{f"work_p{q}": float(np.percentile(work, q)) for q in (50, 99)},
    }


# -- the run --------------------------------------------------------------------------------

HEADER = (
    "arm         N  cpu/stream (user+sys)  /bare  /bare-rt  due p99  grid p99  jit p99"
    "  late under  rx/s gaps      load steal\n" + "-" * 120
)


def row(level: Level, bare: dict[int, tuple[float, float]]) -> str:
    tight, real_time = bare[level.streams]
    return (
        f"{level.arm:10} {level.streams:4} {level.cpu * 100:6.2f}% ({level.user * 100:5.2f}+"
        f"{level.system * 100:4.2f}) {level.cpu / tight:6.2f}x {level.cpu / real_time:7.2f}x "
        f"{level.due_p99_ms:8.2f} {level.grid_p99_ms:9.2f} {level.jitter_p99_ms:8.2f} "
        f"{level.late:5} {level.underruns:5} {level.rx_min_rate:5.1f} {level.ts_gaps:4}  "
        f"{'ok' if level.ok else 'FAIL':4} {level.load:5.2f} {level.steal_ms:4.0f}ms"
    )


async def run(args: argparse.Namespace, conn: Connection) -> None:
    options = TrackOptions(bitrate=args.bitrate, complexity=args.complexity)
    frames = (await speech()).reshape(-1, FRAME)
    levels = [n for n in LEVELS if n <= args.max_streams]
    arms = [f"voxgate/{p}" for p in args.phases] + ["stock"]
    RTCRtpSender._next_encoded_frame = timed_next_encoded_frame  # type: ignore[method-assign]
    bare: dict[int, tuple[float, float]] = {}
    results: list[Level] = []
    print(
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; opus {args.bitrate} bit/s "
        f"complexity {args.complexity}; {len(frames) / 50:.1f} s of speech; "
        f"{args.seconds:g} s per level; voxgate/P = P clock phases"
    )
    # Warm-up, not reported: the first level after start-up pays for first-use code paths.
    await run_level(arms[0], 10, conn, frames, options, 1.0)
    print(HEADER)
    for arm in arms:
        for n in levels:
            if n not in bare:
                bare[n] = tuple(bare_level(frames, n, options, rt) for rt in (False, True))
            for _ in range(2):  # a failure counts when it happens twice in a row
                level = await run_level(arm, n, conn, frames, options, args.seconds)
                results.append(level)
                print(row(level, bare), flush=True)
                if level.ok:
                    break
            if not level.ok:
                break
    latency = {p: await latency_phase(conn, frames, options, p, args.seconds) for p in args.phases}
    print()
    print(HEADER)
    for n in sorted(bare):
        tight, real_time = bare[n]
        print(f"{'bare':10} {n:4} {tight * 100:6.2f}%  bare-rt {real_time * 100:6.2f}%")
    for level in results:
        print(row(level, bare))
    summary(results, bare, latency)


def summary(
    results: list[Level], bare: dict[int, tuple[float, float]], latency: dict[int, Any]
) -> None:
    print()
    for arm in dict.fromkeys(r.arm for r in results):
        passed = [r for r in results if r.arm == arm and r.ok]
        failed = [r for r in results if r.arm == arm and not r.ok]
        passed_n = {r.streams for r in passed}
        fails_at = min((r.streams for r in failed if r.streams not in passed_n), default=None)
        stop = f", fails at {fails_at}" if fails_at else " (end of ramp)"
        ratios = [r.cpu / bare[r.streams][0] for r in passed] or [float("nan")]
        rt = [r.cpu / bare[r.streams][1] for r in passed] or [float("nan")]
        cpu = f"{min(ratios):.2f}-{max(ratios):.2f}x bare, {min(rt):.2f}-{max(rt):.2f}x bare-rt"
        jitter = max((r.jitter_p99_ms for r in passed), default=float("nan"))
        print(
            f"{arm:10} max streams {max((r.streams for r in passed), default=0)}{stop}; "
            f"CPU/stream {cpu if passed else 'n/a'} (goal <= 1.3x); "
            f"interval jitter p99 <= {jitter:.2f} ms (goal <= 2)"
        )
    for phases, lat in latency.items():
        print(
            f"voxgate/{phases} first audio, {lat['turns']:.0f} turns on 20 streams: push -> "
            f"handed p50 {lat['total_p50']:.2f} / p99 {lat['total_p99']:.2f} ms (goal 2/5) "
            f"= wait for the slot p50 {lat['wait_p50']:.2f} / p99 {lat['wait_p99']:.2f} "
            f"+ due -> handed p50 {lat['work_p50']:.2f} / p99 {lat['work_p99']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute: 2 s per level")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured per level")
    parser.add_argument("--max-streams", type=int, default=LEVELS[-1])
    parser.add_argument("--bitrate", type=int, default=TrackOptions().bitrate)
    parser.add_argument("--complexity", type=int, default=TrackOptions().complexity)
    parser.add_argument(
        "--phases", type=int, nargs="+", default=[1, 4], help="voxgate arms: clock phases"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.phases = 2.0, args.phases[-1:]
    loopback_only()
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    receivers = context.Process(target=receiver_main, args=(child,), daemon=True)
    receivers.start()
    try:
        asyncio.run(run(args, parent))
    finally:
        parent.send(("exit", None))
        receivers.join(timeout=30)
        if receivers.is_alive():
            receivers.terminate()


if __name__ == "__main__":
    main()
