"""Upstream PCM in any rate and channel count becomes mono s16 at the internal rate."""

from __future__ import annotations

import numpy as np
import pytest

from voxgate.codecs.normalise import PcmNormaliser
from voxgate.upstream.pcm import PcmChunk


def tone(freq: float, rate: int, seconds: float, channels: int = 1) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    mono = (np.sin(2 * np.pi * freq * t) * 12000).astype("<i2")
    return np.repeat(mono, channels).astype("<i2").tobytes()


def dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def test_internal_format_passes_through_untouched() -> None:
    data = tone(440, 24000, 0.1)
    normaliser = PcmNormaliser(24000)
    assert normaliser.push(PcmChunk(data, 24000)) is data
    assert normaliser.flush() == b""


@pytest.mark.parametrize(("rate", "channels"), [(22050, 1), (16000, 1), (48000, 2), (44100, 2)])
def test_resampled_in_pieces_keeps_length_and_pitch(rate: int, channels: int) -> None:
    data = tone(440, rate, 1.0, channels)
    normaliser = PcmNormaliser(24000)
    frame = 2 * channels
    # Deltas of an odd number of frames, as an upstream sends them.
    step = 997 * frame
    out = b"".join(
        normaliser.push(PcmChunk(data[i : i + step], rate, channels))
        for i in range(0, len(data), step)
    )
    out += normaliser.flush()
    assert abs(len(out) // 2 - 24000) <= 2
    assert dominant_hz(out, 24000) == pytest.approx(440, abs=2)
    # No click at the seams: the signal stays a smooth sine (no sample jumps near full scale).
    samples = np.frombuffer(out, dtype="<i2").astype(np.int32)
    assert np.max(np.abs(np.diff(samples[100:-100]))) < 2000


def test_format_change_mid_stream_flushes_the_old_filter() -> None:
    normaliser = PcmNormaliser(24000)
    first = normaliser.push(PcmChunk(tone(300, 16000, 0.5), 16000))
    second = normaliser.push(PcmChunk(tone(300, 24000, 0.5), 24000))
    total = len(first + second + normaliser.flush()) // 2
    assert abs(total - 24000) <= 2
