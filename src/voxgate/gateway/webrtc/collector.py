"""Keeps CPython's full garbage collections off the live WebRTC peers' objects.

A full collection walks every object the collector tracks, and the whole process waits for
it, every stream of it too. Each aiortc peer brings a few hundred objects (transports, SDP,
DTLS and ICE state) that live as long as the peer: with 120 peers in a process a full walk
took 12-17 ms, with 200 peers 50-80 ms, and CPython runs one whenever enough objects have aged
into its oldest generation, as every new peer's do (``bench/webrtc.py``; docs/webrtc.md,
"How many streams a process sends").

So, as ``voxgate serve`` already does with what its start-up built, a peer's objects are
frozen (``gc.freeze()``: moved out of every later walk, O(1)) once it is connected, a second
after, so one freeze takes the peers that connect together. Frozen objects are still freed
by reference counting when their peer closes; only what a closed peer leaves in reference
cycles waits, uncollected, for a **sweep**: ``gc.unfreeze()``, one full collection, and
``gc.freeze()`` again. A sweep runs

* a second after the last peer closed (no stream plays: it costs nobody anything), and
* otherwise once as many peers have closed since the last sweep as are live (at least
  ``MIN_SWEEP``), a second after the last of them. What waits uncollected stays about the
  size of the live peers' own garbage, and the planned pause (the same walk a CPython full
  collection makes) comes once per that many closed sessions, where CPython's own come
  each time live objects grow by a quarter.

A freeze takes every object alive, the socket sessions' too. The gateway's own objects
leave no cycle when a session ends (``tests/integration/test_freed_sessions.py``), but
its libraries' do: the socket's transport and request objects, the upstream connections,
about 140 objects a session against some 400 for a WebRTC session with its peer. So each
ended session that a freeze took counts as ``SESSION_SHARE`` of a closed peer towards the
next sweep (a WebRTC session's peer counts as well): without it, a node with few peers and
many socket sessions would keep what they left until enough peers closed.

Between sweeps CPython still runs its collections, over what is not frozen: young objects
and the process' other work, a few ms at most. Off (``VOXGATE_MEDIA_GC_FREEZE=false``), the
collector runs as CPython schedules it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import ClassVar

__all__ = ["MIN_SWEEP", "SESSION_SHARE", "MediaCollector"]

log = logging.getLogger(__name__)

MIN_SWEEP = 64  # closed peers before a sweep while others play
SESSION_SHARE = 1 / 3  # what an ended socket session leaves in cycles, against a peer
SETTLE_S = 1.0  # after a connect, the freeze waits this long for others to join it


class MediaCollector:
    """The process' policy: freeze peers once connected, sweep what closed peers left."""

    _installed: ClassVar[MediaCollector | None] = None

    def __init__(
        self,
        *,
        freeze: Callable[[], None] = gc.freeze,
        unfreeze: Callable[[], None] = gc.unfreeze,
        collect: Callable[[], int] = gc.collect,
        min_sweep: int = MIN_SWEEP,
        settle_s: float = SETTLE_S,
    ) -> None:
        self._freeze, self._unfreeze, self._collect = freeze, unfreeze, collect
        self._min_sweep = min_sweep
        self._settle_s = settle_s
        self._pending: asyncio.TimerHandle | None = None
        self._sweep_pending: asyncio.TimerHandle | None = None
        self.live = 0  # peers connected and not yet closed
        self.closed = 0  # peers closed since the last sweep
        self.ended_sessions = 0  # sessions a freeze took, ended since the last sweep
        self.freezes = 0
        self.sweeps = 0
        self.last_sweep_ms = 0.0
        self.last_swept = 0  # unreachable objects the last sweep found

    @classmethod
    def install(cls, collector: MediaCollector | None = None) -> MediaCollector:
        """Make ``collector`` (a default one) the process' policy; `voxgate serve` does."""
        cls._installed = collector or cls()
        return cls._installed

    @classmethod
    def uninstall(cls) -> None:
        cls._installed = None

    @classmethod
    def current(cls) -> MediaCollector | None:
        """The process' policy, if one is installed."""
        return cls._installed

    def connected(self) -> None:
        """A peer is up (its objects are built): freeze it, with any that join it soon."""
        self.live += 1
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self._settle_s, self._freeze_now)

    def disconnected(self) -> None:
        """A connected peer closed: what it left in cycles waits for a sweep, which comes
        a moment later (its closing still holds its objects)."""
        self.live = max(0, self.live - 1)
        self.closed += 1
        self._sweep_if(self.live == 0 or self._waiting() >= max(self._min_sweep, self.live))

    def session_ended(self, freezes_at_start: int) -> None:
        """A realtime session ended; ``freezes_at_start``: :attr:`freezes` when it began.

        If a freeze took it since, what its libraries left in cycles waits for a sweep.
        """
        if self.freezes == freezes_at_start:
            return  # never frozen: CPython's own collections free it
        self.ended_sessions += 1
        self._sweep_if(self._waiting() >= max(self._min_sweep, self.live))

    def _waiting(self) -> float:
        """What waits for a sweep, in closed peers."""
        return self.closed + self.ended_sessions * SESSION_SHARE

    def _sweep_if(self, due: bool) -> None:
        if due and self._sweep_pending is None:
            loop = asyncio.get_running_loop()
            self._sweep_pending = loop.call_later(self._settle_s, self._sweep_now)

    def _sweep_now(self) -> None:
        self._sweep_pending = None
        self.sweep()

    def sweep(self) -> None:
        """Collect what frozen objects left: unfreeze, one full collection, freeze again."""
        started = time.perf_counter()
        self._unfreeze()
        self.last_swept = self._collect()
        self._freeze()
        self.last_sweep_ms = (time.perf_counter() - started) * 1000
        self.sweeps += 1
        log.info(
            "media collector: swept after %d closed peers and %d ended sessions (%d live):"
            " %d objects in %.1f ms",
            self.closed,
            self.ended_sessions,
            self.live,
            self.last_swept,
            self.last_sweep_ms,
        )
        self.closed = self.ended_sessions = 0

    def _freeze_now(self) -> None:
        self._pending = None
        self._freeze()
        self.freezes += 1
