"""How early does /stream deliver? Time to the first speech.audio.delta vs the whole stream.

Runs the embedded engine on loopback in its own thread and streams a five-sentence text
through voxgate's client several times. Goal: first delta < 1/4 of the total stream time.

    python bench/sse_first_delta.py [--runs 7] [--json PATH]

``--json PATH`` writes {"runs", "first_ms": [...], "total_ms": [...], "ratio_median",
"ratio_max", "audio_s", "real_time_factor"}.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from figures import add_json_option, write_json

from voxgate.upstream import SpeechRequest, Upstream, UpstreamConfig
from voxgate.upstream.engine.background import BackgroundEngine

TEXT = (
    "Good morning, and thank you for calling. "
    "I have looked at your account and everything seems to be in order. "
    "Your last payment arrived on Tuesday, two days before it was due. "
    "There is nothing more you need to do this month. "
    "Is there anything else I can help you with today?"
)
JANE = "82c99ee6-f932-423f-a4a3-d403c8914b8d"


async def one_run(client: Upstream) -> tuple[float, float, float]:
    start = time.perf_counter()
    first = 0.0
    audio_seconds = 0.0
    async for chunk in client.stream(SpeechRequest(TEXT, voice_id=JANE)):
        first = first or time.perf_counter() - start
        audio_seconds += chunk.duration
    return first, time.perf_counter() - start, audio_seconds


async def main(runs: int) -> dict[str, object]:
    with BackgroundEngine() as engine:
        async with Upstream(UpstreamConfig(engine.base_url, engine.api_key)) as client:
            await one_run(client)  # warm-up: espeak loads its voice data on first use
            results = [await one_run(client) for _ in range(runs)]
    firsts = [r[0] for r in results]
    totals = [r[1] for r in results]
    ratios = [f / t for f, t, _ in results]
    print(
        f"runs: {runs}, text: {len(TEXT)} chars, 5 sentences, audio: {results[0][2]:.2f} s per run"
    )
    print(
        f"first delta   median {statistics.median(firsts) * 1000:7.1f} ms  "
        f"max {max(firsts) * 1000:7.1f} ms"
    )
    print(
        f"whole stream  median {statistics.median(totals) * 1000:7.1f} ms  "
        f"max {max(totals) * 1000:7.1f} ms"
    )
    print(
        f"first/total   median {statistics.median(ratios):.3f}  max {max(ratios):.3f}  "
        f"(goal < 0.25)"
    )
    print(f"real-time factor of synthesis: {statistics.median(totals) / results[0][2]:.3f}")
    return {
        "runs": runs,
        "first_ms": [f * 1000 for f in firsts],
        "total_ms": [t * 1000 for t in totals],
        "ratio_median": statistics.median(ratios),
        "ratio_max": max(ratios),
        "audio_s": results[0][2],
        "real_time_factor": statistics.median(totals) / results[0][2],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    add_json_option(parser)
    args = parser.parse_args()
    write_json(args.json, asyncio.run(main(args.runs)))
