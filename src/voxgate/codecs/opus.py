"""Opus: one 20 ms packet per payload, on the 48 kHz RTP clock, from libopus via PyAV.

Decisions, and why:

* libopus is fed the internal 24 kHz directly (it codes natively at 8/12/16/24/48 kHz), so
  nothing is resampled; the clock stays 48 kHz as RFC 7587 requires: 960 ticks a packet.
* ``application=voip``: the content is always speech, and VOIP mode is libopus' setting
  for the best voice quality at a given bitrate (SILK/hybrid at voice bitrates, speech
  tuning). Its algorithmic delay is the same 6.5 ms as ``audio``; ``restricted_lowdelay``
  would save 4 ms but drops SILK, which costs more quality at 32 kbit/s than it is worth.
* We cut exact 20 ms frames ourselves and hand each to the codec at once. FFmpeg's libopus
  wrapper answers every frame with its packet in the same call (no frame queue), so a
  packet leaves as soon as its 20 ms of input exist; PyAV's frame-size filter in front of
  the codec passes exact frames straight through. The only delay is libopus' own
  lookahead (6.5 ms, the Ogg pre-skip), which is inside each packet, not extra latency.
* That lookahead means the last 6.5 ms of input sit inside libopus after their frame is
  coded. ``flush`` pads the partial frame with silence and, if real audio is still in the
  lookahead, codes one more silent frame, so a turn's end always reaches the listener.
  The encoder is never drained (a drained FFmpeg encoder cannot take more input), so one
  libopus state runs through every turn, as an RTP receiver's decoder expects.
* ``passthrough`` takes packets coded upstream (Opus passthrough, see
  ``voxgate.codecs.opus_packets``) and only stamps them; libopus is not involved.
* ``reset`` (barge-in) replaces the libopus state: its lookahead holds audio from before
  the interrupt that must not come out later. The clock does not advance for dropped
  audio; the next packet's timestamp is the previous one's plus 960.
"""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt

from voxgate.codecs.encoded_audio import EncodedAudio, PacketClock, pcm_samples
from voxgate.codecs.opus_packets import OpusRun
from voxgate.codecs.output_format import OPUS_CLOCK_RATE, OutputFormat
from voxgate.errors import AudioError

LIBOPUS_RATES = (8000, 12000, 16000, 24000, 48000)
PACKET_MS = 20
PACKET_TICKS = OPUS_CLOCK_RATE * PACKET_MS // 1000  # 960
APPLICATION = "voip"


def open_libopus(fmt: OutputFormat, input_rate: int) -> av.AudioCodecContext:
    """A libopus encoder for mono s16 at ``input_rate`` with ``fmt``'s settings."""
    if input_rate not in LIBOPUS_RATES:
        raise AudioError(
            f"libopus cannot take {input_rate} Hz input; one of {LIBOPUS_RATES}",
            code="unsupported_sample_rate",
        )
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = input_rate
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = fmt.bitrate or 0
    codec.options = {
        "application": APPLICATION,
        "frame_duration": str(PACKET_MS),
        "compression_level": str(fmt.complexity),  # libopus' complexity
    }
    codec.open()
    return codec


class OpusEncoder:
    """Mono s16le at ``input_rate`` to raw Opus packets of exactly 20 ms each."""

    def __init__(self, fmt: OutputFormat, input_rate: int) -> None:
        self.format = fmt
        self._rate = input_rate
        self._codec = open_libopus(fmt, input_rate)
        self._frame_samples = input_rate * PACKET_MS // 1000
        self._lookahead = self.pre_skip * input_rate // OPUS_CLOCK_RATE
        self._clock = PacketClock(OPUS_CLOCK_RATE)
        self._pending = b""  # less than one frame of input
        self._held_real = 0  # input samples of real audio inside libopus' lookahead

    @property
    def opus_head(self) -> bytes:
        """The RFC 7845 identification header libopus wrote for this stream."""
        return bytes(self._codec.extradata or b"")

    @property
    def pre_skip(self) -> int:
        """Encoder delay at 48 kHz: the decoder drops this many samples at the start."""
        return int.from_bytes(self.opus_head[10:12], "little")

    def encode(self, pcm: bytes) -> list[EncodedAudio]:
        pcm_samples(pcm)
        data = self._pending + pcm if self._pending else pcm
        frame_bytes = 2 * self._frame_samples
        whole = len(data) - len(data) % frame_bytes
        self._pending = data[whole:]
        frames = np.frombuffer(data, dtype="<i2", count=whole // 2)
        return self._encode_frames(frames.reshape(-1, self._frame_samples))

    def flush(self) -> list[EncodedAudio]:
        """Everything held back: the partial frame, padded, and libopus' lookahead."""
        packets: list[EncodedAudio] = []
        if self._pending:
            real = len(self._pending) // 2
            frame = np.zeros(self._frame_samples, dtype=np.int16)
            frame[:real] = pcm_samples(self._pending)
            self._pending = b""
            packets += self._encode_frame(frame, real)
        if self._held_real:
            packets += self._encode_frame(np.zeros(self._frame_samples, dtype=np.int16), 0)
        return packets

    def passthrough(self, run: OpusRun) -> list[EncodedAudio]:
        """Packets the upstream coded, stamped as they are (each advances the clock by the
        samples it spans); nothing is decoded or coded. PCM held back goes out first."""
        held = self.flush() if self._pending or self._held_real else []
        stamp = self._clock.stamp
        return held + [stamp(p, n) for p, n in zip(run.packets, run.samples, strict=True)]

    def reset(self) -> None:
        """Drop the partial frame and libopus' lookahead; timestamps carry on from the
        last packet emitted."""
        self._pending = b""
        if self._held_real:
            self._codec = open_libopus(self.format, self._rate)
            self._held_real = 0

    def _encode_frames(self, frames: npt.NDArray[np.int16]) -> list[EncodedAudio]:
        packets: list[EncodedAudio] = []
        for frame in frames:
            packets += self._encode_frame(frame, self._frame_samples)
        return packets

    def _encode_frame(self, samples: npt.NDArray[np.int16], real: int) -> list[EncodedAudio]:
        """Code one 20 ms frame whose first ``real`` samples are audio, the rest padding."""
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        packets = self._codec.encode(frame)
        # The frame's last `lookahead` samples stay inside libopus until the next frame.
        self._held_real = max(0, real - (self._frame_samples - self._lookahead))
        return [self._clock.stamp(bytes(p), PACKET_TICKS) for p in packets]
