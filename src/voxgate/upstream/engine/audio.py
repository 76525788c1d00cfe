"""Audio plumbing of the embedded engine: encode, decode, stretch, resample, pitch.

Every function here blocks (PyAV and numpy work); callers run them off the event loop.
PCM is always mono: ``int16`` for synthesis output, ``float32`` in ``[-1, 1]`` for decoded
reference audio.
"""

from __future__ import annotations

import io
import math
import wave
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Final

import av
import av.error
import av.filter
import numpy as np
import numpy.typing as npt

from voxgate.errors import AudioError, InvalidInput

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]

FORMATS: Final = ("mp3", "wav", "flac", "opus", "pcm")

# format -> (container muxer, encoder, bit rate or None for lossless)
_CONTAINERS: Final[dict[str, tuple[str, str, int | None]]] = {
    "mp3": ("mp3", "libmp3lame", 64_000),
    "flac": ("flac", "flac", None),
    "opus": ("ogg", "libopus", 32_000),
}

# Reference audio comes from users: forbid the demuxers that follow links (HLS, concat, ...)
# from opening any other file or URL, which would turn an upload into a file read or SSRF.
_DECODE_OPTIONS: Final = {"protocol_whitelist": "none"}

_CHUNK_SECONDS: Final = 1.0
_ATEMPO_STAGE_MAX: Final = 2.0  # atempo accepts up to 100, but sounds choppy beyond 2x a stage

_PITCH_MIN_HZ: Final = 50.0
_PITCH_MAX_HZ: Final = 400.0
_PITCH_HOP_SECONDS: Final = 0.01
_YIN_THRESHOLD: Final = 0.15
_MIN_VOICED_FRAMES: Final = 3
_FRAMES_PER_BLOCK: Final = 256  # bounds the FFT working set on 30 s of 48 kHz audio


def encode(pcm: Int16Array, sample_rate: int, fmt: str) -> bytes:
    """Encode mono int16 PCM as ``mp3``, ``wav``, ``flac``, ``opus`` (Ogg) or ``pcm`` (s16le)."""
    samples = _checked_pcm(pcm)
    if fmt == "pcm":
        return samples.astype("<i2", copy=False).tobytes()
    if fmt == "wav":
        return _encode_wav(samples, sample_rate)
    if fmt not in _CONTAINERS:
        raise InvalidInput(f"unknown audio format {fmt!r}; expected one of {', '.join(FORMATS)}")
    muxer, encoder, bit_rate = _CONTAINERS[fmt]
    rate = _encodable_rate(encoder, sample_rate)
    return _encode_container(resample(samples, sample_rate, rate), rate, muxer, encoder, bit_rate)


def decode_reference(
    data: bytes, *, min_seconds: float = 5.0, max_seconds: float = 30.0
) -> tuple[Float32Array, int]:
    """Decode any audio PyAV reads to float32 mono at its own rate, within a duration window.

    Raises ``AudioError`` with code ``undecodable_audio`` or ``audio_duration``.
    """
    try:
        samples, rate = _decode_mono(data, stop_after_seconds=max_seconds + 1.0)
    except (av.error.FFmpegError, ValueError) as exc:
        raise AudioError(
            f"reference audio cannot be decoded: {exc}", code="undecodable_audio"
        ) from exc
    if samples.size == 0:
        raise AudioError("reference audio holds no audio samples", code="undecodable_audio")
    _check_duration(samples.size / rate, min_seconds, max_seconds)
    return samples, rate


def estimate_pitch_hz(samples: npt.NDArray[np.generic], sample_rate: int) -> float | None:
    """Median fundamental frequency (50–400 Hz) over voiced frames, or None if none are voiced.

    Uses the YIN cumulative mean normalised difference, computed with FFTs over all frames.
    """
    signal = _as_float(samples)
    max_lag = math.ceil(sample_rate / _PITCH_MIN_HZ)
    min_lag = max(2, math.floor(sample_rate / _PITCH_MAX_HZ))
    starts = _loud_frame_starts(signal, window=max_lag, length=2 * max_lag, rate=sample_rate)
    if starts.size == 0:
        return None
    # Frames overlap: index a strided view block by block instead of copying them all at once.
    frames = np.lib.stride_tricks.sliding_window_view(signal, 2 * max_lag)
    periods = np.concatenate(
        [
            _yin_periods(frames[starts[i : i + _FRAMES_PER_BLOCK]], max_lag, min_lag)
            for i in range(0, starts.size, _FRAMES_PER_BLOCK)
        ]
    )
    voiced = periods[np.isfinite(periods)]
    if voiced.size < _MIN_VOICED_FRAMES:
        return None
    return float(np.median(sample_rate / voiced))


