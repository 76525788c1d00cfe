"""A cluster on one machine: sessions a node holds, what forwarding costs, Redis per turn.

Starts a redis-server, ``--nodes`` (2) ``voxgate serve`` nodes on it and haproxy in front
(``bench/local_cluster.py``, the same code the cluster tests start them with), and one
``voxgate local-tts`` process as every node's upstream (so a node's CPU is its own), then
measures:

  sessions per node   N realtime sessions on one node (straight to its port), each playing
                      a ~7 s turn paced in real time as PCM 24 kHz 20 ms frames. At the
                      client, a frame's lateness is its arrival minus (the first frame's
                      arrival + its position in the audio); the gateway sends 80 ms ahead,
                      so a listener that buffers that lead never runs dry while lateness
                      stays under 80 ms. A level passes with lateness p99 <= 20 ms and no
                      frame over 80 ms late. Turns start spread over 2 s. Levels ramp until
                      two fail in a row. CPU (user + system, from /proc) of the node, of
                      the engine and of this script (the clients) is shown per level: they,
                      haproxy, Redis and the other node share the machine.
  WHEP attach         a real aiortc peer attaches to a session of node 0 whose turn is
                      playing: the offer posted to node 0 itself (direct) or to node 1,
                      which forwards it (forwarded), alternately. Answer time is the POST
                      until its 201; first audio is the POST until the peer's first decoded
                      frame (ICE, DTLS and the first packet included).
  resume              a socket on node 0 drops mid-turn (TCP shut, no close frame); a new
                      socket resumes the session on node 0 (direct) or on node 1 (which
                      carries the socket to node 0: forwarded). Timed from the
                      ``session.resume`` that was taken (earlier ones answered
                      ``session_attached`` while node 0 had not yet seen the drop) to
                      ``session.resumed``, and to the first audio frame after it.
  Redis per turn      Redis ``MONITOR`` on the shared Redis around sessions with 0, 1 and
                      5 turns (fast pacing, ~125 characters a turn, two chunks), less what
                      the nodes send when idle (lease renewals, reaper scans) over the same
                      time: round trips the nodes made, and the commands their Lua scripts
                      ran, per session and per turn, by command.
  node death          a node killed -9 mid-turn: how long until a survivor refunded its
                      holds (the default lease, 5 s).

    python bench/cluster.py [--nodes 2] [--levels 10 25 50 100 150 200] [--samples 30]
                            [--quick] [--json PATH]

``--json PATH`` writes {"sessions_per_node": [{"sessions", "lateness_ms": {"p50", "p99",
"max"}, "cpu_pct": {"node", "engine", "clients"}, "passed"}], "whep_attach" and "resume":
{"direct" | "forwarded": {"answer_ms" | "resumed_ms", "first_audio_ms": {"p50", "p99"}}},
"redis_per_turn": {"session", "turn", "each_further_turn": round trips, "idle_per_s"},
"node_death_s"}.

Only loopback addresses are used; every wait is bounded in time and every loop in count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from figures import add_json_option, write_json
from ledger_reserve import redis_server
from local_cluster import LocalCluster, Node, free_port

from voxgate.gateway.access.keys import RedisKeyStore
from voxgate.sessions.ledger_redis import RedisLedger

KEY = "vg_bench_cluster_key_0123456789"
ENGINE_KEY = "vg_bench_cluster_engine_0123456789"
TICKS = os.sysconf("SC_CLK_TCK")
PCM = {"encoding": "pcm_s16le", "sample_rate": 24000}
TURN = (
    "I can help you with that booking right away. "
    "We have a table by the window at seven, or one on the terrace at half past eight."
)  # about 7 s of speech
LONG_TURN = " ".join([TURN] * 20)  # over two minutes
LEAD_MS = 80.0
LATE_P99_MS = 20.0
LEASE_S = 5.0  # the default
STAGGER_S = 2.0


@contextlib.contextmanager
def engine_process() -> Iterator[tuple[str, int]]:
    """``voxgate local-tts`` on a free port, the upstream of every node; (base URL, pid)."""
    port = free_port()
    env = {**os.environ, "VOXTRAL_LOCAL_API_KEYS": f"{ENGINE_KEY}:1000000000"}
    command = [sys.executable, "-m", "voxgate", "local-tts", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/api/tts", process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def ws_url(node: Node) -> str:
    return node.url.replace("http", "ws", 1) + "/v1/realtime"


HEADERS = {"Authorization": f"Bearer {KEY}"}


# ---- sessions per node --------------------------------------------------------------


async def paced_session(
    http: aiohttp.ClientSession, url: str, start: asyncio.Event, delay_s: float
) -> list[float]:
    """One realtime turn; the lateness (ms) of each of its 20 ms frames at arrival."""
    ws = await http.ws_connect(url, headers=HEADERS)
    await ws.receive()  # session.created
    await ws.send_json({"type": "session.update", "pacing": "realtime", "output_format": PCM})
    await start.wait()
    await asyncio.sleep(delay_s)
    await ws.send_json({"type": "text.append", "text": TURN})
    await ws.send_json({"type": "context.close"})
    lateness: list[float] = []
    first: float | None = None
    position_ms = 0.0
    async with asyncio.timeout(60):
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                now = time.monotonic()
                first = now if first is None else first
                lateness.append(max(0.0, (now - first) * 1000 - position_ms))
                position_ms += (len(msg.data) - 18) / 48  # header with context "default"
            elif msg.type is aiohttp.WSMsgType.TEXT and '"context.done"' in msg.data:
                break
    await ws.close()
    return lateness


async def sessions_level(
    http: aiohttp.ClientSession, node: Node, sessions: int, engine_pid: int
) -> dict[str, Any]:
    start = asyncio.Event()
    assert node.process is not None
    stagger = random.Random(sessions)  # turns start spread over STAGGER_S, as callers do
    tasks = [
        asyncio.create_task(paced_session(http, ws_url(node), start, stagger.uniform(0, STAGGER_S)))
        for _ in range(sessions)
    ]
    await asyncio.sleep(0.5 + sessions * 0.01)  # every socket open and configured
    cpu_before, wall_before = cpu_seconds(node.process.pid), time.monotonic()
    client_before, engine_before = _own_cpu(), cpu_seconds(engine_pid)
    start.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    cpu = cpu_seconds(node.process.pid) - cpu_before
    wall = time.monotonic() - wall_before
    client_cpu = _own_cpu() - client_before
    engine_cpu = cpu_seconds(engine_pid) - engine_before
    failures = [r for r in results if isinstance(r, BaseException)]
    lateness = [x for r in results if isinstance(r, list) for x in r]
    p99, worst = percentile(lateness, 0.99), max(lateness, default=0.0)
    passed = not failures and p99 <= LATE_P99_MS and worst <= LEAD_MS
    print(
        f"  {sessions:4d} sessions  frames {len(lateness):6d}  lateness p50 "
        f"{percentile(lateness, 0.5):5.1f}  p99 {p99:6.1f}  max {worst:7.1f} ms  "
        f"CPU: node {100 * cpu / wall:5.1f} %  engine {100 * engine_cpu / wall:5.1f} %  "
        f"clients {100 * client_cpu / wall:5.1f} %  "
        f"{'pass' if passed else 'FAIL'}"
        + (f"  ({len(failures)} sessions failed: {failures[0]!r})" if failures else "")
    )
    return {
        "sessions": sessions,
        "frames": len(lateness),
        "lateness_ms": {"p50": percentile(lateness, 0.5), "p99": p99, "max": worst},
        "cpu_pct": {
            "node": 100 * cpu / wall,
            "engine": 100 * engine_cpu / wall,
            "clients": 100 * client_cpu / wall,
        },
        "failed_sessions": len(failures),
        "passed": passed,
    }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sessions_per_node(
    cluster: LocalCluster, levels: list[int], engine_pid: int
) -> list[dict[str, Any]]:
    print("\nSessions one node holds, audio paced in real time (straight to node 0's port):")
    node = cluster.nodes[0]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        failed_in_a_row, measured = 0, []
        for sessions in levels:
            measured.append(await sessions_level(http, node, sessions, engine_pid))
            failed_in_a_row = 0 if measured[-1]["passed"] else failed_in_a_row + 1
            if failed_in_a_row == 2:
                break
            await asyncio.sleep(1.0)
    return measured


# ---- WHEP attach, direct and forwarded ----------------------------------------------


async def attach_once(
    http: aiohttp.ClientSession, via: Node, session_id: str
) -> tuple[float, float]:
    """(answer ms, first audio ms) of one WHEP attach posted to ``via``."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="recvonly")
    first_frame: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    readers: list[asyncio.Task[None]] = []

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def read() -> None:
            with contextlib.suppress(Exception):
                await track.recv()
                if not first_frame.done():
                    first_frame.set_result(time.monotonic())

        readers.append(asyncio.ensure_future(read()))

    await pc.setLocalDescription(await pc.createOffer())
    headers = {**HEADERS, "Content-Type": "application/sdp"}
    started = time.monotonic()
    url = f"{via.url}/v1/sessions/{session_id}/whep"
    async with http.post(url, data=pc.localDescription.sdp, headers=headers) as answer:
        sdp = await answer.text()
        assert answer.status == 201, sdp
        location = answer.headers["Location"]
    answered = time.monotonic()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
    async with asyncio.timeout(10):
        audio = await first_frame
    async with http.delete(f"{via.url}{location}", headers=HEADERS):
        pass
    await pc.close()
    for reader in readers:
        reader.cancel()
    return (answered - started) * 1000, (audio - started) * 1000


