"""Concurrent Twilio Media Stream call legs: what each costs the gateway, and how steadily its
audio reaches the phones.

Each leg is what a phone agent runs: an agent socket on `/v1/realtime` (API key), a client
token minted for its session (`POST /v1/client_tokens` with its `session_id`), and a
Twilio-like client on `/v1/telephony/twilio` that opens with Twilio's `connected` and `start`
(`session_id` and `token` as `customParameters`), plays the gateway's `media` in real time
and echoes each `mark` once the audio sent before it has played. Its messages are those of
tests/fakes/twilio_call.py; the client is leaner than that fake (a mark's echo is timed for
the moment it is reached, where the fake polls every call each 5 ms and keeps all it played:
20,000 wake-ups a second at 100 legs, in the process that times the arrivals). With
`--caller-audio` each call also sends the caller's μ-law every 20 ms and each agent asks for
it (`caller_audio: true`) and counts it.

Each agent sends one turn (TURN, 27 s of speech) in one `text.append` with `context.close`
and waits for `context.done`. All agents send the same turn at the same moment, so their
chunks go upstream together: a worst case for bursts of work in the gateway. Once every phone
has had its first media (or FIRST_MEDIA_WAIT_S after the turns were sent, if some are still
silent), and SETTLE_S more, a window of `--seconds` is measured:

  CPU % per leg   the gateway process' utime + stime (/proc/<pid>/stat) over the window, in %
                  of one core, ÷ legs
  ÷ μ-law alone   the gateway's CPU per second of audio the phones received, ÷ the CPU per
                  second of audio of voxgate's μ-law encoder alone (MulawEncoder from 24 kHz
                  PCM, in the session's 100 ms pieces, tight loop, same speech, same run)
  media/s (min)   media messages a phone received in the window ÷ its length, lowest leg
  jitter          |interval between consecutive media at a phone − 20 ms|, p50 and p99 over
                  all legs; the window starts well after each leg's first 100 ms (sent at once)
  max lead        audio a phone holds ahead of its playout (real time from its first media; a
                  buffer that ran dry starts again), just after each arrival: the highest
  passes          every leg ≥ 49 media/s and jitter p99 ≤ 5 ms

Two more tables say what limits a level. Where the machine's CPU went in the window, in % of
one core: the gateway, the embedded engine (its upstream), this process (all agents and
phones), the rest of the machine (/proc/stat, less those three) and steal; and the lag of
this process' event loop (a 5 ms sleep's overshoot, p99: arrivals are timed in that loop, so
a busy client would inflate the jitter). And what the phones saw: phones still silent when
the window started, the time from the turn to each phone's first media, phone buffers that
ran dry in the window (gaps a caller hears), the connections open to the engine just after
the window and how many hold bytes the gateway has not read (streams it keeps open while a
session's lookahead is full), caller frames the agents got, the turn's length, legs whose
turn ended inside the window, errors.

    python bench/telephony.py [--legs 10 50 100] [--quick] [--seconds 10] [--caller-audio]
                              [--json PATH]

``--json PATH`` writes {"mulaw_alone_pct", "levels": [{"legs", "cpu_pct_per_leg",
"ratio_to_mulaw", "media_per_s_min", "jitter_ms": {"p50", "p99"}, "max_lead_ms", "passed",
"cpu_pct": {...}, "dry", ...}]}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import contextlib
import itertools
import os
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from math import inf
from typing import IO, Any

import aiohttp
import numpy as np
import orjson
from figures import add_json_option, write_json

from voxgate.codecs.encoders import make_encoder
from voxgate.codecs.mulaw import mulaw_encode
from voxgate.codecs.output_format import OutputFormat

LEVELS, QUICK_LEVELS = [10, 50, 100], [10, 30]
RATE, FRAME_S = 8000, 0.020  # μ-law bytes a second; one media message
SESSION_RATE, PIECE_MS = 24000, 100  # the session hands a leg PCM in pieces of at most 100 ms
SETTLE_S = 1.0
FIRST_MEDIA_WAIT_S = 8.0  # the window starts then even if some phones are still silent
PASS_MEDIA_PER_S, PASS_JITTER_MS = 49.0, 5.0
CONNECT_BATCH = 20
CREDITS = 100_000_000
ENGINE_KEY = "vxl_bench_engine_key_0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
# 400 Hz at -21 dBFS, eight whole periods a frame: the fake's caller frame.
CALLER_FRAME = mulaw_encode((3000 * np.sin(np.arange(160) * 2 * np.pi * 400 / RATE)).astype("<i2"))
TURN = " ".join(
    [
        "Thanks for calling the Riverside clinic, this is the booking line.",
        "I can see your appointment with doctor Patel on Thursday the twelfth at twenty past nine.",
        "If you would like to move it, the next free slots are Friday at ten,"
        " or Monday afternoon at a quarter to three.",
        "Please bring your insurance card and the letter from your last visit.",
        "Parking is free for the first hour, and the entrance is at the side of the building,"
        " next to the pharmacy.",
        "Is there anything else I can help you with today?",
    ]
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), {os.uname().sysname} {os.uname().release}"


def cpu_s(pid: int) -> float:
    """utime + stime of a process, all its threads (/proc/<pid>/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_s() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy (user, nice, system, irq, softirq), and
    those the hypervisor withheld (steal), from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(n) for n in stat.readline().split()[1:9]]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]
    return busy / CLK_TCK, ticks[7] / CLK_TCK


