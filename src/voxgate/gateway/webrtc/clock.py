"""One 20 ms media clock per process, ticking every registered stream.

A timer per stream costs a task wake-up, a heap operation and a selector pass per stream
per frame, and N timers drift apart so N streams wake the loop N times per period. One
task that sleeps until the next due time on ``time.monotonic()`` and then calls each
stream's ``tick(now)`` does the same work with a fixed number of wake-ups per period.

**The grid.** The period (20 ms) is split into ``phases`` equal steps; step ``j`` is due at
``origin + j * period / phases`` and serves the streams of phase ``j % phases``, so every
stream is ticked once per period, on its own phase. The origin is fixed when the clock is
made and never moves, even while the clock idles, and due times are multiplied out, never
summed, so nothing drifts. A new stream joins the phase with the fewest streams.

**Why phases.** Whatever a stream does after its tick (encoding, sending) runs on the same
thread, so with one phase the k-th stream's packet leaves only after the k-1 before it: at
~0.4 ms a stream, the tenth is 4 ms late, every period. Phases spread that work across the
period; each phase wakes the loop once, however many streams it holds. ``phases=1`` is the
plain single tick.

**Batched sends.** A stream's ``tick`` prepares its packet and ``flush`` sends it; the
clock ticks up to ``SEND_BATCH`` streams of a phase, then flushes them back to back. The
encodes run together with libopus' code and tables hot in the caches, and the sends leave
together rather than each between two encodes. At 20 streams that measured 25 % less CPU
per stream than encode-and-send per stream while the receivers (on the same machine) were
woken by every datagram; with receivers that poll, the difference was within this VM's
noise. A packet waits at most for the batch's other encodes (about 1.5 ms for 8 at
complexity 5).

**Precision.** A step runs within about half a millisecond of its due time, early or late
(see ``AIM_EARLY_S``); its lateness is measured against the due time.

**Stalls.** Steps run in order, late if need be, but a step more than half a period late
is skipped (and counted): its streams were last ticked about a period ago, and their next
tick comes half a period later at most. A stall costs a gap, never a burst of catch-up
ticks; a tick that still comes early for a stream's frame (a stream ticked late within an
overrunning step) finds nothing due in its playout buffer.

**Lifetime.** The task starts with the first registration and ends by itself after a step
that finds no streams at all; the next registration starts a new one on the same grid.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from array import array
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

__all__ = ["ClockStats", "ClockedStream", "LatencyWindow", "MediaClock"]

logger = logging.getLogger(__name__)

PERIOD_MS = 20
PHASES = 4  # 5 ms apart: see "Why phases"; measured in bench/webrtc.py
SEND_BATCH = 8  # streams ticked before their packets are flushed: see "Batched sends"
# The selector rounds every timeout up to a whole millisecond, so a sleep aimed at the due
# time wakes 0-1 ms late; aimed this much earlier it wakes within about +-0.5 ms. A pull
# up to 0.5 ms early is still on time for the playout buffer.
AIM_EARLY_S = 0.0004


class ClockedStream(Protocol):
    """Anything the clock drives. ``tick`` and ``flush`` are synchronous and should not
    raise; what they cost delays the streams after them in their phase."""

    def tick(self, now: float) -> bool:
        """The tick due at about ``now`` (``time.monotonic()``) has come. True when the
        stream holds a packet for :meth:`flush` (a track encodes in ``tick``)."""
        ...

    def flush(self) -> None:
        """Send what the last ``tick`` prepared."""
        ...


class LatencyWindow:
    """The last ``size`` samples of a delay, in seconds, and their percentiles in ms.

    Adding is one store into a preallocated ``array`` of doubles (a third of what a store
    into a numpy array costs, and as compact), so it is cheap enough per packet.
    """

    __slots__ = ("_count", "_samples", "_size")

    def __init__(self, size: int) -> None:
        self._samples = array("d", bytes(8 * size))
        self._size = size
        self._count = 0

    def add(self, seconds: float) -> None:
        """Record one sample, overwriting the oldest once the window is full."""
        self._samples[self._count % self._size] = seconds
        self._count += 1

    @property
    def count(self) -> int:
        """Samples recorded since the window was made (not only those it still holds)."""
        return self._count

    def percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the samples held, in ms; 0.0 when empty.

        Interpolated linearly between the two nearest ranks, as ``numpy.percentile`` does,
        from one sort: ``numpy.percentile`` builds its machinery on its first call in a
        process (10-18 ms measured), and the first metrics scrape or playout report would
        hold every stream of the process up for that long.
        """
        held = self._held()
        if not held.size:
            return 0.0
        ordered = np.sort(held)
        rank = min(max(q, 0.0), 100.0) / 100 * (ordered.size - 1)
        low = int(rank)
        high = min(low + 1, ordered.size - 1)
        value = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
        return float(value) * 1000

    def max_ms(self) -> float:
        """The largest sample held, in ms; 0.0 when empty."""
        held = self._held()
        return float(held.max()) * 1000 if held.size else 0.0

    def _held(self) -> np.ndarray:
        return np.frombuffer(self._samples, dtype=np.float64)[: min(self._count, self._size)]


