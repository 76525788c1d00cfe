"""One 20 ms media clock per process, ticking every registered stream.

A timer per stream costs a task wake-up, a heap operation and a selector pass per stream
per frame, and N timers drift apart so N streams wake the loop N times per period. One
task that sleeps until ``origin + k * period`` on ``time.monotonic()`` and then calls each
stream's ``tick(now)`` does the same work with one wake-up per period.

**The grid.** Tick ``k`` is due at ``origin + k * period``; the origin is fixed when the
clock is made and never moves, even while the clock idles with no streams, so a stream can
align its own schedule with :meth:`MediaClock.next_tick` before it registers. Due times are
multiplied out, never summed, so no rounding drift accumulates.

**Precision.** A tick runs within about half a millisecond of its due time, early or
late (see ``AIM_EARLY_S``); its lateness is measured against the due time.

**Stalls.** After a tick, the next one is the first whose due time is still ahead: ticks
whose time passed while the loop stalled, or while the streams' ticks overran, are skipped
and counted, never run back to back. A stall costs a gap, never a burst.

**Lifetime.** The task starts with the first registration and ends by itself after a tick
that finds no streams; the next registration starts a new one on the same grid.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

__all__ = ["ClockStats", "ClockedStream", "LatencyWindow", "MediaClock"]

logger = logging.getLogger(__name__)

PERIOD_MS = 20
# The selector rounds every timeout up to a whole millisecond, so a sleep aimed at the due
# time wakes 0-1 ms late; aimed this much earlier it wakes within about +-0.5 ms. A pull
# up to 0.5 ms early is still on time for the playout buffer.
AIM_EARLY_S = 0.0004


class ClockedStream(Protocol):
    """Anything the clock drives: ``tick`` must be synchronous, quick and must not raise."""

    def tick(self, now: float) -> None:
        """The tick due at about ``now`` (``time.monotonic()``) has come."""
        ...


class LatencyWindow:
    """The last ``size`` samples of a delay, in seconds, and their percentiles in ms.

    Adding is one store into a preallocated array, so it is cheap enough per packet.
    """

    __slots__ = ("_count", "_samples")

    def __init__(self, size: int) -> None:
        self._samples = np.zeros(size, dtype=np.float64)
        self._count = 0

    def add(self, seconds: float) -> None:
        """Record one sample, overwriting the oldest once the window is full."""
        self._samples[self._count % self._samples.size] = seconds
        self._count += 1

    @property
    def count(self) -> int:
        """Samples recorded since the window was made (not only those it still holds)."""
        return self._count

    def percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the samples held, in ms; 0.0 when empty."""
        held = self._samples[: min(self._count, self._samples.size)]
        return float(np.percentile(held, q)) * 1000 if held.size else 0.0

    def max_ms(self) -> float:
        """The largest sample held, in ms; 0.0 when empty."""
        held = self._samples[: min(self._count, self._samples.size)]
        return float(held.max()) * 1000 if held.size else 0.0


@dataclass(frozen=True, slots=True)
class ClockStats:
    """Counters since the clock was made; percentiles over the last ``window`` ticks."""

    streams: int
    ticks: int
    skipped_ticks: int  # given up to stalls or overruns, never caught up
    late_p50_ms: float  # actual - due of each tick run
    late_p99_ms: float
    late_max_ms: float
    work_p50_ms: float  # time spent calling every stream's tick
    work_p99_ms: float


class MediaClock:
    """A shared periodic tick on ``time.monotonic()`` for every stream of a process.

    Use :meth:`shared` for the process-wide clock; separate instances are for tests and
    benchmarks. ``register``/``unregister`` need a running event loop and must all happen
    on the same one.
    """

    _shared: ClassVar[MediaClock | None] = None

    def __init__(self, period_ms: int = PERIOD_MS, *, window: int = 3000) -> None:
        if period_ms <= 0:
            raise ValueError(f"period_ms must be positive, not {period_ms}")
        self.period = period_ms / 1000
        self.origin = time.monotonic()
        self._streams: dict[ClockedStream, None] = {}  # ordered: ticks follow registration
        self._task: asyncio.Task[None] | None = None
        self._ticks = 0
        self._skipped = 0
        self._late = LatencyWindow(window)
        self._work = LatencyWindow(window)

    @classmethod
    def shared(cls) -> MediaClock:
        """The process-wide clock: one tick for every stream of this process."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    # -- schedule ---------------------------------------------------------------------

    def due(self, k: int) -> float:
        """The monotonic time of tick ``k``."""
        return self.origin + k * self.period

    def next_tick(self, now: float | None = None) -> float:
        """The due time of the first tick at or after ``now`` (default: the current time)."""
        now = time.monotonic() if now is None else now
        return self.due(math.ceil((now - self.origin) / self.period - 1e-9))

    # -- streams ----------------------------------------------------------------------

    def register(self, stream: ClockedStream) -> None:
        """Tick ``stream`` from the next tick on; starts the clock's task if it idles."""
        loop = asyncio.get_running_loop()
        self._forget_closed_loop()
        if self._task is not None and self._task.get_loop() is not loop:
            raise RuntimeError("this MediaClock is driven by another event loop")
        self._streams[stream] = None
        if self._task is None:
            self._task = loop.create_task(self._run(), name="voxgate-media-clock")

    def unregister(self, stream: ClockedStream) -> None:
        """Stop ticking ``stream``; unknown streams are ignored. The task ends by itself."""
        self._streams.pop(stream, None)

    @property
    def stream_count(self) -> int:
        """How many streams are registered."""
        return len(self._streams)

    @property
    def running(self) -> bool:
        """Whether the clock's task is alive."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Unregister every stream and wait for the task to end (shutdown, tests)."""
        self._streams.clear()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._task = None

    def stats(self) -> ClockStats:
        """A snapshot of the counters and the lateness and work percentiles."""
        return ClockStats(
            streams=len(self._streams),
            ticks=self._ticks,
            skipped_ticks=self._skipped,
            late_p50_ms=self._late.percentile_ms(50),
            late_p99_ms=self._late.percentile_ms(99),
            late_max_ms=self._late.max_ms(),
            work_p50_ms=self._work.percentile_ms(50),
            work_p99_ms=self._work.percentile_ms(99),
        )

    # -- internals --------------------------------------------------------------------

    def _forget_closed_loop(self) -> None:
        # A loop that closed under a running clock (a test that never stopped its tracks)
        # left streams whose futures are dead: they must not be ticked on a new loop.
        if self._task is not None and self._task.get_loop().is_closed():
            self._task = None
            self._streams.clear()

    async def _run(self) -> None:
        # Streams align their schedules with next_tick(): the first tick is that one.
        k = math.ceil((time.monotonic() - self.origin) / self.period - 1e-9)
        try:
            while self._streams:
                due = self.due(k)
                delay = due - AIM_EARLY_S - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.monotonic()
                self._late.add(now - due)
                self._tick_all(now)
                self._ticks += 1
                # The first tick still ahead: a late wake-up or an overrun skips ticks.
                ahead = math.floor((time.monotonic() - self.origin) / self.period) + 1
                self._skipped += max(0, ahead - k - 1)
                k = max(k + 1, ahead)
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def _tick_all(self, now: float) -> None:
        started = time.perf_counter()
        # A copy: a stream may stop (and unregister) from inside its own tick.
        for stream in list(self._streams):
            try:
                stream.tick(now)
            except Exception:
                # One broken stream must not silence every other one on this clock.
                logger.exception("stream %r failed in tick; unregistered", stream)
                self._streams.pop(stream, None)
        self._work.add(time.perf_counter() - started)
