"""Where the time to first audio goes, for an LLM streaming tokens at 30 tokens/s.

The embedded engine runs on loopback in its own thread; a Session is fed 4-character tokens
at 30/s and its events are taken as a transport would. Per run it measures:

  first token -> token that completes chunk 1 (waiting for text: the LLM's pace, not ours)
  that token -> chunk sent upstream            (segmenter + ledger reserve)
  upstream request -> its first PCM            (the upstream's own first-byte time)
  upstream first PCM -> first audio out        (normalise, order, hand to the transport)
  first token -> first audio out               (what the listener waits)

and the ratio of gateway-added time to the upstream's own first-byte time, where the
gateway-added time is the two gateway steps (the wait for text is the LLM's, and would be
the same with any gateway). Both ledgers: in-process, and Redis on a local server.

A run ends at its first audio: the feed stops there and the turn is closed, so that 200
runs per ledger (a p99 that is not just the maximum) take about a minute each. A p99 is
printed with its sample count and the maximum, and only over 100 runs or more.

    python bench/session_latency.py [--runs 200] [--json PATH]

``--json PATH`` writes {"ledgers": {"in-process" | "redis": {step: {"n", "p50", "p99",
"max"}, "ratio": {...}}}}, with the samples of "to_audio" (first token -> first audio).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from figures import add_json_option, tail, tail_text, write_json

from voxgate.errors import StoreUnavailable
from voxgate.sessions.events import AudioOut, ContextDone
from voxgate.sessions.ledger import Ledger
from voxgate.sessions.ledger_memory import MemoryLedger
from voxgate.sessions.ledger_redis import RedisLedger
from voxgate.sessions.session import Session
from voxgate.upstream import SpeechRequest, Upstream, UpstreamConfig
from voxgate.upstream.engine.background import BackgroundEngine
from voxgate.upstream.pcm import PcmChunk

TEXT = (
    "Sure, I can help with that. Your order shipped on Monday and should arrive by "
    "Thursday. Is there anything else I can do for you today?"
)
TOKEN_RATE = 30.0


@dataclass
class TimedUpstream:
    upstream: Upstream
    sent: list[float] = field(default_factory=list)
    first_pcm: list[float] = field(default_factory=list)

    async def stream(self, request: SpeechRequest) -> AsyncIterator[PcmChunk]:
        self.sent.append(time.perf_counter())
        first = True
        async for chunk in self.upstream.stream(request):
            if first:
                self.first_pcm.append(time.perf_counter())
                first = False
            yield chunk


async def one_run(upstream: Upstream, ledger: Ledger, run: int) -> dict[str, float]:
    timed = TimedUpstream(upstream)
    account = f"bench-{run}-{time.time_ns()}"
    await ledger.create_account(account, 10_000)
    session = Session(upstream=timed, ledger=ledger, account_id=account)
    tokens = [TEXT[i : i + 4] for i in range(0, len(TEXT), 4)]

    pushed: list[float] = []
    heard = asyncio.Event()

    async def feed() -> None:
        for token in tokens:
            if heard.is_set():
                break  # the run's figures are in: the rest of the text would only take time
            pushed.append(time.perf_counter())
            session.append(token)
            await asyncio.sleep(1 / TOKEN_RATE)
        session.close_context()

    start = time.perf_counter()
    feeder = asyncio.create_task(feed())
    first_audio = 0.0
    while True:
        event = await session.next_event()
        if isinstance(event, AudioOut) and not first_audio:
            first_audio = time.perf_counter()
            heard.set()
        if isinstance(event, ContextDone):
            break
    await feeder
    await session.aclose()
    sent, first_pcm = timed.sent[0], timed.first_pcm[0]
    completing = max(t for t in pushed if t <= sent)
    upstream_fb = first_pcm - sent
    gateway = (sent - completing) + (first_audio - first_pcm)
    return {
        "text_wait": (completing - start) * 1000,
        "to_upstream": (sent - completing) * 1000,
        "upstream_fb": upstream_fb * 1000,
        "after_upstream": (first_audio - first_pcm) * 1000,
        "to_audio": (first_audio - start) * 1000,
        "ratio": gateway / upstream_fb,
    }


LABELS = {
    "text_wait": "first token -> token completing chunk",
    "to_upstream": "that token -> chunk sent upstream",
    "upstream_fb": "upstream's own first-byte time",
    "after_upstream": "upstream first PCM -> audio out",
    "to_audio": "first token -> first audio out",
}


def report(name: str, results: list[dict[str, float]]) -> dict[str, dict[str, object]]:
    print(f"\n{name} ledger, {len(results)} runs, tokens of 4 chars at {TOKEN_RATE:g}/s")
    figures = {}
    for key, label in LABELS.items():
        figures[key] = tail((r[key] for r in results), keep=key == "to_audio")
        print(f"  {label:38s} {tail_text(figures[key])}")
    figures["ratio"] = tail(r["ratio"] for r in results)
    ratio = figures["ratio"]
    print(
        f"  gateway-added / upstream first-byte     median {ratio['p50']:.2f}"
        f" (max {ratio['max']:.2f})"
    )
    return figures


async def wait_for_store(ledger: RedisLedger) -> None:
    """Until the server answers (it fails fast while it is still starting)."""
    for _ in range(100):
        try:
            await ledger.accounts()
            return
        except StoreUnavailable:
            await asyncio.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def main(runs: int) -> dict[str, object]:
    ledgers: dict[str, object] = {}
    figures = {"runs": runs, "token_rate": TOKEN_RATE, "ledgers": ledgers}
    with BackgroundEngine() as engine:
        config = UpstreamConfig(base_url=engine.base_url, api_key=engine.api_key)
        async with Upstream(config) as upstream:
            await one_run(upstream, MemoryLedger(), -1)  # warm-up
            measured = [await one_run(upstream, MemoryLedger(), i) for i in range(runs)]
            ledgers["in-process"] = report("in-process", measured)
            redis_server = shutil.which("redis-server")
            if redis_server is None:
                print("\nredis-server not installed: Redis ledger skipped")
                return figures
            port = free_port()
            with tempfile.TemporaryDirectory() as tmp:
                server = subprocess.Popen(
                    [
                        redis_server,
                        "--port",
                        str(port),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        tmp,
                    ],
                    stdout=subprocess.DEVNULL,
                )
                try:
                    ledger = RedisLedger.from_url(f"redis://127.0.0.1:{port}/0")
                    await wait_for_store(ledger)
                    results = [await one_run(upstream, ledger, i) for i in range(runs)]
                    await ledger.aclose()
                    ledgers["redis"] = report("Redis", results)
                finally:
                    server.terminate()
                    server.wait()
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    add_json_option(parser)
    args = parser.parse_args()
    write_json(args.json, asyncio.run(main(args.runs)))