def quantiles(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99), "n": len(values)}


async def whep_attach(cluster: LocalCluster, samples: int) -> dict[str, Any]:
    owner, other = cluster.nodes[0], cluster.nodes[1]
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(ws_url(owner), headers=HEADERS)
        session_id = (await ws.receive_json())["session_id"]
        await ws.send_json({"type": "session.update", "pacing": "realtime"})
        await ws.send_json({"type": "text.append", "text": LONG_TURN})
        await ws.send_json({"type": "text.flush"})
        drain = asyncio.create_task(_drain(ws))
        timings: dict[str, list[tuple[float, float]]] = {"direct": [], "forwarded": []}
        await attach_once(http, owner, session_id)  # warm-up: imports, first DTLS
        await attach_once(http, other, session_id)
        for i in range(2 * samples):
            arm = "direct" if i % 2 == 0 else "forwarded"
            via = owner if arm == "direct" else other
            timings[arm].append(await attach_once(http, via, session_id))
        drain.cancel()
        await ws.close()
    print(f"\nWHEP attach to a playing session of node 0, {samples} samples each:")
    for arm, values in timings.items():
        answer = [a for a, _ in values]
        audio = [b for _, b in values]
        print(
            f"  {arm:9s}  answer p50 {percentile(answer, 0.5):6.1f}  p99 "
            f"{percentile(answer, 0.99):6.1f} ms   first audio p50 {percentile(audio, 0.5):6.1f}"
            f"  p99 {percentile(audio, 0.99):6.1f} ms"
        )
    direct = statistics.median(a for a, _ in timings["direct"])
    forwarded = statistics.median(a for a, _ in timings["forwarded"])
    print(f"  forwarding adds {forwarded - direct:.1f} ms to the answer (medians)")
    return {
        arm: {
            "answer_ms": quantiles([a for a, _ in values]),
            "first_audio_ms": quantiles([b for _, b in values]),
        }
        for arm, values in timings.items()
    }


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