def upstream_connections(port: int) -> tuple[int, int]:
    """TCP connections established to ``port`` (the engine) from this machine, and how many of
    them have bytes their reader has not taken (a stream the gateway holds, not reading on).
    Reading /proc/net/tcp takes ~10 ms with a thousand sockets: done outside the window."""
    established = unread = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                    established += 1
                    unread += int(fields[4].split(":")[1], 16) > 0
    return established, unread


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Leg:
    """One call: the agent's socket and the phone's Media Stream, as Twilio runs its side."""

    def __init__(self, agent: aiohttp.ClientWebSocketResponse) -> None:
        self.agent = agent
        self.call: aiohttp.ClientWebSocketResponse | None = None
        self.stream_sid, self.call_sid, self.account_sid = (
            prefix + secrets.token_hex(16) for prefix in ("MZ", "CA", "AC")
        )
        self.arrivals: list[float] = []  # loop time of each media message
        self.leads: list[float] = []  # seconds the phone holds unplayed, just after each
        self.dry: list[float] = []  # arrivals that found the phone's buffer empty (not the 1st)
        self.caller_frames = 0  # caller audio the agent got back
        self.audio_ms = 0.0
        self.errors: list[str] = []
        self.playing = asyncio.Event()  # its first media came
        self.done = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._play_end = 0.0  # when the phone will have played all it holds
        self._sequence = 0
        self._sending = asyncio.Lock()
        self._hung_up = False
        self._tasks: list[asyncio.Task[None]] = []
        self._echoes: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, gateway: Gateway, caller_audio: bool) -> Leg:
        headers = {"Authorization": f"Bearer {gateway.key}"}
        leg = cls(await http.ws_connect(gateway.ws_url, headers=headers))
        session_id = (await leg._expect("session.created"))["session_id"]
        if caller_audio:
            await leg.agent.send_json({"type": "session.update", "caller_audio": True})
            await leg._expect("session.updated")
        minted = await http.post(
            f"{gateway.base}/v1/client_tokens", headers=headers, json={"session_id": session_id}
        )
        token = (await minted.json())["data"]["token"]
        leg.call = await http.ws_connect(gateway.call_url)
        await leg.call.send_str(orjson.dumps(CONNECTED).decode())
        await leg._send("start", start=leg._start({"session_id": session_id, "token": token}))
        await leg._expect("telephony.attached")
        jobs = [leg._read_agent(), leg._read_call()]
        if caller_audio:
            jobs.append(leg._speak())
        leg._tasks = [asyncio.create_task(job) for job in jobs]
        return leg

    async def say(self, text: str) -> None:
        await self.agent.send_json({"type": "text.append", "text": text})
        await self.agent.send_json({"type": "context.close"})

    async def close(self) -> None:
        """Hang up as Twilio does (``stop``, then the close), then the agent leaves."""
        await self._send("stop", stop={"accountSid": self.account_sid, "callSid": self.call_sid})
        if self.call is not None:
            await self.call.close()
        await self.agent.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._echoes, return_exceptions=True)

    def _start(self, parameters: dict[str, str]) -> dict[str, Any]:
        return {
            "accountSid": self.account_sid,
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
            "customParameters": parameters,
        }

    async def _expect(self, kind: str) -> dict[str, Any]:
        async with asyncio.timeout(30):
            while (event := await self.agent.receive_json())["type"] != kind:
                if event["type"] == "error":
                    raise RuntimeError(f"waiting for {kind}: {event}")
        return event  # type: ignore[no-any-return]

    async def _send(self, event: str, **body: Any) -> None:
        async with self._sending:  # numbered in the order they leave, as Twilio does
            if self.call is None or self.call.closed or self._hung_up:
                return
            self._sequence += 1
            message = {"event": event, "sequenceNumber": str(self._sequence), **body}
            message["streamSid"] = self.stream_sid
            self._hung_up = event == "stop"
            with contextlib.suppress(ConnectionError):
                await self.call.send_str(orjson.dumps(message).decode())

    async def _speak(self) -> None:
        """The caller's microphone: frame n leaves n × 20 ms after start, as the fake's does."""
        payload = base64.b64encode(CALLER_FRAME).decode()
        start = self._loop.time()
        for chunk in itertools.count(1):
            await asyncio.sleep(max(0.0, start + chunk * FRAME_S - self._loop.time()))
            media = {"track": "inbound", "chunk": str(chunk), "timestamp": str((chunk - 1) * 20)}
            await self._send("media", media={**media, "payload": payload})

    async def _read_call(self) -> None:
        assert self.call is not None
        async for msg in self.call:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            now, message = self._loop.time(), orjson.loads(msg.data)
            event = message.get("event")
            if event == "media":
                self._play(now, len(base64.b64decode(message["media"]["payload"])))
            elif event == "mark":  # echoed once what was sent before it has played
                name = message["mark"]["name"]
                self._loop.call_at(max(now, self._play_end), self._echo, name)
            else:
                self.errors.append(f"the phone got {event!r}")

    def _play(self, now: float, size: int) -> None:
        if self._play_end < now:  # idle, or ran dry: playout starts again with this frame
            if self.arrivals:
                self.dry.append(now)
            self._play_end = now
        self._play_end += size / RATE
        self.arrivals.append(now)
        self.playing.set()
        self.leads.append(self._play_end - now)

    def _echo(self, name: str) -> None:
        if self._hung_up:
            return
        task = asyncio.create_task(self._send("mark", mark={"name": name}))
        self._echoes.add(task)
        task.add_done_callback(self._echoes.discard)

    async def _read_agent(self) -> None:
        async for msg in self.agent:
            if msg.type is aiohttp.WSMsgType.BINARY:
                self.caller_frames += 1
            elif msg.type is aiohttp.WSMsgType.TEXT:
                event = orjson.loads(msg.data)
                kind = event["type"]
                if kind == "context.done":
                    self.audio_ms = event["usage"]["audio_ms"]
                    self.done.set()
                elif kind == "telephony.detached" and self._hung_up:
                    continue  # the answer to our own stop
                elif kind in ("error", "chunk.failed", "interrupted", "telephony.detached"):
                    self.errors.append(f"{kind} {event.get('code') or event.get('reason')}")
                    self.done.set()


