"""N concurrent realtime sessions against one gateway process: time to first audio and CPU.

Three processes, so each figure is its own: `voxgate local-tts` (the upstream), `voxgate
serve` pointed at it as if it were the real API (the gateway, whose CPU is measured from
/proc), and this script's clients. Every client streams an LLM-like answer at 30 tokens/s,
closes its context and reads everything back; sessions start staggered over one second.

    python bench/realtime_load.py [--sessions 10 25 50] [--pacing fast|realtime] [--json PATH]

Time to first audio is counted from a session's first token; its p99 is printed only over
100 sessions or more (below, the maximum). ``--json PATH`` writes {"levels": [{"sessions",
"ttfa_ms": {"n", "p50", "p99", "max", "samples"}, "cpu_ms_per_session", "cpu_pct"}]}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import aiohttp
from figures import add_json_option, tail, tail_text, write_json

TEXT = (
    "Thanks for waiting. I found your booking for two nights in Lisbon, arriving on the "
    "fourteenth. Breakfast is included, and the room has a view of the river."
)
KEY = "vg_bench_key_0123456789"
ENGINE_KEY = "vxl_bench_engine_key_0123456789"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def wait_ready(url: str) -> None:
    async with asyncio.timeout(60), aiohttp.ClientSession() as http:
        while True:
            try:
                if (await http.get(url)).status == 200:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


async def one_session(http: aiohttp.ClientSession, ws_url: str, pacing: str, delay: float) -> float:
    await asyncio.sleep(delay)
    ws = await http.ws_connect(ws_url, headers={"Authorization": f"Bearer {KEY}"})
    await ws.receive()  # session.created
    await ws.send_json({"type": "session.update", "pacing": pacing})
    await ws.receive()  # session.updated
    started = time.perf_counter()
    first_audio = 0.0

    async def feed() -> None:
        for i in range(0, len(TEXT), 4):
            await ws.send_json({"type": "text.append", "text": TEXT[i : i + 4]})
            await asyncio.sleep(1 / 30)
        await ws.send_json({"type": "context.close"})

    feeder = asyncio.create_task(feed())
    async with asyncio.timeout(120):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY and not first_audio:
                first_audio = time.perf_counter() - started
            elif msg.type is aiohttp.WSMsgType.TEXT and '"context.done"' in msg.data:
                break
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                raise RuntimeError(f"socket closed: {msg.data}")
    await feeder
    await ws.close()
    return first_audio


async def run_level(ws_url: str, gateway_pid: int, sessions: int, pacing: str) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        cpu0, wall0 = cpu_seconds(gateway_pid), time.perf_counter()
        results = await asyncio.gather(
            *(one_session(http, ws_url, pacing, i / sessions) for i in range(sessions))
        )
        cpu, wall = cpu_seconds(gateway_pid) - cpu0, time.perf_counter() - wall0
    ttfa = tail((r * 1000 for r in results), keep=True)
    print(
        f"{sessions:9d}  TTFA {tail_text(ttfa, digits=1):38s} "
        f"{cpu * 1000 / sessions:14.1f} {100 * cpu / wall:10.1f}"
    )
    return {
        "sessions": sessions,
        "ttfa_ms": ttfa,
        "cpu_ms_per_session": cpu * 1000 / sessions,
        "cpu_pct": 100 * cpu / wall,
    }


async def main(levels: list[int], pacing: str) -> dict[str, Any]:
    engine_port, gateway_port = free_port(), free_port()
    env = {**os.environ, "VOXTRAL_LOCAL_API_KEYS": ENGINE_KEY}
    engine = subprocess.Popen(
        [sys.executable, "-m", "voxgate", "local-tts", "--port", str(engine_port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    gateway_env = {
        **os.environ,
        "VOXTRAL_API_KEY": ENGINE_KEY,
        "VOXTRAL_BASE_URL": f"http://127.0.0.1:{engine_port}/api/tts",
        "VOXGATE_API_KEYS": f"{KEY}:100000000",
        "VOXGATE_MAX_SESSIONS_PER_KEY": "1000",
    }
    gateway = subprocess.Popen(
        [sys.executable, "-m", "voxgate", "serve", "--port", str(gateway_port)],
        env=gateway_env,
        stdout=subprocess.DEVNULL,
    )
    try:
        await wait_ready(f"http://127.0.0.1:{gateway_port}/readyz")
        ws_url = f"ws://127.0.0.1:{gateway_port}/v1/realtime"
        print(f"pacing {pacing}; text {len(TEXT)} chars at 30 tokens/s; one gateway process")
        print(f" sessions  {'time to first audio':44s} CPU ms/session  CPU % core")
        await run_level(ws_url, gateway.pid, 2, pacing)  # warm-up, printed for completeness
        measured = [await run_level(ws_url, gateway.pid, level, pacing) for level in levels]
    finally:
        for process in (gateway, engine):
            process.send_signal(signal.SIGTERM)
        for process in (gateway, engine):
            process.wait(timeout=30)
    return {"pacing": pacing, "text_chars": len(TEXT), "token_rate": 30, "levels": measured}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--pacing", choices=["fast", "realtime"], default="fast")
    add_json_option(parser)
    args = parser.parse_args()
    write_json(args.json, asyncio.run(main(args.sessions, args.pacing)))
