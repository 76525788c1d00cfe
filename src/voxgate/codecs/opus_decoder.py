"""Opus packets back to PCM: the fallback for a sink that needs PCM when a turn came as Opus.

A turn passes Opus through when every sink took Opus as it began (see
``voxgate.codecs.opus_packets``). If a sink that needs PCM takes over half way (a phone call
attaches, a WebRTC peer leaves a PCM socket), the rest of that turn is decoded here, once
per turn, and goes on as PCM at the session rate; the next turn is fetched as PCM.
"""

from __future__ import annotations

import av
import numpy as np

from voxgate.codecs.opus_packets import OpusRun
from voxgate.codecs.output_format import OPUS_CLOCK_RATE
from voxgate.codecs.resampling import StreamResampler
from voxgate.errors import AudioError


class OpusDecoder:
    """Opus packets of one stream to mono s16le PCM at ``sample_rate``."""

    def __init__(self, sample_rate: int) -> None:
        self._codec = av.CodecContext.create("libopus", "r")
        assert isinstance(self._codec, av.AudioCodecContext)
        self._codec.sample_rate = OPUS_CLOCK_RATE
        self._codec.layout = "mono"  # libopus down-mixes a stereo stream
        self._resampler = StreamResampler(OPUS_CLOCK_RATE, sample_rate)

    def decode(self, run: OpusRun) -> bytes:
        """The PCM of ``run`` (less the few samples the resampler holds, see ``flush``)."""
        pieces = []
        try:
            for packet in run.packets:
                for frame in self._codec.decode(av.Packet(packet)):
                    pieces.append(np.ascontiguousarray(frame.to_ndarray(), dtype="<i2").tobytes())
        except av.FFmpegError as exc:
            raise AudioError(f"undecodable Opus packet: {exc}", code="invalid_opus") from exc
        return self._resampler.push(b"".join(pieces))

    def flush(self) -> bytes:
        """What the resampler still holds, at the end of the turn."""
        return self._resampler.drain()