@dataclass(frozen=True)
class Gateway:
    """The gateway under test and its upstream, as the legs reach them."""

    pid: int
    port: int
    key: str
    engine_pid: int
    engine_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    @property
    def call_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/telephony/twilio"


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds each process has used, at one loop time."""

    at: float
    gateway: float
    engine: float
    clients: float
    busy: float  # the whole machine
    steal: float

    @classmethod
    def take(cls, gateway: Gateway) -> Snapshot:
        own = os.times()
        return cls(
            asyncio.get_running_loop().time(),
            cpu_s(gateway.pid),
            cpu_s(gateway.engine_pid),
            own.user + own.system,
            *machine_s(),
        )


@dataclass
class Level:
    legs: int
    seconds: float  # the window
    cpu: dict[str, float]  # % of one core in the window: each process, busy, others, steal
    audio_s: float  # audio all phones received in the window
    media_per_s: list[float]  # per leg
    jitter_ms: list[float]
    max_lead_ms: float
    dry: int
    loop_lag_ms: list[float]
    caller_per_s: list[float]  # per agent; empty without --caller-audio
    first_media_s: list[float]  # turn sent -> the phone's first media, per leg
    silent: int  # phones with no media yet when the window started
    upstream: tuple[int, int]  # connections to the engine just after the window: open, unread
    turn_s: float  # mean length of the turn, as `context.done` reports it
    ended_early: int  # legs whose turn was over before the window closed
    errors: list[str]

    def cpu_per_audio_s(self) -> float:
        return self.cpu["gateway"] / 100 * self.seconds / self.audio_s

    def verdict(self) -> str:
        problems = []
        if min(self.media_per_s) < PASS_MEDIA_PER_S:
            problems.append(f"a leg at {min(self.media_per_s):.1f} media/s")
        if percentile(self.jitter_ms, 99) > PASS_JITTER_MS:
            problems.append(f"jitter p99 {percentile(self.jitter_ms, 99):.1f} ms")
        return "no: " + ", ".join(problems) if problems else "yes"


async def loop_lag(samples: list[float]) -> None:
    """How late this process' event loop wakes a 5 ms sleep, in ms, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(0.005)
        samples.append((loop.time() - before - 0.005) * 1000)