@dataclass(frozen=True, slots=True)
class ClockStats:
    """Counters since the clock was made; percentiles over the last ``window`` steps."""

    streams: int
    ticks: int  # steps run (each ticks one phase's streams)
    skipped_ticks: int  # steps with streams given up to stalls or overruns
    late_p50_ms: float  # actual - due of each step run
    late_p99_ms: float
    late_max_ms: float
    work_p50_ms: float  # time spent calling one phase's streams' ticks
    work_p99_ms: float


class MediaClock:
    """A shared periodic tick on ``time.monotonic()`` for every stream of a process.

    Use :meth:`shared` for the process-wide clock; separate instances are for tests and
    benchmarks. ``register``/``unregister`` need a running event loop and must all happen
    on the same one.
    """

    _shared: ClassVar[MediaClock | None] = None

    def __init__(
        self, period_ms: int = PERIOD_MS, *, phases: int = PHASES, window: int = 3000
    ) -> None:
        if period_ms <= 0 or phases <= 0:
            raise ValueError(f"period_ms and phases must be positive: {period_ms}, {phases}")
        self.period = period_ms / 1000
        self.phases = phases
        self.origin = time.monotonic()
        self._step = self.period / phases
        # Per phase, ordered: within a step, streams are ticked in registration order.
        self._streams: list[dict[ClockedStream, None]] = [{} for _ in range(phases)]
        self._phase_of: dict[ClockedStream, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._planned = 0  # the step the task sleeps towards; earlier ones are gone
        self._ticks = 0
        self._skipped = 0
        self._late = LatencyWindow(window)
        self._work = LatencyWindow(window)

    @classmethod
    def shared(cls) -> MediaClock:
        """The process-wide clock: one tick task for every stream of this process."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    # -- streams ----------------------------------------------------------------------

    def register(self, stream: ClockedStream) -> float:
        """Tick ``stream`` once per period from now on; returns its first tick's due time.

        Its later ticks are due every ``period`` after that. Starts the clock's task if
        it idles.
        """
        loop = asyncio.get_running_loop()
        self._forget_closed_loop()
        if self._task is not None and self._task.get_loop() is not loop:
            raise RuntimeError("this MediaClock is driven by another event loop")
        if stream not in self._phase_of:
            phase = min(range(self.phases), key=lambda p: len(self._streams[p]))
            self._streams[phase][stream] = None
            self._phase_of[stream] = phase
        if self._task is None:
            self._task = loop.create_task(self._run(), name="voxgate-media-clock")
        # A step already being served (woken early), or before the one the task sleeps
        # towards (it skipped this phase while it was empty), is too late to join.
        first = math.ceil((time.monotonic() + AIM_EARLY_S - self.origin) / self._step)
        if self.running:
            first = max(first, self._planned)
        return self._due(first + (self._phase_of[stream] - first) % self.phases)

    def unregister(self, stream: ClockedStream) -> None:
        """Stop ticking ``stream``; unknown streams are ignored. The task ends by itself."""
        phase = self._phase_of.pop(stream, None)
        if phase is not None:
            self._streams[phase].pop(stream, None)

    @property
    def stream_count(self) -> int:
        """How many streams are registered."""
        return len(self._phase_of)

    @property
    def running(self) -> bool:
        """Whether the clock's task is alive."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Unregister every stream and wait for the task to end (shutdown, tests)."""
        self._clear()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._task = None

    def stats(self) -> ClockStats:
        """A snapshot of the counters and the lateness and work percentiles."""
        return ClockStats(
            streams=len(self._phase_of),
            ticks=self._ticks,
            skipped_ticks=self._skipped,
            late_p50_ms=self._late.percentile_ms(50),
            late_p99_ms=self._late.percentile_ms(99),
            late_max_ms=self._late.max_ms(),
            work_p50_ms=self._work.percentile_ms(50),
            work_p99_ms=self._work.percentile_ms(99),
        )

    # -- internals --------------------------------------------------------------------

    def _due(self, j: int) -> float:
        return self.origin + j * self._step

    def _clear(self) -> None:
        self._phase_of.clear()
        for streams in self._streams:
            streams.clear()

    def _forget_closed_loop(self) -> None:
        # A loop that closed under a running clock (a test that never stopped its tracks)
        # left streams whose futures are dead: they must not be ticked on a new loop.
        if self._task is not None and self._task.get_loop().is_closed():
            self._task = None
            self._clear()

    def _next_step(self, after: int) -> int:
        """The first step at or after ``after`` whose phase has streams."""
        for j in range(after, after + self.phases):
            if self._streams[j % self.phases]:
                return j
        return after

    def _count_skipped(self, start: int, end: int) -> None:
        """Count the steps in ``[start, end)`` that had streams to tick."""
        whole, rest = divmod(max(0, end - start), self.phases)
        busy = [bool(streams) for streams in self._streams]
        self._skipped += whole * sum(busy) + sum(
            busy[(start + i) % self.phases] for i in range(rest)
        )

    async def _run(self) -> None:
        j = self._next_step(math.ceil((time.monotonic() - self.origin) / self._step - 1e-9))
        try:
            while self._phase_of:
                self._planned = j
                due = self._due(j)
                delay = due - AIM_EARLY_S - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.monotonic()
                self._late.add(now - due)
                self._tick_phase(j % self.phases, now)
                self._ticks += 1
                # Steps more than half a period late are given up, never caught up.
                late_limit = time.monotonic() - self.period / 2 - self.origin
                oldest = math.ceil(late_limit / self._step)
                self._count_skipped(j + 1, oldest)
                j = self._next_step(max(j + 1, oldest))
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def _tick_phase(self, phase: int, now: float) -> None:
        started = time.perf_counter()
        pending: list[ClockedStream] = []
        # A copy: a stream may stop (and unregister) from inside its own tick.
        for stream in list(self._streams[phase]):
            try:
                if stream.tick(now):
                    pending.append(stream)
            except Exception:
                # One broken stream must not silence every other one on this clock.
                logger.exception("stream %r failed in tick; unregistered", stream)
                self.unregister(stream)
            if len(pending) >= SEND_BATCH:
                self._flush(pending)
        self._flush(pending)
        self._work.add(time.perf_counter() - started)

    def _flush(self, pending: list[ClockedStream]) -> None:
        for stream in pending:
            try:
                stream.flush()
            except Exception:
                logger.exception("stream %r failed in flush; unregistered", stream)
                self.unregister(stream)
        pending.clear()
