"""G.711 mu-law at 8 kHz in exact 20 ms frames, as telephony bridges take it.

Twilio Media Streams and RTP PCMU both expect a steady 20 ms cadence, so the encoder emits
160-byte frames only and holds back the remainder; ``flush`` pads the last frame with
mu-law silence rather than sending a short one.

The code table is built once for all 65536 input values, so encoding is one numpy gather.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from voxgate.codecs.encoded_audio import EncodedAudio, PacketClock, pcm_samples
from voxgate.codecs.output_format import OutputFormat
from voxgate.codecs.resampling import StreamResampler

MULAW_RATE = 8000
FRAME_BYTES = MULAW_RATE * 20 // 1000  # one byte a sample
SILENCE = 0xFF  # the code of +0


def _levels() -> npt.NDArray[np.int32]:
    """The 128 non-negative reconstruction levels of G.711 mu-law, in 14-bit units.

    A 7-bit magnitude code holds a segment (3 bits) and a step (4 bits); the level is
    ((2 * step + 33) << segment) - 33, which rises strictly with the code.
    """
    code = np.arange(128, dtype=np.int32)
    segment, step = code >> 4, code & 0x0F
    return ((2 * step + 33) << segment) - 33


def _encode_table() -> npt.NDArray[np.uint8]:
    """Mu-law byte for every s16 value, indexed by the value's bits read as uint16.

    G.711 takes 14-bit input, so the two low bits go first; the magnitude is then rounded
    to the nearest level (halfway goes outwards), the sign set, and all bits inverted as
    the standard transmits them. This is the same quantiser FFmpeg's pcm_mulaw uses.
    """
    values = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32) >> 2
    levels = _levels()
    midpoints = (levels[1:] + levels[:-1]) / 2
    magnitude_code = np.searchsorted(midpoints, np.abs(values), side="right")
    sign_bit = np.where(values < 0, 0x80, 0x00)
    table: npt.NDArray[np.uint8] = (0xFF ^ (sign_bit | magnitude_code)).astype(np.uint8)
    return table


_TABLE = _encode_table()


def mulaw_encode(samples: npt.NDArray[np.int16]) -> bytes:
    """Mu-law bytes of s16 samples (any sample rate; G.711 proper is 8 kHz)."""
    return _TABLE[samples.view(np.uint16)].tobytes()


class MulawEncoder:
    """Mono s16le at ``input_rate`` to 20 ms mu-law frames at 8 kHz."""

    def __init__(self, fmt: OutputFormat, input_rate: int) -> None:
        self.format = fmt
        self._resampler = StreamResampler(input_rate, MULAW_RATE)
        self._clock = PacketClock(MULAW_RATE)
        self._pending = bytearray()  # mu-law bytes of a frame not yet complete

    def encode(self, pcm: bytes) -> list[EncodedAudio]:
        pcm_samples(pcm)  # reject half samples before the filter sees them
        return self._frames(self._resampler.push(pcm))

    def flush(self) -> list[EncodedAudio]:
        """Everything held back, the last frame padded with silence to 20 ms."""
        frames = self._frames(self._resampler.drain())
        if self._pending:
            self._pending += bytes([SILENCE]) * (FRAME_BYTES - len(self._pending))
            frames += self._frames(b"")
        return frames

    def reset(self) -> None:
        """Drop the partial frame and the filter's history; the clock does not advance."""
        self._pending.clear()
        self._resampler.drop()

    def _frames(self, pcm: bytes) -> list[EncodedAudio]:
        self._pending += mulaw_encode(pcm_samples(pcm))
        whole = len(self._pending) - len(self._pending) % FRAME_BYTES
        frames = [
            self._clock.stamp(bytes(self._pending[i : i + FRAME_BYTES]), FRAME_BYTES)
            for i in range(0, whole, FRAME_BYTES)
        ]
        del self._pending[:whole]
        return frames