def summarise(
    legs: list[Leg], said_at: float, before: Snapshot, after: Snapshot, lags: list[float]
) -> Level:
    w0, w1 = before.at, after.at
    seconds = w1 - w0
    cpu = {
        name: (getattr(after, name) - getattr(before, name)) / seconds * 100
        for name in ("gateway", "engine", "clients", "busy", "steal")
    }
    cpu["others"] = cpu["busy"] - cpu["gateway"] - cpu["engine"] - cpu["clients"]
    rates, jitter, leads, dry = [], [], [], 0
    for leg in legs:
        lo, hi = bisect.bisect_left(leg.arrivals, w0), bisect.bisect_left(leg.arrivals, w1)
        times = leg.arrivals[lo:hi]
        rates.append(len(times) / seconds)
        jitter += [abs(b - a - FRAME_S) * 1000 for a, b in itertools.pairwise(times)]
        leads += leg.leads[lo:hi]
        dry += bisect.bisect_left(leg.dry, w1) - bisect.bisect_left(leg.dry, w0)
    return Level(
        legs=len(legs),
        seconds=seconds,
        cpu=cpu,
        audio_s=sum(rates) * seconds * FRAME_S,
        media_per_s=rates,
        jitter_ms=jitter,
        max_lead_ms=max(leads, default=0.0) * 1000,
        dry=dry,
        loop_lag_ms=lags,
        caller_per_s=[],
        first_media_s=[leg.arrivals[0] - said_at if leg.arrivals else inf for leg in legs],
        silent=0,
        upstream=(0, 0),
        turn_s=sum(leg.audio_ms for leg in legs) / len(legs) / 1000,
        ended_early=sum(bool(leg.arrivals) and leg.arrivals[-1] < w1 - 2 * FRAME_S for leg in legs),
        errors=[error for leg in legs for error in leg.errors],
    )