def time_stretch(pcm: Int16Array, sample_rate: int, factor: float) -> Int16Array:
    """Play ``factor`` times faster (duration / factor) without changing pitch (ffmpeg atempo)."""
    samples = _checked_pcm(pcm)
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"tempo factor must be a positive number, got {factor}")
    if abs(factor - 1.0) < 1e-3 or samples.size == 0:
        return samples.copy()
    graph = av.filter.Graph()
    nodes = [
        graph.add_abuffer(
            format="s16", sample_rate=sample_rate, layout="mono", time_base=Fraction(1, sample_rate)
        )
    ]
    nodes += [graph.add("atempo", f"{stage:.6f}") for stage in _atempo_stages(factor)]
    nodes.append(graph.add("aformat", sample_fmts="s16", channel_layouts="mono"))
    nodes.append(graph.add("abuffersink"))
    graph.link_nodes(*nodes).configure()
    pieces: list[Int16Array] = []
    for frame in _frames(samples, sample_rate):
        graph.push(frame)
        pieces.extend(_drain(graph))
    graph.push(None)
    pieces.extend(_drain(graph))
    return _joined(pieces)


def resample(pcm: Int16Array, from_rate: int, to_rate: int) -> Int16Array:
    """Resample mono int16 PCM, flushing the resampler so the tail is kept."""
    samples = _checked_pcm(pcm)
    if from_rate == to_rate or samples.size == 0:
        return samples.copy()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    frames = resampler.resample(_frame(samples, from_rate, pts=0))
    frames += resampler.resample(None)
    return _joined(_int16(frame) for frame in frames)


def _check_duration(seconds: float, min_seconds: float, max_seconds: float) -> None:
    allowed = f"it must last {min_seconds:g} to {max_seconds:g} s"
    if seconds > max_seconds:
        raise AudioError(
            f"reference audio is longer than {max_seconds:g} s; {allowed}", code="audio_duration"
        )
    if seconds < min_seconds:
        raise AudioError(f"reference audio lasts {seconds:.1f} s; {allowed}", code="audio_duration")


def _checked_pcm(pcm: Int16Array) -> Int16Array:
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"expected mono int16 PCM, got {pcm.dtype} with shape {pcm.shape}")
    return pcm


def _encode_wav(pcm: Int16Array, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.astype("<i2", copy=False).tobytes())
    return buffer.getvalue()


def _encodable_rate(encoder: str, sample_rate: int) -> int:
    """The rate to feed ``encoder``: ours if it takes it, else the nearest higher one it takes."""
    rates = av.Codec(encoder, "w").audio_rates
    if not rates or sample_rate in rates:
        return sample_rate
    higher = [rate for rate in rates if rate >= sample_rate]
    return min(higher) if higher else max(rates)


def _encode_container(
    pcm: Int16Array, sample_rate: int, muxer: str, encoder: str, bit_rate: int | None
) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=muxer) as container:
        stream = container.add_stream(encoder, rate=sample_rate, layout="mono")
        if not isinstance(stream, av.AudioStream):
            raise AudioError(f"{encoder} is not an audio encoder", code="encoding_failed")
        if bit_rate is not None:
            stream.codec_context.bit_rate = bit_rate
        for frame in _frames(pcm, sample_rate):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _decode_mono(data: bytes, *, stop_after_seconds: float) -> tuple[Float32Array, int]:
    with av.open(io.BytesIO(data), "r", options=_DECODE_OPTIONS) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        if rate <= 0:
            raise ValueError("audio stream without a sample rate")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        pieces: list[Float32Array] = []
        decoded = 0
        for frame in container.decode(stream):
            pieces += [_float32(out) for out in resampler.resample(frame)]
            decoded += frame.samples
            # Stop early: an hour-long upload must not be decoded just to be refused.
            if decoded > stop_after_seconds * rate:
                break
        pieces += [_float32(out) for out in resampler.resample(None)]
    samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return samples, rate


