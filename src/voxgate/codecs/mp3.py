"""MP3 (libmp3lame via PyAV): a continuous stream of frames whose concatenation plays.

Each payload is one MP3 frame (576 samples at 16/24 kHz, 1152 at 48 kHz), constant bitrate
so players can size and seek the headerless stream. MP3 is not a low-latency format: an
input sample leaves LAME 120-140 ms later at 24 kHz (measured; 145-175 ms at 16 kHz,
100-145 ms at 48 kHz): its 1105-sample encoder delay plus the three or four frames it
buffers for its psychoacoustic analysis. Nothing short of draining gets that audio out.

So ``flush`` drains LAME and starts a fresh encoder for the next turn; frames of successive
encoders concatenate into a valid stream (a new encoder's first frame uses no bit-reservoir
bytes from before), and the decoder hears LAME's start-up delay as ~46 ms of silence
between turns. ``reset`` discards the encoder with everything it holds.
"""

from __future__ import annotations

from typing import Any

import av

from voxgate.codecs.encoded_audio import EncodedAudio, PacketClock, pcm_samples
from voxgate.codecs.output_format import OutputFormat
from voxgate.codecs.resampling import StreamResampler


def open_lame(fmt: OutputFormat) -> av.AudioCodecContext:
    codec = av.CodecContext.create("libmp3lame", "w")
    codec.sample_rate = fmt.sample_rate
    codec.layout = "mono"
    codec.format = "s16p"
    codec.bit_rate = fmt.bitrate or 0  # a bitrate and no quality scale: CBR
    codec.open()
    return codec


class Mp3Encoder:
    """Mono s16le at ``input_rate`` to MP3 frames at ``fmt.sample_rate``."""

    def __init__(self, fmt: OutputFormat, input_rate: int) -> None:
        self.format = fmt
        self._resampler = StreamResampler(input_rate, fmt.sample_rate)
        self._codec = open_lame(fmt)
        self._clock = PacketClock(fmt.sample_rate)
        self._fed = False  # has the current encoder had any audio?

    def encode(self, pcm: bytes) -> list[EncodedAudio]:
        pcm_samples(pcm)
        return self._encode(self._resampler.push(pcm))

    def flush(self) -> list[EncodedAudio]:
        """Every frame LAME holds, the last one padded; the next turn gets a new encoder."""
        frames = self._encode(self._resampler.drain())
        if not self._fed:
            return frames
        frames += self._stamped(self._codec.encode(None))
        self._codec = open_lame(self.format)
        self._fed = False
        return frames

    def reset(self) -> None:
        """Drop what LAME and the resampler hold; the clock does not advance."""
        self._resampler.drop()
        if self._fed:
            self._codec = open_lame(self.format)
            self._fed = False

    def _encode(self, pcm: bytes) -> list[EncodedAudio]:
        if not pcm:
            return []
        # Any length goes in: PyAV re-cuts the input into LAME's frame size itself.
        frame = av.AudioFrame.from_ndarray(
            pcm_samples(pcm).reshape(1, -1), format="s16p", layout="mono"
        )
        frame.sample_rate = self.format.sample_rate
        self._fed = True
        return self._stamped(self._codec.encode(frame))

    def _stamped(self, packets: list[av.Packet[Any]]) -> list[EncodedAudio]:
        # A decoder outputs a whole frame for every packet, the last one included.
        size = self._codec.frame_size
        return [self._clock.stamp(bytes(p), size) for p in packets]