# ---- resume, direct and forwarded -----------------------------------------------------


async def resume_once(
    http: aiohttp.ClientSession, owner: Node, via: Node
) -> tuple[float, float, int]:
    """(resumed ms, first audio ms, asks refused as still attached) of one resume."""
    ws = await http.ws_connect(ws_url(owner), headers=HEADERS)
    created = await ws.receive_json()
    await ws.send_json({"type": "session.update", "pacing": "realtime", "output_format": PCM})
    await ws.send_json({"type": "text.append", "text": TURN})
    await ws.send_json({"type": "context.close"})
    last_seq = -1
    async with asyncio.timeout(20):
        while last_seq < 10:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY:
                end = 3 + msg.data[2]
                last_seq = int.from_bytes(msg.data[end : end + 4], "big")
    raw = ws.get_extra_info("socket")
    raw.shutdown(socket.SHUT_RDWR)
    ask = {
        "type": "session.resume",
        "session_id": created["session_id"],
        "resume_token": created["resume_token"],
        "last_seq": last_seq,
    }
    fresh = await http.ws_connect(ws_url(via), headers=HEADERS)
    await fresh.receive_json()  # its own session.created, let go on resume
    refused = 0
    async with asyncio.timeout(20):
        while True:
            asked = time.monotonic()
            await fresh.send_json(ask)
            reply = await fresh.receive_json()
            if reply["type"] == "session.resumed":
                resumed = time.monotonic()
                break
            assert reply.get("code") == "session_attached", reply
            refused += 1
            await asyncio.sleep(0.02)
        while (msg := await fresh.receive()).type is not aiohttp.WSMsgType.BINARY:
            pass
    audio = time.monotonic()
    await fresh.close()
    await ws.close()
    return (resumed - asked) * 1000, (audio - asked) * 1000, refused