def _frames(pcm: Int16Array, sample_rate: int) -> Iterator[av.AudioFrame]:
    step = max(1, int(sample_rate * _CHUNK_SECONDS))
    for start in range(0, pcm.size, step):
        yield _frame(pcm[start : start + step], sample_rate, pts=start)


def _frame(pcm: Int16Array, sample_rate: int, *, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(pcm).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = sample_rate
    frame.time_base = Fraction(1, sample_rate)
    frame.pts = pts
    return frame


def _drain(graph: av.filter.Graph) -> Iterator[Int16Array]:
    while True:
        try:
            frame = graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return
        if isinstance(frame, av.AudioFrame):
            yield _int16(frame)


def _atempo_stages(factor: float) -> list[float]:
    count = max(1, math.ceil(abs(math.log(factor)) / math.log(_ATEMPO_STAGE_MAX) - 1e-9))
    return [factor ** (1.0 / count)] * count


def _int16(frame: av.AudioFrame) -> Int16Array:
    return np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)


def _float32(frame: av.AudioFrame) -> Float32Array:
    return np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(-1)


def _joined(pieces: Iterable[Int16Array]) -> Int16Array:
    parts = list(pieces)
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def _as_float(samples: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
    if samples.dtype == np.int16:
        return samples.reshape(-1).astype(np.float64) / 32768.0
    return np.asarray(samples, dtype=np.float64).reshape(-1)


def _loud_frame_starts(
    signal: npt.NDArray[np.float64], *, window: int, length: int, rate: int
) -> npt.NDArray[np.intp]:
    """Start of every frame whose first ``window`` samples are loud enough to hold a pitch."""
    if signal.size < length:
        return np.zeros(0, np.intp)
    starts = np.arange(0, signal.size - length + 1, max(1, int(rate * _PITCH_HOP_SECONDS)))
    squares = np.concatenate([[0.0], np.cumsum(signal**2)])
    rms = np.sqrt(np.maximum(squares[starts + window] - squares[starts], 0.0) / window)
    # Quiet frames (pauses, breath, noise floor) have no pitch worth counting.
    loud: npt.NDArray[np.intp] = starts[rms > max(1e-3, 0.05 * float(np.max(rms)))]
    return loud


def _yin_periods(
    frames: npt.NDArray[np.float64], max_lag: int, min_lag: int
) -> npt.NDArray[np.float64]:
    """Period in samples of each frame (sub-sample precision), NaN where unvoiced."""
    window = frames.shape[1] - max_lag
    size = 1 << (frames.shape[1] - 1).bit_length()
    spectrum = np.fft.rfft(frames, size)
    head = np.fft.rfft(frames[:, :window], size)
    cross = np.fft.irfft(np.conj(head) * spectrum, size)[:, : max_lag + 1]
    energy = np.concatenate([np.zeros((frames.shape[0], 1)), np.cumsum(frames**2, axis=1)], 1)
    shifted = energy[:, window : window + max_lag + 1] - energy[:, : max_lag + 1]
    diff = np.maximum(shifted[:, :1] + shifted - 2.0 * cross, 0.0)
    lags = np.arange(max_lag + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd = diff * lags / np.cumsum(diff, axis=1)
    cmnd[:, 0] = 1.0
    cmnd = np.nan_to_num(cmnd, nan=1.0)
    return _first_dips(cmnd, min_lag)


def _first_dips(cmnd: npt.NDArray[np.float64], min_lag: int) -> npt.NDArray[np.float64]:
    # YIN takes the first dip under the threshold, not the global minimum: the global one is
    # often at twice the period (an octave too low).
    search = cmnd[:, min_lag:]
    below = search < _YIN_THRESHOLD
    first = np.argmax(below, axis=1)
    columns = np.arange(search.shape[1] - 1)
    rising = (np.diff(search, axis=1) >= 0) & (columns >= first[:, None])
    dip = np.where(rising.any(axis=1), np.argmax(rising, axis=1), search.shape[1] - 1)
    rows = np.arange(search.shape[0])
    left = search[rows, np.maximum(dip - 1, 0)]
    centre = search[rows, dip]
    right = search[rows, np.minimum(dip + 1, search.shape[1] - 1)]
    curvature = left - 2.0 * centre + right
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(curvature > 0, 0.5 * (left - right) / curvature, 0.0)
    periods = min_lag + dip + np.clip(offset, -0.5, 0.5)
    return np.where(below.any(axis=1), periods, np.nan)
