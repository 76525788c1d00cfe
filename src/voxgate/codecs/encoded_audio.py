"""Encoded payloads, numbered and placed on their format's clock.

Every encoder stamps its output through one ``PacketClock``: ``seq`` counts payloads and
``timestamp`` counts clock ticks of the audio emitted so far, both modulo 2**32 as RTP
carries them. Only audio that is emitted advances the clock, so timestamps run without gaps
and never go backwards, whatever is flushed or dropped in between.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voxgate.errors import AudioError

WRAP = 2**32


@dataclass(frozen=True, slots=True)
class EncodedAudio:
    """One payload for a sink: a packet, a frame, Ogg pages or raw PCM."""

    data: bytes
    seq: int  # +1 per payload of one encoder, modulo 2**32
    timestamp: int  # clock tick of the payload's first sample, modulo 2**32
    ticks: int  # audio carried, in clock ticks: the next timestamp is timestamp + ticks
    duration_ms: float  # the same, in milliseconds


class PacketClock:
    """Numbers payloads and counts the ticks of audio they carry on a ``rate`` Hz clock."""

    def __init__(self, rate: int, *, seq: int = 0, timestamp: int = 0) -> None:
        self.rate = rate
        self._seq = seq
        self._position = timestamp

    def stamp(self, data: bytes, ticks: int) -> EncodedAudio:
        audio = EncodedAudio(
            data=data,
            seq=self._seq % WRAP,
            timestamp=self._position % WRAP,
            ticks=ticks,
            duration_ms=ticks * 1000 / self.rate,
        )
        self._seq += 1
        self._position += ticks
        return audio


def pcm_samples(pcm: bytes) -> npt.NDArray[np.int16]:
    """A zero-copy read-only view of mono s16le bytes; half a sample is a caller's bug."""
    if len(pcm) % 2:
        raise AudioError(
            f"PCM must be whole 16-bit samples, got {len(pcm)} bytes", code="bad_pcm_length"
        )
    return np.frombuffer(pcm, dtype="<i2")
