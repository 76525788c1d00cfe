"""Upstream PCM to voxgate's one internal format: signed 16-bit mono at one sample rate.

Each upstream stream gets its own ``PcmNormaliser``, so the resampler's filter state runs
across delta boundaries (resampling deltas one by one from scratch would click at every
seam). Audio already in the internal format passes through without a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from voxgate.errors import AudioError
from voxgate.upstream.pcm import PcmChunk

INTERNAL_SAMPLE_RATE = 24000


@dataclass(frozen=True, slots=True)
class InternalFormat:
    sample_rate: int = INTERNAL_SAMPLE_RATE

    def samples_to_ms(self, samples: int) -> float:
        return samples * 1000 / self.sample_rate

    def bytes_for_ms(self, ms: float) -> int:
        return 2 * round(ms * self.sample_rate / 1000)


class PcmNormaliser:
    """``push(chunk) -> bytes`` of mono s16le at ``rate``; ``flush()`` at the end of a stream."""

    def __init__(self, rate: int = INTERNAL_SAMPLE_RATE) -> None:
        self.rate = rate
        self._resampler: av.AudioResampler | None = None
        self._source: tuple[int, int] | None = None

    def push(self, chunk: PcmChunk) -> bytes:
        if not chunk.data:
            return b""
        source = (chunk.sample_rate, chunk.channels)
        if self._source is not None and source != self._source:
            # A WAV header mid-stream changed the format: finish the old filter first.
            tail = self.flush()
            return tail + self.push(chunk)
        self._source = source
        if source == (self.rate, 1):
            return chunk.data
        return self._resample(chunk)

    def flush(self) -> bytes:
        if self._resampler is None:
            self._source = None
            return b""
        out = b"".join(_bytes(f) for f in self._resampler.resample(None))
        self._resampler = None
        self._source = None
        return out

    def _resample(self, chunk: PcmChunk) -> bytes:
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
        samples = np.frombuffer(chunk.data, dtype="<i2").reshape(1, -1)
        layout = "mono" if chunk.channels == 1 else "stereo" if chunk.channels == 2 else None
        if layout is None:
            raise AudioError(f"cannot mix down {chunk.channels} channels", code="bad_channels")
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout=layout)
        frame.sample_rate = chunk.sample_rate
        return b"".join(_bytes(f) for f in self._resampler.resample(frame))


def _bytes(frame: av.AudioFrame) -> bytes:
    return bytes(frame.to_ndarray().astype("<i2", copy=False).tobytes())
