"""Per-sink encoders: the session's PCM in, payloads in the format the client chose out.

    fmt = OutputFormat.parse("opus", bitrate=24000)
    encoder = make_encoder(fmt)              # input: mono s16le at 24 kHz
    for piece in audio_out_pcm_pieces:       # any length, even one sample
        send_all(encoder.encode(piece))      # whatever is ready, at once
    send_all(encoder.flush())                # end of the turn: nothing held back
    encoder.reset()                          # barge-in: held-back audio never comes out

Every encoder is pure (bytes in, payloads out, no I/O, no wall clock) and keeps one
``PacketClock``: ``seq`` +1 per payload, ``timestamp`` advancing by exactly the ticks each
payload carries. ``flush`` padding counts as audio (it is sent); audio dropped by ``reset``
does not, so the next payload continues the clock from the last one sent and timestamps
never go backwards. A sink that wants wall-clock gaps (RTP after a silence) adds its own
offset; with the playout buffer in front, audio reaches the encoder gap-free anyway.

What each encoding holds back between calls, and so what ``flush`` emits:

    pcm_s16le  a few samples of resampler history (nothing at 24 kHz: pass-through)
    mulaw      resampler history and the partial 20 ms frame (padded with silence)
    opus       the partial 20 ms frame (padded) and libopus' 6.5 ms lookahead
    ogg_opus   as opus; pages are written as soon as their packets exist
    mp3        resampler history and the 3-4 frames LAME buffers (120-140 ms at 24 kHz)
"""

from __future__ import annotations

from typing import Protocol

from voxgate.codecs.encoded_audio import EncodedAudio, PacketClock, pcm_samples
from voxgate.codecs.mp3 import Mp3Encoder
from voxgate.codecs.mulaw import MulawEncoder
from voxgate.codecs.normalise import INTERNAL_SAMPLE_RATE
from voxgate.codecs.ogg import OggOpusEncoder
from voxgate.codecs.opus import OpusEncoder
from voxgate.codecs.output_format import FORMAT_NAMES, OutputFormat
from voxgate.codecs.resampling import StreamResampler
from voxgate.errors import AudioError

__all__ = [
    "FORMAT_NAMES",
    "EncodedAudio",
    "Encoder",
    "Mp3Encoder",
    "MulawEncoder",
    "OggOpusEncoder",
    "OpusEncoder",
    "OutputFormat",
    "PcmEncoder",
    "make_encoder",
]


class Encoder(Protocol):
    """Mono s16le PCM at the input rate in, ``fmt``-encoded payloads out."""

    format: OutputFormat

    def encode(self, pcm: bytes) -> list[EncodedAudio]:
        """Take any number of whole samples; return the payloads that are complete."""
        ...

    def flush(self) -> list[EncodedAudio]:
        """End of a turn: return everything held back. The stream goes on afterwards."""
        ...

    def reset(self) -> None:
        """Barge-in: forget everything held back; none of it will ever be emitted."""
        ...


class PcmEncoder:
    """Mono s16le at ``input_rate`` to mono s16le at ``fmt.sample_rate``, pieces of any size.

    At the input rate a piece passes through as the very bytes object it came in.
    """

    def __init__(self, fmt: OutputFormat, input_rate: int) -> None:
        self.format = fmt
        self._resampler = StreamResampler(input_rate, fmt.sample_rate)
        self._clock = PacketClock(fmt.sample_rate)

    def encode(self, pcm: bytes) -> list[EncodedAudio]:
        pcm_samples(pcm)
        return self._stamped(self._resampler.push(pcm))

    def flush(self) -> list[EncodedAudio]:
        return self._stamped(self._resampler.drain())

    def reset(self) -> None:
        self._resampler.drop()

    def _stamped(self, pcm: bytes) -> list[EncodedAudio]:
        return [self._clock.stamp(pcm, len(pcm) // 2)] if pcm else []


def make_encoder(fmt: OutputFormat, input_rate: int = INTERNAL_SAMPLE_RATE) -> Encoder:
    """A fresh encoder for ``fmt`` fed mono s16le at ``input_rate`` Hz.

    Opus takes 8, 12, 16, 24 or 48 kHz input as is; other encodings resample any rate.
    """
    if input_rate <= 0:
        raise AudioError(f"input rate must be positive, not {input_rate}", code="bad_rate")
    if fmt.encoding == "pcm_s16le":
        return PcmEncoder(fmt, input_rate)
    if fmt.encoding == "mulaw":
        return MulawEncoder(fmt, input_rate)
    if fmt.encoding == "opus":
        return OpusEncoder(fmt, input_rate)
    if fmt.encoding == "ogg_opus":
        return OggOpusEncoder(fmt, input_rate)
    return Mp3Encoder(fmt, input_rate)