async def resume_cost(cluster: LocalCluster, samples: int) -> dict[str, Any]:
    owner, other = cluster.nodes[0], cluster.nodes[1]
    timings: dict[str, list[tuple[float, float, int]]] = {"direct": [], "forwarded": []}
    async with aiohttp.ClientSession() as http:
        await resume_once(http, owner, owner)  # warm-up
        await resume_once(http, owner, other)
        for i in range(2 * samples):
            arm = "direct" if i % 2 == 0 else "forwarded"
            via = owner if arm == "direct" else other
            timings[arm].append(await resume_once(http, owner, via))
    print(f"\nResume of a session of node 0 after a drop mid-turn, {samples} samples each:")
    for arm, values in timings.items():
        resumed = [a for a, _, _ in values]
        audio = [b for _, b, _ in values]
        refused = sum(r for _, _, r in values)
        print(
            f"  {arm:9s}  session.resumed p50 {percentile(resumed, 0.5):6.1f}  p99 "
            f"{percentile(resumed, 0.99):6.1f} ms   first audio p50 "
            f"{percentile(audio, 0.5):6.1f}  p99 {percentile(audio, 0.99):6.1f} ms   "
            f"asks answered session_attached: {refused}"
        )
    return {
        arm: {
            "resumed_ms": quantiles([a for a, _, _ in values]),
            "first_audio_ms": quantiles([b for _, b, _ in values]),
            "refused": sum(r for _, _, r in values),
        }
        for arm, values in timings.items()
    }


# ---- Redis calls per turn -------------------------------------------------------------


class CommandMonitor:
    """Redis ``MONITOR`` in a thread: commands the nodes sent (round trips) and commands
    their Lua scripts ran, counted by name, between ``start`` and ``stop``."""

    def __init__(self, redis_url: str) -> None:
        address = redis_url.removeprefix("redis://").split("/")[0]
        host, port = address.rsplit(":", 1)
        self._sock = socket.create_connection((host, int(port)), timeout=1.0)
        self._sock.sendall(b"MONITOR\r\n")
        self.sent: Counter[str] = Counter()
        self.scripted: Counter[str] = Counter()
        self._counting = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        while not self._stopped.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            buffer += data
            *lines, buffer = buffer.split(b"\r\n")
            if self._counting.is_set():
                for line in lines:
                    self._count(line.decode(errors="replace"))

    def _count(self, line: str) -> None:
        source, _, rest = line.partition("] ")
        if not rest.startswith('"'):
            return
        name = rest[1:].split('"', 1)[0].lower()
        if "[0 lua" in source:
            self.scripted[name] += 1
        elif name not in ("info", "monitor"):
            self.sent[name] += 1

    def counting(self) -> tuple[Counter[str], Counter[str]]:
        self.sent, self.scripted = Counter(), Counter()
        self._counting.set()
        return self.sent, self.scripted

    def pause(self) -> None:
        self._counting.clear()

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        self._sock.close()


