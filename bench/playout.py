"""What does the playout buffer cost per frame, and per stream in memory?

Drives ``--streams`` playout buffers (160: the design's target per machine) from one shared
20 ms tick on a simulated clock, the way a worker process drives its WebRTC tracks: on each
tick, every stream first pushes the upstream deltas that arrived since the last tick (keeping
what did not fit for later, as a transport does), then pulls its frame. Each stream's
upstream speaks turns of 1-4 s after a first-byte delay of 50-300 ms, as deltas of 40-300 ms
at 2-6x real time, now and then one late by up to 80 ms; the listener answers 0.3-2 s after
a turn has played. Time never sleeps: the figures are the buffer's own CPU cost.

    python bench/playout.py [--streams 160] [--seconds 30] [--seed 1] [--json PATH]

``--json PATH`` writes {"streams", "us_per_frame", "pull_us", "push_us", "core_pct",
"tick_us": {"p50", "p99", "max"}, "memory_kib": {delta ms: KiB}, ...}.

Prints the cost per frame of ``pull`` and of ``push`` (spread over the frames), the whole
tick for all streams (p50/p99/max), the share of one core at 50 frames/s per stream, and the
memory of one stream holding 1 s of audio, pushed in deltas of several sizes.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from collections import defaultdict, deque
from typing import Any

from figures import add_json_option, write_json

from voxgate.codecs.playout import PlayoutBuffer, PlayoutOptions

TICK_S = 0.020
BYTES_PER_MS = 48  # 24 kHz s16 mono

Delta = tuple[bytes, str, float, bool]  # pcm, context, media_ms, last of its turn
Schedule = dict[int, list[Delta]]  # by the tick at which it has arrived
Pending = deque[Delta]


def upstream(seconds: float, rng: random.Random, blob: bytes) -> Schedule:
    """One stream's deltas, bucketed by the tick at which they have arrived."""
    schedule: Schedule = defaultdict(list)
    begin, turn = rng.uniform(0, 0.5), 0
    while begin < seconds:
        context, media, turn_ms = f"turn{turn}", 0, rng.randint(1000, 4000)
        speed, at = rng.uniform(2, 6), begin + rng.uniform(0.05, 0.3)
        played_by = at + turn_ms / 1000
        while media < turn_ms:
            size = min(rng.randint(40, 300), turn_ms - media)
            late = rng.uniform(0, 0.08) if rng.random() < 0.05 else 0.0
            offset = 2 * rng.randrange(0, (len(blob) - size * BYTES_PER_MS) // 2)
            pcm = blob[offset : offset + size * BYTES_PER_MS]
            last = media + size >= turn_ms
            schedule[int((at + late) / TICK_S) + 1].append((pcm, context, float(media), last))
            at += size / 1000 / speed
            media += size
        begin, turn = played_by + rng.uniform(0.3, 2.0), turn + 1
    return schedule


def feed(buffer: PlayoutBuffer, pending: Pending, now: float) -> int:
    """Push what waits, in order, until a delta does not fit; returns the pushes made."""
    pushes = 0
    while pending:
        pcm, context, media, last = pending[0]
        taken = buffer.push(pcm, now, context_id=context, media_ms=media)
        pushes += 1
        if taken < len(pcm):
            pending[0] = (pcm[taken:], context, media + taken / BYTES_PER_MS, last)
            break
        if last:
            buffer.end_of_stream(context)
        pending.popleft()
    return pushes


def run(streams: int, seconds: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    blob = rng.randbytes(10 * 1000 * BYTES_PER_MS)
    schedules = [upstream(seconds, rng, blob) for _ in range(streams)]
    buffers = [PlayoutBuffer(PlayoutOptions(), start=0.0) for _ in range(streams)]
    pendings: list[Pending] = [deque() for _ in range(streams)]
    ticks = int(seconds / TICK_S)
    push_s = pull_s = 0.0
    tick_us: list[float] = []
    frames = pushes = 0
    # The pre-built schedules are the bench's, not a server's: keep the collector off them.
    gc.collect()
    gc.freeze()
    for tick in range(ticks):
        now = tick * TICK_S
        t0 = time.perf_counter()
        for buffer, schedule, pending in zip(buffers, schedules, pendings, strict=True):
            pending.extend(schedule.get(tick, ()))
            if pending:
                pushes += feed(buffer, pending, now)
        t1 = time.perf_counter()
        for buffer in buffers:
            frames += buffer.pull(now) is not None
        t2 = time.perf_counter()
        push_s, pull_s = push_s + t1 - t0, pull_s + t2 - t1
        tick_us.append((t2 - t0) * 1e6)
    return report(streams, ticks, frames, pushes, push_s, pull_s, tick_us, buffers)


def report(
    streams: int,
    ticks: int,
    frames: int,
    pushes: int,
    push_s: float,
    pull_s: float,
    tick_us: list[float],
    buffers: list[PlayoutBuffer],
) -> dict[str, Any]:
    assert frames == streams * ticks, "one frame per stream per tick"
    per_frame = (push_s + pull_s) / frames * 1e6
    tick_us.sort()
    ticked = {"p50": tick_us[len(tick_us) // 2], "p99": tick_us[int(len(tick_us) * 0.99)]}
    under = sum(b.stats.underruns_upstream for b in buffers)
    gateway = sum(b.stats.underruns_gateway for b in buffers)
    silent = sum(b.stats.silent_frames for b in buffers)
    print(f"{streams} streams x {ticks} ticks = {frames} frames, {pushes} pushes")
    print(f"  pull          {pull_s / frames * 1e6:6.2f} us/frame")
    print(
        f"  push          {push_s / frames * 1e6:6.2f} us/frame ({push_s / pushes * 1e6:.2f}/push)"
    )
    print(f"  pull + push   {per_frame:6.2f} us/frame")
    print(
        f"  tick, all {streams} streams: p50 {ticked['p50']:.0f} us, "
        f"p99 {ticked['p99']:.0f} us, max {tick_us[-1]:.0f} us"
    )
    print(f"  one core at 50 frames/s/stream: {per_frame * 50 * streams / 1e4:.2f} %")
    print(f"  silent frames {silent / frames:.0%}, underruns upstream {under}, gateway {gateway}")
    return {
        "streams": streams,
        "ticks": ticks,
        "us_per_frame": per_frame,
        "pull_us": pull_s / frames * 1e6,
        "push_us": push_s / frames * 1e6,
        "core_pct": per_frame * 50 * streams / 1e4,
        "tick_us": {**ticked, "max": tick_us[-1], "n": len(tick_us)},
        "silent_share": silent / frames,
        "underruns": {"upstream": under, "gateway": gateway},
    }


def memory_per_stream(delta_ms: int, streams: int = 100) -> float:
    """Bytes one stream holds with 1 s of audio queued, pushed in ``delta_ms`` deltas."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    buffers = []
    for _ in range(streams):
        buffer = PlayoutBuffer(PlayoutOptions(), start=0.0)
        for i in range(1000 // delta_ms):
            pcm = random.randbytes(delta_ms * BYTES_PER_MS)
            buffer.push(pcm, 0.0, context_id="turn", media_ms=float(i * delta_ms))
        buffers.append(buffer)
    del pcm
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert all(b.buffered_ms == 1000 for b in buffers)
    return (after - before) / streams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=160)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    add_json_option(parser)
    args = parser.parse_args()
    figures = run(args.streams, args.seconds, args.seed)
    print("memory per stream at 1 s buffered (48,000 bytes of PCM):")
    figures["memory_kib"] = {}
    for delta_ms in (20, 100, 250, 1000):
        used = memory_per_stream(delta_ms)
        figures["memory_kib"][delta_ms] = used / 1024
        print(
            f"  {delta_ms:5d} ms deltas: {used / 1024:6.1f} KiB ({used / 48000 - 1:+.1%} overhead)"
        )
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
