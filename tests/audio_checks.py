"""What a listener's decoder makes of our audio: PyAV for samples, ffprobe for the container."""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    codec: str

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def rms(self) -> float:
        return float(np.sqrt(np.mean(self.samples**2))) if len(self.samples) else 0.0


def decode(data: bytes, *, fmt: str | None = None) -> Decoded:
    """Decode any container PyAV reads; ``fmt="pcm"`` means raw s16le mono at 24 kHz."""
    if fmt == "pcm":
        pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
        return Decoded(pcm, 24000, "pcm_s16le")
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        parts = []
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            if array.dtype == np.int16:
                array = array.astype(np.float32) / 32768
            elif array.dtype == np.int32:
                array = array.astype(np.float32) / 2**31
            # Planar frames are (channels, n); packed ones (1, n * channels).
            channels = frame.layout.nb_channels
            if frame.format.is_planar:
                mono = array.mean(axis=0)
            else:
                mono = array.reshape(-1, channels).mean(axis=1)
            parts.append(mono.astype(np.float32))
            rate = frame.sample_rate
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return Decoded(samples, rate, codec)


def ffprobe(data: bytes, suffix: str) -> dict[str, object]:
    """ffprobe's view of the first audio stream and the container."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"audio.{suffix}"
        path.write_bytes(data)
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    info = json.loads(out)
    stream = next(s for s in info["streams"] if s["codec_type"] == "audio")
    return {
        "codec": stream["codec_name"],
        "sample_rate": int(stream["sample_rate"]),
        "channels": int(stream["channels"]),
        "format": info["format"]["format_name"],
        "duration": float(info["format"].get("duration") or stream.get("duration") or 0),
    }


def assert_speech(decoded: Decoded, *, min_seconds: float = 0.3) -> None:
    """Not silence, not noise-free digital zero, plausibly long."""
    assert decoded.duration >= min_seconds, f"only {decoded.duration:.2f} s of audio"
    assert decoded.rms > 0.01, f"audio is (nearly) silent: rms {decoded.rms:.4f}"
