"""The engine's audio plumbing, checked with real decoders: PyAV and ffprobe."""

from __future__ import annotations

import io
import os
import wave

import numpy as np
import numpy.typing as npt
import pytest

from tests.audio_checks import decode, ffprobe
from voxgate.errors import AudioError, InvalidInput
from voxgate.upstream.engine import audio


def harmonic_tone(f0: float, seconds: float, rate: int) -> npt.NDArray[np.int16]:
    """A voice-like tone: the fundamental and four harmonics, as int16."""
    t = np.arange(int(seconds * rate)) / rate
    harmonics = np.arange(1, 6)[:, None]
    tone: npt.NDArray[np.float64] = np.sum(np.sin(2 * np.pi * f0 * harmonics * t) / harmonics, 0)
    return (tone * (12000 / float(np.max(np.abs(tone))))).astype(np.int16)


@pytest.mark.parametrize(
    ("fmt", "codec", "container"),
    [("mp3", "mp3", "mp3"), ("wav", "pcm_s16le", "wav"), ("flac", "flac", "flac"),
     ("opus", "opus", "ogg")],
)  # fmt: skip
@pytest.mark.parametrize("rate", [24000, 22050])
def test_encoded_audio_is_read_back_by_pyav_and_ffprobe(
    fmt: str, codec: str, container: str, rate: int
) -> None:
    data = audio.encode(harmonic_tone(220, 1.5, rate), rate, fmt)

    probed = ffprobe(data, fmt)
    assert (probed["codec"], probed["format"], probed["channels"]) == (codec, container, 1)
    # Ogg Opus always declares 48 kHz, whatever rate was fed to libopus.
    assert probed["sample_rate"] == (48000 if fmt == "opus" else rate)
    assert 1.4 < float(probed["duration"]) < 1.6  # type: ignore[arg-type]
    decoded = decode(data)
    assert decoded.codec.startswith(codec)  # PyAV names its decoder, e.g. "mp3float"
    assert 1.4 < decoded.duration < 1.6
    assert audio.estimate_pitch_hz(decoded.samples, decoded.sample_rate) == pytest.approx(
        220, rel=0.03
    )


def test_pcm_is_raw_little_endian_samples() -> None:
    pcm = harmonic_tone(120, 0.5, 24000)
    data = audio.encode(pcm, 24000, "pcm")
    assert np.array_equal(np.frombuffer(data, "<i2"), pcm)


def test_wav_holds_the_exact_samples() -> None:
    pcm = harmonic_tone(120, 0.5, 16000)
    with wave.open(io.BytesIO(audio.encode(pcm, 16000, "wav"))) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        assert np.array_equal(np.frombuffer(wav.readframes(wav.getnframes()), "<i2"), pcm)


def test_unknown_format_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="aac"):
        audio.encode(harmonic_tone(120, 0.1, 24000), 24000, "aac")


def test_encode_refuses_float_samples() -> None:
    with pytest.raises(ValueError, match="int16"):
        audio.encode(np.zeros(100, np.float32), 24000, "wav")


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus"])
def test_reference_audio_decodes_to_float_mono(fmt: str) -> None:
    data = audio.encode(harmonic_tone(150, 6.0, 24000), 24000, fmt)
    samples, rate = audio.decode_reference(data)
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert samples.size / rate == pytest.approx(6.0, abs=0.1)
    assert audio.estimate_pitch_hz(samples, rate) == pytest.approx(150, rel=0.03)


def test_stereo_reference_is_mixed_to_mono() -> None:
    tone = harmonic_tone(200, 6.0, 44100)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44100)
        out.writeframes(np.repeat(tone, 2).tobytes())
    samples, rate = audio.decode_reference(buffer.getvalue())
    assert rate == 44100
    assert samples.size == tone.size


@pytest.mark.parametrize(("seconds", "shown"), [(2.0, "lasts 2.0 s"), (31.0, "longer than 30 s")])
def test_reference_outside_5_to_30_seconds_is_refused(seconds: float, shown: str) -> None:
    data = audio.encode(harmonic_tone(150, seconds, 16000), 16000, "wav")
    with pytest.raises(AudioError, match=shown) as caught:
        audio.decode_reference(data)
    assert caught.value.code == "audio_duration"
    assert "5 to 30 s" in caught.value.message


@pytest.mark.parametrize(
    "data",
    [b"", b"definitely not audio " * 100, os.urandom(4096), b"RIFF\x00\x00\x00\x00WAVEjunk"],
    ids=["empty", "text", "random", "broken-wav"],
)
def test_garbage_reference_is_undecodable(data: bytes) -> None:
    with pytest.raises(AudioError) as caught:
        audio.decode_reference(data)
    assert caught.value.code == "undecodable_audio"


@pytest.mark.parametrize("f0", [120.0, 220.0])
@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_pitch_of_a_harmonic_tone(f0: float, rate: int) -> None:
    assert audio.estimate_pitch_hz(harmonic_tone(f0, 1.0, rate), rate) == pytest.approx(
        f0, rel=0.05
    )


def test_pitch_accepts_float_samples() -> None:
    tone = harmonic_tone(220, 1.0, 16000).astype(np.float32) / 32768
    assert audio.estimate_pitch_hz(tone, 16000) == pytest.approx(220, rel=0.05)


def test_silence_and_noise_have_no_pitch() -> None:
    noise = np.random.default_rng(7).normal(0, 3000, 16000).astype(np.int16)
    assert audio.estimate_pitch_hz(np.zeros(16000, np.int16), 16000) is None
    assert audio.estimate_pitch_hz(noise, 16000) is None
    assert audio.estimate_pitch_hz(np.zeros(10, np.int16), 16000) is None


@pytest.mark.parametrize("factor", [0.25, 0.5, 0.8, 2.0, 4.0])
def test_time_stretch_changes_duration_not_pitch(factor: float) -> None:
    tone = harmonic_tone(200, 2.0, 24000)
    stretched = audio.time_stretch(tone, 24000, factor)
    assert stretched.dtype == np.int16
    assert stretched.size == pytest.approx(tone.size / factor, rel=0.02)
    assert audio.estimate_pitch_hz(stretched, 24000) == pytest.approx(200, rel=0.03)


def test_time_stretch_by_one_is_the_identity() -> None:
    tone = harmonic_tone(200, 0.2, 24000)
    assert np.array_equal(audio.time_stretch(tone, 24000, 1.0), tone)


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan")])
def test_time_stretch_refuses_bad_factors(factor: float) -> None:
    with pytest.raises(ValueError, match="tempo"):
        audio.time_stretch(harmonic_tone(200, 0.2, 24000), 24000, factor)


@pytest.mark.parametrize(("source", "target"), [(22050, 24000), (24000, 48000), (48000, 8000)])
def test_resample_keeps_length_and_pitch(source: int, target: int) -> None:
    tone = harmonic_tone(180, 1.0, source)
    out = audio.resample(tone, source, target)
    assert out.dtype == np.int16
    assert abs(out.size - target) <= 2  # the flushed tail is kept
    assert audio.estimate_pitch_hz(out, target) == pytest.approx(180, rel=0.02)


def test_resample_of_nothing_is_nothing() -> None:
    assert audio.resample(np.zeros(0, np.int16), 22050, 24000).size == 0