async def session_with_turns(http: aiohttp.ClientSession, url: str, turns: int) -> None:
    ws = await http.ws_connect(url, headers=HEADERS)
    await ws.receive_json()
    await ws.send_json({"type": "session.update", "pacing": "fast", "output_format": PCM})
    for turn in range(turns):
        context = f"turn-{turn}"
        await ws.send_json({"type": "text.append", "text": TURN, "context_id": context})
        await ws.send_json({"type": "context.close", "context_id": context})
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT and '"context.done"' in msg.data:
                break
    await ws.close()


async def redis_per_turn(cluster: LocalCluster, redis_url: str) -> dict[str, float]:
    node = cluster.nodes[0]
    monitor = CommandMonitor(redis_url)

    async def measured(turns: int | None) -> tuple[Counter[str], Counter[str], float]:
        sent, scripted = monitor.counting()
        started = time.monotonic()
        if turns is None:
            await asyncio.sleep(5.0)
        else:
            async with aiohttp.ClientSession() as http:
                await session_with_turns(http, ws_url(node), turns)
            await asyncio.sleep(1.5)  # settlements and index writes caught up
        await asyncio.sleep(0.2)  # the monitor's last lines
        monitor.pause()
        return Counter(sent), Counter(scripted), time.monotonic() - started

    async with aiohttp.ClientSession() as http:  # warm-up: scripts loaded, pools filled
        await session_with_turns(http, ws_url(node), 1)
    idle_sent, idle_scripted, idle_s = await measured(None)
    net: dict[int, tuple[Counter[str], Counter[str]]] = {}
    for turns in (0, 1, 5):
        sent, scripted, seconds = await measured(turns)
        net[turns] = (
            _less(sent, idle_sent, seconds / idle_s),
            _less(scripted, idle_scripted, seconds / idle_s),
        )
    monitor.close()
    print(
        f"\nRedis commands (MONITOR), net of what the {len(cluster.nodes)} nodes send idle "
        f"(heartbeats, reaper scans: {sum(idle_sent.values()) / idle_s:.1f} round trips/s, "
        f"{sum(idle_scripted.values()) / idle_s:.1f} commands/s inside their scripts):"
    )
    trips = {"idle_per_s": sum(idle_sent.values()) / idle_s}
    for key, label, (sent, scripted) in (
        ("session", "a session opened and closed, no turn", net[0]),
        ("turn", "a session with one turn (2 chunks)", net[1]),
        ("each_further_turn", "each further turn (2 chunks)", _per_turn(net[1], net[5])),
    ):
        print(f"  {label}: {sum(sent.values()):.1f} round trips ({_top(sent)})")
        print(f"      and {sum(scripted.values()):.1f} commands inside scripts ({_top(scripted)})")
        trips[key] = sum(sent.values())
    print("  per audio frame: none (frames never touch the store)")
    return trips


def _less(calls: Counter[str], idle: Counter[str], scale: float) -> Counter[str]:
    net: Counter[str] = Counter()
    for name in set(calls) | set(idle):
        net[name] = max(0.0, calls[name] - idle[name] * scale)  # type: ignore[assignment]
    return net


def _per_turn(
    one: tuple[Counter[str], Counter[str]], five: tuple[Counter[str], Counter[str]]
) -> tuple[Counter[str], Counter[str]]:
    def each(a: Counter[str], b: Counter[str]) -> Counter[str]:
        per: Counter[str] = Counter()
        for name in set(a) | set(b):
            per[name] = max(0.0, (b[name] - a[name]) / 4)  # type: ignore[assignment]
        return per

    return each(one[0], five[0]), each(one[1], five[1])


