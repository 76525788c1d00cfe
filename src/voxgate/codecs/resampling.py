"""A rate converter for one stream of mono s16le PCM, fed in pieces of any size.

One libswresample filter (through ``av.AudioResampler``) runs across ``push`` calls, so
piece boundaries leave no seam: the output is sample-for-sample what resampling the whole
stream at once gives. The filter holds back a few samples of history; ``drain`` lets them
out at the end of a turn and ``drop`` forgets them on barge-in.
"""

from __future__ import annotations

import av
import numpy as np

from voxgate.codecs.encoded_audio import pcm_samples


class StreamResampler:
    def __init__(self, source_rate: int, target_rate: int) -> None:
        self.source_rate = source_rate
        self.target_rate = target_rate
        self._filter: av.AudioResampler | None = None

    @property
    def passthrough(self) -> bool:
        return self.source_rate == self.target_rate

    def push(self, pcm: bytes) -> bytes:
        """The output that is ready; the very same object when no conversion is needed."""
        if self.passthrough or not pcm:
            return pcm
        if self._filter is None:
            self._filter = av.AudioResampler(format="s16", layout="mono", rate=self.target_rate)
        frame = av.AudioFrame.from_ndarray(
            pcm_samples(pcm).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.source_rate
        return _joined(self._filter.resample(frame))

    def drain(self) -> bytes:
        """End of a stream: the held-back tail. The next ``push`` starts a fresh filter."""
        if self._filter is None:
            return b""
        tail = _joined(self._filter.resample(None))
        self._filter = None  # a drained filter graph is at EOF and takes no more input
        return tail

    def drop(self) -> None:
        """Forget the held-back samples: none of them will ever come out."""
        self._filter = None


def _joined(frames: list[av.AudioFrame]) -> bytes:
    return b"".join(f.to_ndarray().astype(np.dtype("<i2"), copy=False).tobytes() for f in frames)
