"""Memory and credits a realtime session holds ahead of its listener, at 1, 10 and 50 sessions.

The design budget: at most 1 MB of gateway RSS per realtime session, whatever the turn's
length, because what a session holds ahead of the listener is bounded (3 chunks, 8 s of
audio, 1,500 credits). Each session here gets one ~4,000-character answer in a single
`text.append` (minutes of speech) and plays it with `pacing: "realtime"`, PCM 24 kHz, so
the lookahead fills up and stays full.

Three processes, so the gateway's RSS is its own: `voxgate local-tts` (the upstream),
`voxgate serve` pointed at it as if it were the real API (in-process store, or Redis with
`--redis-url`), and this script's clients. Per level, after a warm-up turn:

  baseline     VmRSS of the gateway (/proc/<pid>/status) with no session open
  peak         the highest VmRSS sampled every 0.5 s while the turns play (`--seconds`)
  per session  (peak - baseline) / sessions
  held         every client sends `usage.get` each second; `session_held` is what its
               session has reserved and not yet settled. Max per session, and the highest
               total across sessions seen at a sample
  after close  every client interrupts and closes; once the gateway reports no session
               open and `--settle` seconds have passed: VmRSS, and the credits still held
               on the account (balance before - balance after - credits charged)
  audio        seconds of audio each client received (the window, if pacing kept time)

RSS after close is not expected to fall back to the baseline: CPython and glibc keep freed
memory for reuse. Running a level twice (`--sessions 50 50`) tells reuse from a leak.

    python bench/lookahead.py [--sessions 1 10 50] [--seconds 15] [--quick]
                              [--redis-url redis://127.0.0.1:6379/0] [--json PATH]

``--json PATH`` writes {"turn_chars", "seconds", "store", "levels": [{"sessions",
"baseline_mb", "peak_mb", "per_session_mb", "max_held", "total_held", "after_mb",
"held_after", "audio_s", "errors"}]}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import IO, Any

import aiohttp
from figures import add_json_option, write_json

CREDITS = 100_000_000
ENGINE_KEY = "vxl_bench_engine_key_0123456789"
BUDGET_RSS_MB = 1.0
BUDGET_HELD = 1500
SAMPLE_S = 0.5
USAGE_S = 1.0
OUTPUT = {"encoding": "pcm_s16le", "sample_rate": 24000}
BYTES_PER_S = 2 * 24000

SUBJECTS = [
    "Your order",
    "The replacement part",
    "The second parcel",
    "Our courier",
    "The refund",
    "Your booking",
    "The technician",
    "The invoice",
    "Your new card",
    "The survey team",
    "Support",
    "The warehouse in Leeds",
    "The spare battery",
]
ACTIONS = [
    "left the depot on Monday morning",
    "should reach you by Thursday afternoon",
    "was approved a few minutes ago",
    "has been moved to the earlier slot you asked for",
    "needs a signature when it arrives",
    "will call you about half an hour before arriving",
    "is covered by the two-year warranty",
    "went out with the evening collection",
    "is waiting for one last check",
    "can be picked up from the counter after five",
    "arrives in a plain brown box",
]
ASIDES = [
    "",
    "",
    "If that does not suit you, just say so, and we will find another time.",
    "Nothing else is needed from you.",
    "Thanks for your patience while we sorted it out.",
    "You will get a text message as soon as that changes.",
    "Really.",
    "Should anything look wrong, reply to this message; a person reads every reply.",
]


def answer(chars: int) -> str:
    """An LLM-like answer of about ``chars`` characters in varied sentences."""
    sentences: list[str] = []
    i = 0
    while sum(len(s) + 1 for s in sentences) < chars:
        subject, action = SUBJECTS[i % len(SUBJECTS)], ACTIONS[(i * 5) % len(ACTIONS)]
        sentences.append(f"{subject} {action}.")
        if aside := ASIDES[(i * 3) % len(ASIDES)]:
            sentences.append(aside)
        if i % 4 == 3:
            sentences.append(f"That makes {i + 1} things settled so far, with {i % 7} to go.")
        i += 1
    return " ".join(sentences)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), {os.uname().sysname} {os.uname().release}"


@dataclass
class Probe:
    """What one client saw of its session."""

    held: int = 0  # the last `session_held` reported
    max_held: int = 0
    charged: int = 0
    audio_bytes: int = 0  # PCM payload, without the frame headers
    done: bool = False  # its turn ended by itself (the window outlasted the answer)
    errors: list[str] = field(default_factory=list)
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)
    usage: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Level:
    sessions: int
    baseline_mb: float
    peak_mb: float
    after_mb: float
    max_held: int
    total_held: int
    held_after: int
    audio_s: float  # mean per session: realtime pacing gives about the window's length
    errors: list[str]

    @property
    def per_session_mb(self) -> float:
        return (self.peak_mb - self.baseline_mb) / self.sessions


class Client:
    """One realtime socket: a turn read as it plays, `usage.get` every second."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.probe = Probe()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, url: str, key: str) -> Client:
        ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {key}"})
        created = await ws.receive_json()
        if created["type"] != "session.created":
            raise RuntimeError(f"no session: {created}")
        await ws.send_json(
            {"type": "session.update", "pacing": "realtime", "output_format": OUTPUT}
        )
        updated = await ws.receive_json()
        if updated["type"] != "session.updated":
            raise RuntimeError(f"session.update refused: {updated}")
        return cls(ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                self.probe.audio_bytes += len(msg.data) - 11 - msg.data[2]
            elif msg.type is aiohttp.WSMsgType.TEXT:
                self._on_event(json.loads(msg.data))

    def _on_event(self, event: dict[str, Any]) -> None:
        probe = self.probe
        kind = event["type"]
        if kind == "usage":
            probe.held, probe.charged = event["session_held"], event["session_characters"]
            probe.max_held = max(probe.max_held, probe.held)
            probe.usage.set()
        elif kind == "interrupted":
            probe.interrupted.set()
        elif kind == "context.done":
            probe.done = True
        elif kind in ("error", "chunk.failed"):
            probe.errors.append(f"{kind} {event['code']}: {event['message']}")

    async def usage(self) -> None:
        self.probe.usage.clear()
        await self.ws.send_json({"type": "usage.get"})
        await self.probe.usage.wait()

    async def play(self, text: str, seconds: float) -> None:
        """Send the whole turn at once, poll usage while it plays, then barge in and close."""
        await self.ws.send_json({"type": "text.append", "text": text})
        await self.ws.send_json({"type": "context.close"})
        deadline = time.perf_counter() + seconds
        while (left := deadline - time.perf_counter()) > 0:
            await self.ws.send_json({"type": "usage.get"})
            await asyncio.sleep(min(USAGE_S, left))
        if not self.probe.done:
            await self.ws.send_json({"type": "interrupt"})
            await self.probe.interrupted.wait()
        await self.usage()  # what was charged, once the interrupt settled
        await self.ws.close()
        await self._reader


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


async def balance(http: aiohttp.ClientSession, ws_url: str, key: str) -> int:
    """The account's spendable credits, from a fresh socket's `usage.get`."""
    async with http.ws_connect(ws_url, headers={"Authorization": f"Bearer {key}"}) as ws:
        await ws.receive_json()  # session.created
        await ws.send_json({"type": "usage.get"})
        report = await ws.receive_json()
        return int(report["balance_available"])


class Gateway:
    """The gateway under test, as the benchmark's clients reach it."""

    def __init__(self, pid: int, port: int, key: str) -> None:
        self.pid = pid
        self.base = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/v1/realtime"
        self.key = key

    async def warm_up(self, http: aiohttp.ClientSession) -> None:
        """One short turn, so imports and first-use allocations are not billed to level 1."""
        client = await Client.connect(http, self.ws_url, self.key)
        await client.play(answer(600), 3.0)
        await wait_no_sessions(http, self.base)

    async def level(
        self, http: aiohttp.ClientSession, sessions: int, seconds: float, settle: float
    ) -> Level:
        before = await balance(http, self.ws_url, self.key)
        await wait_no_sessions(http, self.base)
        await asyncio.sleep(settle)
        baseline = rss_mb(self.pid)
        clients = await asyncio.gather(
            *(Client.connect(http, self.ws_url, self.key) for _ in range(sessions))
        )
        probes = [c.probe for c in clients]
        text = answer(4000)
        peak, total_held = baseline, 0

        async def sample() -> None:
            nonlocal peak, total_held
            while True:
                peak = max(peak, rss_mb(self.pid))
                total_held = max(total_held, sum(p.held for p in probes))
                await asyncio.sleep(SAMPLE_S)

        sampler = asyncio.create_task(sample())
        try:
            await asyncio.gather(*(c.play(text, seconds) for c in clients))
        finally:
            sampler.cancel()
        await wait_no_sessions(http, self.base)
        await asyncio.sleep(settle)
        after_mb = rss_mb(self.pid)
        spent = before - await balance(http, self.ws_url, self.key)
        return Level(
            sessions=sessions,
            baseline_mb=baseline,
            peak_mb=peak,
            after_mb=after_mb,
            max_held=max(p.max_held for p in probes),
            total_held=total_held,
            held_after=spent - sum(p.charged for p in probes),
            audio_s=sum(p.audio_bytes for p in probes) / len(probes) / BYTES_PER_S,
            errors=[e for p in probes for e in p.errors],
        )


def report_header() -> None:
    print(
        "sessions  baseline MB  peak MB  MB/session  max held/session  total held@peak"
        "  after close MB  held after close  audio s/session"
    )


def report(level: Level) -> None:
    print(
        f"{level.sessions:8d} {level.baseline_mb:12.1f} {level.peak_mb:8.1f}"
        f" {level.per_session_mb:11.2f} {level.max_held:17d} {level.total_held:16d}"
        f" {level.after_mb:15.1f} {level.held_after:17d} {level.audio_s:16.1f}",
        flush=True,
    )
    for error in sorted(set(level.errors))[:5]:
        print(f"         ! {level.errors.count(error)}x {error}")


async def measure(gateway: Gateway, engine_port: int, args: argparse.Namespace) -> dict[str, Any]:
    await wait_ready(f"http://127.0.0.1:{engine_port}/healthz")
    await wait_ready(f"{gateway.base}/readyz")
    store = f"Redis {args.redis_url}" if args.redis_url else "in-process store"
    print(f"{machine()}; {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(
        f"one gateway process ({store}), embedded engine in another; each session: one"
        f" {len(answer(4000))}-character turn, realtime pacing, PCM 24 kHz, played"
        f" {args.seconds:g} s, then interrupted; settle {args.settle:g} s"
    )
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        cold = rss_mb(gateway.pid)
        await gateway.warm_up(http)
        print(
            f"gateway RSS {cold:.1f} MB at start, {rss_mb(gateway.pid):.1f} MB after a warm-up turn"
        )
        report_header()
        levels = []
        for sessions in args.sessions:
            levels.append(await gateway.level(http, sessions, args.seconds, args.settle))
            report(levels[-1])
    rss_ok = all(level.per_session_mb <= BUDGET_RSS_MB for level in levels)
    held_ok = all(level.max_held <= BUDGET_HELD for level in levels)
    print(
        f"budget: <= {BUDGET_RSS_MB:g} MB per session {'met' if rss_ok else 'EXCEEDED'};"
        f" <= {BUDGET_HELD} credits held per session {'met' if held_ok else 'EXCEEDED'};"
        f" nothing held after close {'yes' if all(not lv.held_after for lv in levels) else 'NO'}"
    )
    return {
        "turn_chars": len(answer(4000)),
        "seconds": args.seconds,
        "store": "redis" if args.redis_url else "in-process",
        "levels": [{**asdict(lv), "per_session_mb": lv.per_session_mb} for lv in levels],
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
    key = f"vg_bench_lookahead_{secrets.token_hex(8)}"  # a fresh account, also in Redis
    engine_env = {**os.environ, "VOXTRAL_LOCAL_API_KEYS": f"{ENGINE_KEY}:{CREDITS}"}
    gateway_env = {
        **os.environ,
        "VOXTRAL_API_KEY": ENGINE_KEY,
        "VOXTRAL_BASE_URL": f"http://127.0.0.1:{engine_port}/api/tts",
        "VOXGATE_MAX_SESSIONS_PER_KEY": "1000",
    }
    serve = [sys.executable, "-m", "voxgate", "serve", "--port", str(gateway_port)]
    serve += ["--api-key", f"{key}:{CREDITS}"]
    if args.redis_url:
        serve += ["--redis-url", args.redis_url]
    engine_cmd = [sys.executable, "-m", "voxgate", "local-tts", "--port", str(engine_port)]
    # Their logs would interleave with the table: kept in a file, shown if the run fails.
    with tempfile.NamedTemporaryFile(prefix="voxgate-lookahead-", suffix=".log") as log:
        try:
            with running(engine_cmd, engine_env, log), running(serve, gateway_env, log) as gw:
                return asyncio.run(measure(Gateway(gw.pid, gateway_port, key), engine_port, args))
        except BaseException:
            log.flush()
            log.seek(0)
            print(b"".join(log.readlines()[-30:]).decode(errors="replace"), file=sys.stderr)
            raise


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each turn plays")
    parser.add_argument("--settle", type=float, default=2.0, help="wait before reading RSS idle")
    parser.add_argument("--quick", action="store_true", help="1 and 10 sessions, 8 s turns")
    parser.add_argument("--redis-url", default="", help="the store (default: in-process)")
    add_json_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.seconds = [1, 10], 8.0
    write_json(args.json, main(args))
