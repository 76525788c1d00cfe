"""How long does Ledger.reserve take? p50/p99 for the in-process and the Redis store.

Starts its own redis-server on a free loopback port (no persistence, temp dir) and times
reserve the way a session calls it: one chunk after another, sessions of 20 chunks each, every
chunk committed after its reserve (the commit is not timed). Budget: Redis reserve p99 <= 1 ms.

    python bench/ledger_reserve.py [--chunks 5000] [--rounds 3] [--redis-server PATH]
                                   [--json PATH]

``--json PATH`` writes {"rounds": [{"memory": {"p50", "p99", "max"}, "redis": {...}}, ...]}
in ms, with the best and worst round's Redis p99.

Each round uses a fresh account; a round's figures are printed as measured, so a noisy
neighbour on the machine shows as one bad round rather than a blended number.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from figures import add_json_option, write_json

from voxgate.sessions.ledger import Ledger
from voxgate.sessions.ledger_memory import MemoryLedger
from voxgate.sessions.ledger_redis import RedisLedger

CHUNKS_PER_SESSION = 20
BUDGET_P99_MS = 1.0


@contextmanager
def redis_server(executable: str) -> Iterator[str]:
    """A throwaway redis-server; yields its URL."""
    with tempfile.TemporaryDirectory() as directory, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", directory]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            client = redis.Redis.from_url(url)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            client.close()
            yield url
        finally:
            process.terminate()
            process.wait(timeout=5)


def percentile(sorted_ms: list[float], fraction: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(fraction * len(sorted_ms)))]


async def time_reserves(ledger: Ledger, chunks: int, label: str) -> list[float]:
    """Milliseconds per reserve, after a warm-up that loads scripts and fills the pool."""
    await ledger.create_account(label, 10 * chunks)
    durations: list[float] = []
    for i in range(-200, chunks):  # negative indexes are the warm-up
        session, op = f"{label}-s{i // CHUNKS_PER_SESSION}", f"{label}-op{i}"
        start = time.perf_counter_ns()
        await ledger.reserve(label, session, 7, op, ttl_s=30)
        elapsed = (time.perf_counter_ns() - start) / 1e6
        await ledger.commit(op)
        if i >= 0:
            durations.append(elapsed)
    return sorted(durations)


def report(name: str, durations: list[float]) -> dict[str, float]:
    p50, p99 = percentile(durations, 0.50), percentile(durations, 0.99)
    print(f"{name:<8} reserve  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  max {durations[-1]:6.3f} ms")
    return {"p50": p50, "p99": p99, "max": durations[-1], "n": len(durations)}


async def main(chunks: int, rounds: int, executable: str) -> dict[str, object]:
    print(f"{chunks} sequential reserves per store and round, {CHUNKS_PER_SESSION} per session")
    measured: list[dict[str, dict[str, float]]] = []
    with redis_server(executable) as url:
        ledger = RedisLedger.from_url(url)
        for round_ in range(rounds):
            memory_ = await time_reserves(MemoryLedger(), chunks, f"memory{round_}")
            memory = report("memory", memory_)
            redis_ = report("redis", await time_reserves(ledger, chunks, f"redis{round_}"))
            measured.append({"memory": memory, "redis": redis_})
        await ledger.aclose()
    p99s = [r["redis"]["p99"] for r in measured]
    best, worst = min(p99s), max(p99s)
    verdict = "within" if best <= BUDGET_P99_MS else "OVER"
    print(f"redis reserve p99 {best:.3f} ms best round, {worst:.3f} ms worst: {verdict} budget")
    return {"rounds": measured, "redis_p99_best": best, "redis_p99_worst": worst}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    add_json_option(parser)
    options = parser.parse_args()
    figures = asyncio.run(main(options.chunks, options.rounds, options.redis_server))
    write_json(options.json, figures)