async def wait_ready(url: str) -> None:
    async with asyncio.timeout(60), aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                if (await http.get(url)).status == 200:
                    return
            await asyncio.sleep(0.2)


async def wait_no_sessions(http: aiohttp.ClientSession, base: str) -> None:
    """Until the gateway itself says every session is gone (it closes them asynchronously)."""
    async with asyncio.timeout(30):
        while True:
            metrics = await (await http.get(f"{base}/metrics")).text()
            for line in metrics.splitlines():
                if line.startswith("voxgate_sessions_active ") and float(line.split()[1]) == 0:
                    return
            await asyncio.sleep(0.2)


async def open_legs(
    http: aiohttp.ClientSession, gateway: Gateway, count: int, caller_audio: bool
) -> list[Leg]:
    legs: list[Leg] = []
    for start in range(0, count, CONNECT_BATCH):
        batch = min(CONNECT_BATCH, count - start)
        legs += await asyncio.gather(*(Leg.open(http, gateway, caller_audio) for _ in range(batch)))
    return legs


async def level(
    http: aiohttp.ClientSession, gateway: Gateway, count: int, args: argparse.Namespace
) -> Level:
    """``count`` calls each playing TURN; the window once every phone plays."""
    await wait_no_sessions(http, gateway.base)
    legs = await open_legs(http, gateway, count, args.caller_audio)
    try:
        said_at = asyncio.get_running_loop().time()
        await asyncio.gather(*(leg.say(TURN) for leg in legs))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_MEDIA_WAIT_S):
                await asyncio.gather(*(leg.playing.wait() for leg in legs))
        await asyncio.sleep(SETTLE_S)
        silent = sum(not leg.arrivals for leg in legs)
        lags: list[float] = []
        sampler = asyncio.create_task(loop_lag(lags))
        callers, before = [leg.caller_frames for leg in legs], Snapshot.take(gateway)
        await asyncio.sleep(args.seconds)
        after = Snapshot.take(gateway)
        callers = [leg.caller_frames - n for leg, n in zip(legs, callers, strict=True)]
        sampler.cancel()
        upstream = upstream_connections(gateway.engine_port)
        async with asyncio.timeout(120):
            await asyncio.gather(*(leg.done.wait() for leg in legs))
    finally:
        await asyncio.gather(*(leg.close() for leg in legs), return_exceptions=True)
    result = summarise(legs, said_at, before, after, lags)
    result.upstream, result.silent = upstream, silent
    if args.caller_audio:
        result.caller_per_s = [n / result.seconds for n in callers]
    return result


async def speech(text: str) -> bytes:
    """The embedded engine's espeak-ng saying ``text``: s16le mono at the session's rate."""
    from voxgate.upstream.engine.espeak import Synthesizer
    from voxgate.upstream.engine.voices import Prosody

    synthesizer = Synthesizer()
    try:
        voice = Prosody("en-us", "", 50, 50, 1.0)
        pcm = (await synthesizer.synthesize(text, voice, 1.0, SESSION_RATE)).pcm
    finally:
        await synthesizer.close()
    return bytes(pcm.astype("<i2").tobytes())


def mulaw_alone(pcm: bytes, rounds: int = 3, min_cpu_s: float = 0.5) -> float:
    """CPU seconds voxgate's μ-law encoder alone takes per second of audio (best of rounds):
    24 kHz PCM in, in the pieces a session hands a leg, 20 ms frames at 8 kHz out."""
    step = SESSION_RATE * PIECE_MS // 1000 * 2
    pieces = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    audio_s = len(pcm) / 2 / SESSION_RATE
    best = float("inf")
    for _ in range(rounds):
        encoder = make_encoder(OutputFormat("mulaw", 8000))
        turns, start = 0, time.thread_time()
        while (spent := time.thread_time() - start) < min_cpu_s:
            for piece in pieces:
                encoder.encode(piece)
            encoder.flush()
            turns += 1
        best = min(best, spent / (turns * audio_s))
    return best


