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
from dataclasses import dataclass

from voxgate.codecs.opus_packets import timeline_bytes
from voxgate.codecs.output_format import OPUS_CLOCK_RATE

# A packet starting this close to a frame's end is that frame's neighbour's, not its own.
_EDGE_MS = 1e-6
# Span lengths kept for reuse: runs come in a few lengths (the session's 100 ms pieces).
_SPANS_KEPT = 32


@dataclass(slots=True, eq=False)  # one per packet; not frozen, as playout.Frame
class QueuedPacket:
    payload: bytes
    samples: int  # 48 kHz samples it spans
    media_ms: float  # where it starts on its context's timeline

    @property
    def end_ms(self) -> float:
        return self.media_ms + self.samples * 1000 / OPUS_CLOCK_RATE


class PacketQueue:
    """The packets of each passthrough context, in timeline order, and their spans."""

    def __init__(self, sample_rate: int) -> None:
        self.rate = sample_rate
        self._spans: dict[int, bytes] = {}
        self._contexts: dict[str, deque[QueuedPacket]] = {}

    def span(self, samples: int) -> bytes:
        """The silent PCM that stands for packets of ``samples`` in the playout buffer."""
        span = self._spans.get(samples)
        if span is None:
            span = bytes(timeline_bytes(samples, self.rate))
            if len(self._spans) < _SPANS_KEPT:
                self._spans[samples] = span
        return span

    def add(self, context_id: str, packet: QueuedPacket) -> None:
        self._contexts.setdefault(context_id, deque()).append(packet)

    def passes(self, context_id: str | None) -> bool:
        """Whether ``context_id`` has packets still to send: its audio in the buffer stands
        for them. (The last slot of a packet longer than a frame has none left to start;
        the track sends nothing there, as the packet covers it.)"""
        return context_id in self._contexts

    def take(self, context_id: str, start_ms: float, frame_ms: float) -> list[QueuedPacket]:
        """The packets that start in the frame at ``start_ms``, in order."""
        queue = self._contexts[context_id]
        end = start_ms + frame_ms - _EDGE_MS
        taken: list[QueuedPacket] = []
        while queue and queue[0].media_ms < end:
            taken.append(queue.popleft())
        if not queue:
            del self._contexts[context_id]
        return taken

    def drop(self, context_id: str | None = None) -> None:
        """Barge-in: forget the packets of one context, or of all."""
        if context_id is None:
            self._contexts.clear()
        else:
            self._contexts.pop(context_id, None)
