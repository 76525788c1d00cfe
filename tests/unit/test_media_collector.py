"""The media collector freezes peers once connected and sweeps what closed ones left."""

from __future__ import annotations

import asyncio
import gc

from voxgate.gateway.metrics import Metrics
from voxgate.gateway.webrtc.collector import MediaCollector


class Calls:
    def __init__(self) -> None:
        self.log: list[str] = []

    def collector(self, **options: object) -> MediaCollector:
        return MediaCollector(
            freeze=lambda: self.log.append("freeze"),
            unfreeze=lambda: self.log.append("unfreeze"),
            collect=lambda: self.log.append("collect") or 0,
            **options,  # type: ignore[arg-type]
        )


async def test_peers_connecting_together_are_frozen_once_after_they_settle() -> None:
    calls = Calls()
    collector = calls.collector(settle_s=0.05)
    for _ in range(3):
        collector.connected()
    assert calls.log == []  # their objects are still being built
    await asyncio.sleep(0.1)
    assert (calls.log, collector.freezes, collector.live) == (["freeze"], 1, 3)


async def test_a_sweep_comes_when_the_last_peer_closes_or_as_many_closed_as_live() -> None:
    calls = Calls()
    collector = calls.collector(min_sweep=2, settle_s=0.01)

    async def close(n: int) -> None:
        for _ in range(n):
            collector.disconnected()
        await asyncio.sleep(0.05)  # a sweep waits for the closing peers to let go

    for _ in range(6):
        collector.connected()
    await asyncio.sleep(0.05)
    calls.log.clear()  # the freeze of the six
    await close(1)
    assert calls.log == []  # 5 still live: no pause for one
    assert collector.closed == 1
    await close(2)
    # 3 closed, 3 live: the garbage waiting is as big as the live peers' own.
    assert calls.log == ["unfreeze", "collect", "freeze"]
    assert (collector.sweeps, collector.closed, collector.live) == (1, 0, 3)
    await close(1)
    assert collector.sweeps == 1  # 1 closed, 2 live
    await close(1)
    assert collector.sweeps == 2  # 2 closed (the least), 1 live
    await close(1)
    assert collector.sweeps == 3  # the last one closed: nobody plays
    assert collector.live == 0


async def test_ended_sessions_a_freeze_took_bring_a_sweep_too() -> None:
    calls = Calls()
    collector = calls.collector(min_sweep=2, settle_s=0.01)
    began = collector.freezes  # these sessions began before the peer's freeze
    collector.connected()
    await asyncio.sleep(0.05)  # frozen, with every socket session alive then
    calls.log.clear()
    for _ in range(10):  # began after the freeze: CPython's own collections free them
        collector.session_ended(collector.freezes)
    assert (collector.ended_sessions, calls.log) == (0, [])
    for _ in range(5):  # 5 / 3 of a closed peer: under the least a sweep waits for
        collector.session_ended(began)
    await asyncio.sleep(0.05)
    assert (collector.ended_sessions, calls.log) == (5, [])
    collector.session_ended(began)  # two peers' worth, one peer live
    await asyncio.sleep(0.05)
    assert calls.log == ["unfreeze", "collect", "freeze"]
    assert (collector.sweeps, collector.ended_sessions, collector.live) == (1, 0, 1)


async def test_a_real_sweep_frees_the_cycles_a_frozen_peer_left() -> None:
    class Peer:
        def __init__(self) -> None:
            self.me = self  # a cycle, as aiortc's objects hold

    frozen_before = gc.get_freeze_count()
    collector = MediaCollector(settle_s=0.01)
    peer = Peer()
    gc.freeze()
    try:
        del peer  # refcounting cannot free a cycle; a frozen one waits for the sweep
        collector.live = 1
        collector.disconnected()
        await asyncio.sleep(0.05)
        assert collector.last_swept >= 1
    finally:
        gc.unfreeze()
        if frozen_before:
            gc.freeze()


async def test_the_scrape_shows_the_collectors_sweeps() -> None:
    calls = Calls()
    collector = MediaCollector.install(calls.collector(settle_s=0.01))
    try:
        collector.connected()
        collector.connected()
        collector.disconnected()
        await asyncio.sleep(0.05)  # one closed of two: no sweep yet
        text = Metrics().render()[0].decode()
        assert "voxgate_media_gc_closed_peers 1.0" in text
        assert "voxgate_media_gc_sweeps_total 0.0" in text
        assert "# TYPE voxgate_media_gc_sweeps_total counter" in text
        collector.disconnected()
        await asyncio.sleep(0.05)
        text = Metrics().render()[0].decode()
        assert "voxgate_media_gc_sweeps_total 1.0" in text
        assert "voxgate_media_gc_closed_peers 0.0" in text
    finally:
        MediaCollector.uninstall()