def level_figures(lv: Level, baseline: float) -> dict[str, Any]:
    """One level in ``--json``: the printed tables' figures."""
    return {
        "legs": lv.legs,
        "cpu_pct_per_leg": lv.cpu["gateway"] / lv.legs,
        "ratio_to_mulaw": lv.cpu_per_audio_s() / baseline,
        "media_per_s_min": min(lv.media_per_s),
        "jitter_ms": {q: percentile(lv.jitter_ms, v) for q, v in (("p50", 50), ("p99", 99))},
        "max_lead_ms": lv.max_lead_ms,
        "passed": lv.verdict() == "yes",
        "cpu_pct": lv.cpu,
        "loop_lag_p99_ms": percentile(lv.loop_lag_ms, 99),
        "silent": lv.silent,
        "first_media_s": {"p50": percentile(lv.first_media_s, 50), "max": max(lv.first_media_s)},
        "dry": lv.dry,
        "upstream_open_unread": list(lv.upstream),
        "turn_s": lv.turn_s,
        "ended_early": lv.ended_early,
        "errors": len(lv.errors),
    }


def report(levels: list[Level], baseline: float) -> None:
    print(
        "\nlegs | gateway CPU % per leg | ÷ μ-law encode alone | media/s per leg (min)"
        " | jitter p50 / p99 ms | max lead ms | passes"
    )
    for lv in levels:
        print(
            f"{lv.legs:4d} | {lv.cpu['gateway'] / lv.legs:21.2f} |"
            f" {lv.cpu_per_audio_s() / baseline:19.1f}× | {min(lv.media_per_s):21.1f} |"
            f" {percentile(lv.jitter_ms, 50):8.2f} / {percentile(lv.jitter_ms, 99):6.2f} |"
            f" {lv.max_lead_ms:11.0f} | {lv.verdict()}"
        )
    print(
        "\nwhere the machine's CPU went in the window, % of one core (clients: this process,"
        " every agent and phone; others: the rest of the machine)"
        "\nlegs | gateway | engine | clients | others | steal | client loop lag p99 ms"
    )
    for lv in levels:
        cpu = lv.cpu
        print(
            f"{lv.legs:4d} | {cpu['gateway']:7.1f} | {cpu['engine']:6.1f} | {cpu['clients']:7.1f}"
            f" | {cpu['others']:6.1f} | {cpu['steal']:5.1f}"
            f" | {percentile(lv.loop_lag_ms, 99):22.2f}"
        )
    print(
        "\nlegs | silent at window start | first media s p50 / max | buffers ran dry"
        " | upstream conns open / unread | caller frames/s (min) | turn s | ended early | errors"
    )
    for lv in levels:
        callers = f"{min(lv.caller_per_s):21.1f}" if lv.caller_per_s else f"{'-':>21}"
        print(
            f"{lv.legs:4d} | {lv.silent:22d} |"
            f" {percentile(lv.first_media_s, 50):13.2f} / {max(lv.first_media_s):5.2f} |"
            f" {lv.dry:15d} | {lv.upstream[0]:19d} / {lv.upstream[1]:6d} | {callers} |"
            f" {lv.turn_s:6.1f} | {lv.ended_early:11d} | {len(lv.errors)}"
        )
        for error in sorted(set(lv.errors))[:5]:
            print(f"     ! {lv.errors.count(error)}x {error}")


