"""Opus packets that a WebRTC track sends as the upstream coded them (Opus passthrough).

The track's playout buffer schedules audio by its duration: it does not care what the audio
is. A passthrough turn gives it the duration of each run of packets as a span of constant silent
PCM (a shared, immutable ``bytes`` per length, kept by reference, never coded) and keeps the
packets here, keyed by their place on the context's timeline. When the buffer
hands out the frame that starts at ``media_ms``, the packets that start inside that frame go
out instead of an encode: one for a 20 ms packet, two for 10 ms packets, none in the second
slot of a 40 ms packet. So prebuffering, underruns, stalls, DTX between turns, barge-in and
the played position work exactly as on the encode path, from the same numbers.
"""

from __future__ import annotations

from collections import deque
from typing import TypeAlias

from voxgate.codecs.opus_packets import timeline_bytes
from voxgate.codecs.output_format import OPUS_CLOCK_RATE

# A packet starting this close to a frame's end is that frame's neighbour's, not its own.
_EDGE_MS = 1e-6
# Span lengths kept for reuse: runs come in a few lengths (the session's 100 ms pieces).
_SPANS_KEPT = 32


# (payload, 48 kHz samples it spans, where it starts and where it ends on its context's
# timeline, ms): what ``PacketQueue.take`` hands out, made as the packet leaves.
QueuedPacket: TypeAlias = tuple[bytes, int, float, float]


class _Packets:
    """One context's queued packets, field by field: deques of bytes and numbers only.

    Nothing in them is an object the garbage collector tracks. A tuple (or an instance)
    per packet would be: a hundred per stream (two seconds of audio) stay queued, all of
    them young, and a collection of the youngest generation walks every one. With 240
    streams in a process that made it walk some 30,000 objects, 12-19 ms with every stream
    of the process waiting (``bench/webrtc.py``, the young generation printed per sender).
    """

    __slots__ = ("payloads", "samples", "starts")

    def __init__(self) -> None:
        self.payloads: deque[bytes] = deque()
        self.samples: deque[int] = deque()
        self.starts: deque[float] = deque()  # ms on the context's timeline


class PacketQueue:
    """The packets of each passthrough context, in timeline order, and their spans."""

    def __init__(self, sample_rate: int) -> None:
        self.rate = sample_rate
        self._spans: dict[int, bytes] = {}
        self._contexts: dict[str, _Packets] = {}

    def span(self, samples: int) -> bytes:
        """The silent PCM that stands for packets of ``samples`` in the playout buffer."""
        span = self._spans.get(samples)
        if span is None:
            span = bytes(timeline_bytes(samples, self.rate))
            if len(self._spans) < _SPANS_KEPT:
                self._spans[samples] = span
        return span

    def add(self, context_id: str, payload: bytes, samples: int, media_ms: float) -> float:
        """Queue a packet of ``context_id`` that starts at ``media_ms``; returns its end."""
        queue = self._contexts.get(context_id)
        if queue is None:
            queue = self._contexts[context_id] = _Packets()
        queue.payloads.append(payload)
        queue.samples.append(samples)
        queue.starts.append(media_ms)
        return media_ms + samples * 1000 / OPUS_CLOCK_RATE

    def passes(self, context_id: str | None) -> bool:
        """Whether ``context_id`` has packets still to send: its audio in the buffer stands
        for them. (The last slot of a packet longer than a frame has none left to start;
        the track sends nothing there, as the packet covers it.)"""
        return context_id in self._contexts

    def take(self, context_id: str, start_ms: float, frame_ms: float) -> list[QueuedPacket]:
        """The packets that start in the frame at ``start_ms``, in order."""
        queue = self._contexts[context_id]
        starts = queue.starts
        end = start_ms + frame_ms - _EDGE_MS
        taken: list[QueuedPacket] = []
        while starts and starts[0] < end:
            media_ms, samples = starts.popleft(), queue.samples.popleft()
            end_ms = media_ms + samples * 1000 / OPUS_CLOCK_RATE
            taken.append((queue.payloads.popleft(), samples, media_ms, end_ms))
        if not starts:
            del self._contexts[context_id]
        return taken

    def drop(self, context_id: str | None = None) -> None:
        """Barge-in: forget the packets of one context, or of all."""
        if context_id is None:
            self._contexts.clear()
        else:
            self._contexts.pop(context_id, None)