def _top(calls: Counter[str]) -> str:
    shown = [(n, c) for n, c in calls.most_common() if c >= 0.5]
    return ", ".join(f"{n} {c:.1f}".replace(".0", "") for n, c in shown[:6])


# ---- a node killed -9 ------------------------------------------------------------------


async def node_death(cluster: LocalCluster, redis_url: str, lease_s: float) -> float:
    """A node killed mid-turn: how long until a survivor has refunded its holds."""
    victim = cluster.nodes[-1]
    ledger = RedisLedger.from_url(redis_url)
    keys = RedisKeyStore.from_url(redis_url, ledger)
    account = (await keys.authenticate(KEY)).account_id
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(ws_url(victim), headers=HEADERS)
        await ws.receive_json()
        await ws.send_json({"type": "session.update", "pacing": "realtime"})
        await ws.send_json({"type": "text.append", "text": LONG_TURN})
        await ws.send_json({"type": "text.flush"})
        held = await held_when(ledger, account, lambda held: held > 0, timeout_s=20)
        victim.kill()
        killed = time.monotonic()
        await held_when(ledger, account, lambda held: held == 0, timeout_s=60)
        settled = time.monotonic() - killed
    await keys.aclose()
    await ledger.aclose()
    print(
        f"\nA node killed -9 mid-turn ({held} credits held), lease {lease_s:g} s: "
        f"its holds refunded by a survivor {settled:.2f} s later"
    )
    return settled


async def held_when(
    ledger: RedisLedger, account: str, wanted: Callable[[int], bool], timeout_s: float
) -> int:
    """The account's held credits, once ``wanted`` of them."""
    async with asyncio.timeout(timeout_s):
        while True:
            held = (await ledger.balance(account)).held
            if wanted(held):
                return held
            await asyncio.sleep(0.05)


# ---- main ----------------------------------------------------------------------------


async def measure(
    cluster: LocalCluster, redis_url: str, engine_pid: int, args: argparse.Namespace
) -> dict[str, Any]:
    return {
        "nodes": args.nodes,
        "redis_per_turn": await redis_per_turn(cluster, redis_url),
        "whep_attach": await whep_attach(cluster, args.samples),
        "resume": await resume_cost(cluster, args.samples),
        "sessions_per_node": await sessions_per_node(cluster, args.levels, engine_pid),
        "node_death_s": await node_death(cluster, redis_url, LEASE_S),
        "lease_s": LEASE_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--levels", type=int, nargs="+", default=[10, 25, 50, 100, 150, 200])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="10 samples, levels 10 25 50")
    parser.add_argument("--redis-server", default="/usr/bin/redis-server")
    add_json_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.levels = 10, [10, 25, 50]
    assert args.nodes >= 2, "forwarding needs two nodes"
    settings = {
        "VOXGATE_MAX_SESSIONS_PER_KEY": "1000",
        "VOXTRAL_MAX_CONNECTIONS": "512",
        "VOXGATE_TEXT_BURST": "20000",
    }
    with (
        redis_server(args.redis_server) as redis_url,
        engine_process() as (engine_url, engine_pid),
        tempfile.TemporaryDirectory() as tmp,
    ):
        settings["VOXTRAL_BASE_URL"] = engine_url
        settings["VOXTRAL_API_KEY"] = ENGINE_KEY
        cluster = LocalCluster(
            redis_url,
            Path(tmp),
            nodes_count=args.nodes,
            lease_s=LEASE_S,
            api_keys=[f"{KEY}:100000000"],
            settings=settings,
        )
        with cluster:
            print(
                f"{args.nodes} nodes on one Redis behind haproxy ({cluster.url}), their "
                "upstream one `voxgate local-tts` process; "
                f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
            )
            write_json(args.json, asyncio.run(measure(cluster, redis_url, engine_pid, args)))


if __name__ == "__main__":
    main()