async def measure(gateway: Gateway, args: argparse.Namespace) -> dict[str, Any]:
    await wait_ready(f"http://127.0.0.1:{gateway.engine_port}/healthz")
    await wait_ready(f"{gateway.base}/readyz")
    pcm = await speech(TURN)
    baseline = mulaw_alone(pcm)
    print(
        f"{machine()}; {datetime.now().astimezone():%Y-%m-%d %H:%M %Z};"
        f" load average {os.getloadavg()[0]:.2f} before the run"
    )
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(
        f"one gateway process (in-process store), embedded engine in another, clients in this"
        f" one; each leg: one {len(TURN)}-character turn ({len(pcm) / 2 / SESSION_RATE:.1f} s"
        f" of espeak speech), μ-law 8 kHz to a Twilio-like phone playing in real time;"
        f" caller audio {'on' if args.caller_audio else 'off'}; window {args.seconds:g} s"
        f" from {SETTLE_S:g} s after every phone's first media (or after"
        f" {FIRST_MEDIA_WAIT_S:g} s, if some are silent)"
    )
    print(
        f"μ-law encode alone (MulawEncoder, 24 kHz in {PIECE_MS} ms pieces, best of 3):"
        f" {baseline * 1e3:.3f} ms CPU per second of audio ({baseline * 100:.3f} % of a core"
        " per real-time stream)",
        flush=True,
    )
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        warm = await open_legs(http, gateway, 1, args.caller_audio)  # first-use paths, unbilled
        await warm[0].say("Thanks for calling. One moment, please.")
        async with asyncio.timeout(30):
            await warm[0].done.wait()
        await warm[0].close()
        levels = []
        for count in args.legs:
            started = time.perf_counter()
            levels.append(await level(http, gateway, count, args))
            print(f"  {count} legs measured ({time.perf_counter() - started:.0f} s)", flush=True)
    report(levels, baseline)
    return {
        "turn_s": len(pcm) / 2 / SESSION_RATE,
        "seconds": args.seconds,
        "mulaw_alone_pct": baseline * 100,
        "levels": [level_figures(lv, baseline) for lv in levels],
    }


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], log: IO[bytes]
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(args: argparse.Namespace) -> dict[str, Any]:
    engine_port, gateway_port = free_port(), free_port()
    key = f"vg_bench_telephony_{secrets.token_hex(8)}"
    engine_env = {**os.environ, "VOXTRAL_LOCAL_API_KEYS": f"{ENGINE_KEY}:{CREDITS}"}
    gateway_env = {
        **os.environ,
        "VOXTRAL_API_KEY": ENGINE_KEY,
        "VOXTRAL_BASE_URL": f"http://127.0.0.1:{engine_port}/api/tts",
        "VOXGATE_MAX_SESSIONS_PER_KEY": "1000",
        # Every playing leg holds an upstream connection while it fetches: room for all.
        "VOXTRAL_MAX_CONNECTIONS": os.environ.get("VOXTRAL_MAX_CONNECTIONS", "1024"),
    }
    serve = [sys.executable, "-m", "voxgate", "serve", "--port", str(gateway_port)]
    serve += ["--api-key", f"{key}:{CREDITS}"]
    engine_cmd = [sys.executable, "-m", "voxgate", "local-tts", "--port", str(engine_port)]
    # Their logs would interleave with the tables: kept in a file, shown if the run fails.
    with tempfile.NamedTemporaryFile(prefix="voxgate-telephony-", suffix=".log") as log:
        try:
            with (
                running(engine_cmd, engine_env, log) as engine,
                running(serve, gateway_env, log) as gw,
            ):
                gateway = Gateway(gw.pid, gateway_port, key, engine.pid, engine_port)
                return asyncio.run(measure(gateway, args))
        except BaseException:
            log.flush()
            log.seek(0)
            print(b"".join(log.readlines()[-30:]).decode(errors="replace"), file=sys.stderr)
            raise


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--legs", type=int, nargs="+", default=LEVELS)
    parser.add_argument("--seconds", type=float, default=10.0, help="the measured window")
    parser.add_argument("--quick", action="store_true", help=f"legs {QUICK_LEVELS}")
    parser.add_argument(
        "--caller-audio", action="store_true", help="each phone also sends 20 ms every 20 ms"
    )
    add_json_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.legs = QUICK_LEVELS
    write_json(args.json, main(args))
