"""Queued audio must not add objects for the garbage collector to walk.

A young collection walks every tracked object allocated since the last one that is still
alive. Audio waits in queues for seconds, a hundred packets a stream: held as tuples, it
made each young collection walk tens of thousands of objects with a few hundred streams in
a process (12-19 ms, every stream of the process late). Held as bytes and numbers in
deques, queueing adds only the deques themselves.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from voxgate.codecs.playout import PlayoutBuffer, PlayoutOptions
from voxgate.gateway.webrtc.passthrough import PacketQueue

QUEUED = 1000


@contextmanager
def young_objects_added() -> Iterator[Callable[[], int]]:
    """How many tracked objects of the youngest generation the block left alive."""
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects(0))
        yield lambda: len(gc.get_objects(0)) - before
    finally:
        gc.enable()


def test_queued_passthrough_packets_are_not_tracked() -> None:
    queue = PacketQueue(24000)
    with young_objects_added() as added:
        media_ms = 0.0
        for i in range(QUEUED):
            media_ms = queue.add(f"ctx{i % 2}", bytes([i % 256]) * 60, 960, media_ms)
        grown = added()
    assert grown < 16, f"{QUEUED} queued packets left {grown} tracked objects"
    # And they come out whole, in order.
    taken = queue.take("ctx0", 0.0, 20.0)
    assert [(len(p), n, start, end) for p, n, start, end in taken] == [(60, 960, 0.0, 20.0)]


def test_queued_pcm_pieces_are_not_tracked() -> None:
    options = PlayoutOptions()
    buffer = PlayoutBuffer(options, start=0.0)
    piece = bytes(options.frame_bytes)  # a whole frame: pieces this size are never merged
    with young_objects_added() as added:
        for i in range(QUEUED // 10):
            buffer.push(piece, 0.0, context_id="turn", media_ms=i * float(options.frame_ms))
        grown = added()
    assert buffer.buffered_ms == QUEUED // 10 * options.frame_ms
    assert grown < 16, f"{QUEUED // 10} queued pieces left {grown} tracked objects"
