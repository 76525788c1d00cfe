"""Pauses a listener hears while an LLM writes slower than the text is spoken.

Speech runs at about 15 characters a second; an LLM at 4-15 tokens a second (4 characters
each) writes 16-60. The first chunk of a turn is short, so the listener's audio can run out
before a later chunk (100 characters to a sentence end, or the 2 s time bound) is ready.
The runway (``SegmenterOptions.runway_ms``) lets a later chunk end early, at a boundary or
when a pause is certain at a word, when that is about to happen. Both arms run side by side,
at the same time (``--one-at-a-time``: one after the other), on the same text:

  runway   the default (300 ms margin plus the upstream's measured time to first audio)
  off      ``runway_ms=0``: later chunks wait for ``min_chars`` or the time bound

The embedded engine runs on loopback in its own thread; ``--upstream-delay-ms`` adds a
first-byte delay to every request, to stand for a remote upstream (each arm gets the same).
A listener plays every AudioOut in real time from the first one; per run the bench sums the
pauses it hears (audio arriving after what it had was used up; over 20 ms counted) and
takes the longest. Printed per token rate and arm: the median over runs of pause total,
longest pause and chunk count, and the median first-audio time. The defaults are the
README's scenario: 3, 5, 8 and 15 tokens/s, medians of 3 runs, upstream first byte +0 and
+250 ms (about 6 minutes).

    python bench/slow_llm.py [--runs 3] [--rates 3,5,8,15] [--upstream-delay-ms 0,250]
                             [--one-at-a-time] [--json PATH]

``--json PATH`` writes {"text_chars", "runs", "scenarios": [{"rate", "delay_ms", "arms":
{"runway" | "off": {"pauses_ms", "longest_ms", "chunks", "first_audio_ms" (medians),
"runs": [{...}, ...]}}}]}.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from figures import add_json_option, write_json

from voxgate.sessions.events import AudioOut, ChunkStarted, ContextDone
from voxgate.sessions.ledger_memory import MemoryLedger
from voxgate.sessions.options import SessionOptions
from voxgate.sessions.segmenter import SegmenterOptions
from voxgate.sessions.session import Session
from voxgate.upstream import SpeechRequest, Upstream, UpstreamConfig
from voxgate.upstream.engine.background import BackgroundEngine
from voxgate.upstream.pcm import PcmChunk

TEXT = (
    "Sure, I can look into that for you. Your order, which left our warehouse on Monday, "
    "is with the courier now, and the tracking page says it should reach you by Thursday "
    "afternoon. If it does not arrive by then, reply to this message, and we will send a "
    "replacement at no cost, or refund you in full, whichever you prefer."
)
ARMS = {"runway": SegmenterOptions(), "off": SegmenterOptions(runway_ms=0)}
AUDIBLE_PAUSE_MS = 20.0  # a frame: anything shorter is scheduling noise, not a pause


@dataclass
class DelayedUpstream:
    upstream: Upstream
    delay_s: float

    async def stream(self, request: SpeechRequest) -> AsyncIterator[PcmChunk]:
        await asyncio.sleep(self.delay_s)
        async for chunk in self.upstream.stream(request):
            yield chunk


@dataclass
class Run:
    pauses_ms: float
    longest_ms: float
    chunks: int
    first_audio_ms: float


async def one_run(upstream: DelayedUpstream, segmenter: SegmenterOptions, rate: float) -> Run:
    ledger = MemoryLedger()
    await ledger.create_account("bench", 100_000)
    options = SessionOptions(segmenter=segmenter)
    session = Session(upstream=upstream, ledger=ledger, account_id="bench", options=options)
    tokens = [TEXT[i : i + 4] for i in range(0, len(TEXT), 4)]

    async def feed() -> None:
        for token in tokens:
            session.append(token)
            await asyncio.sleep(1 / rate)
        session.close_context()

    start = time.perf_counter()
    feeder = asyncio.create_task(feed())
    played_until: float | None = None  # when the listener runs out of what it has
    pauses: list[float] = []
    chunks = 0
    first_audio = 0.0
    while True:
        event = await session.next_event()
        now = time.perf_counter()
        if isinstance(event, ChunkStarted):
            chunks += 1
        elif isinstance(event, AudioOut):
            if played_until is None:
                first_audio, played_until = now, now
            elif now > played_until:
                pauses.append((now - played_until) * 1000)
            played_until = max(played_until, now) + event.duration_ms / 1000
        elif isinstance(event, ContextDone):
            break
    await feeder
    await session.aclose()
    audible = [p for p in pauses if p > AUDIBLE_PAUSE_MS]
    return Run(sum(audible), max(audible, default=0.0), chunks, (first_audio - start) * 1000)


def report(rate: float, delay_ms: float, runs: dict[str, list[Run]]) -> dict[str, Any]:
    chars = rate * 4
    print(f"\n{rate:g} tokens/s ({chars:g} chars/s), upstream first-byte delay +{delay_ms:g} ms")
    print(f"  {'arm':8s} {'pauses':>10s} {'longest':>10s} {'chunks':>7s} {'first audio':>12s}")
    arms: dict[str, Any] = {}
    for arm, results in runs.items():
        medians = {
            key: statistics.median(getattr(r, key) for r in results)
            for key in ("pauses_ms", "longest_ms", "chunks", "first_audio_ms")
        }
        arms[arm] = {**medians, "runs": [asdict(r) for r in results]}
        print(
            f"  {arm:8s} {medians['pauses_ms']:7.0f} ms {medians['longest_ms']:7.0f} ms "
            f"{medians['chunks']:7g} {medians['first_audio_ms']:9.0f} ms"
        )
    return {"rate": rate, "delay_ms": delay_ms, "arms": arms}


async def arms_once(upstream: DelayedUpstream, rate: float, together: bool) -> list[Run]:
    """A run of every arm: at the same time, or one after the other."""
    if together:
        return await asyncio.gather(*(one_run(upstream, s, rate) for s in ARMS.values()))
    return [await one_run(upstream, segmenter, rate) for segmenter in ARMS.values()]


async def main(
    runs: int, rates: list[float], delays_ms: list[float], together: bool
) -> dict[str, Any]:
    print(f"text: {len(TEXT)} characters; medians over {runs} runs per arm")
    scenarios = []
    with BackgroundEngine() as engine:
        config = UpstreamConfig(base_url=engine.base_url, api_key=engine.api_key)
        async with Upstream(config) as client:
            for delay_ms in delays_ms:
                upstream = DelayedUpstream(client, delay_ms / 1000)
                await one_run(upstream, ARMS["runway"], 50.0)  # warm-up
                for rate in rates:
                    results: dict[str, list[Run]] = {arm: [] for arm in ARMS}
                    for _ in range(runs):
                        once = await arms_once(upstream, rate, together)
                        for arm, run in zip(ARMS, once, strict=True):
                            results[arm].append(run)
                    scenarios.append(report(rate, delay_ms, results))
    together_text = "at the same time" if together else "one after the other"
    return {
        "text_chars": len(TEXT),
        "runs": runs,
        "arms_run": together_text,
        "scenarios": scenarios,
    }


def numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rates", type=numbers, default=[3.0, 5.0, 8.0, 15.0])
    parser.add_argument("--upstream-delay-ms", type=numbers, default=[0.0, 250.0])
    parser.add_argument("--one-at-a-time", action="store_true", help="arms one after the other")
    add_json_option(parser)
    args = parser.parse_args()
    figures = asyncio.run(
        main(args.runs, args.rates, args.upstream_delay_ms, not args.one_at_a_time)
    )
    write_json(args.json, figures)
