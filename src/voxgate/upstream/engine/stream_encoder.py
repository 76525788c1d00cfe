"""Incremental encoders for ``/stream``: feed PCM sentence by sentence, get bytes to send.

Every format is one continuous stream, so the concatenation of all deltas is a valid file:
a WAV header (with an open-ended size, as streaming servers send it) then samples; MP3
frames; FLAC and Ogg Opus from a muxer that writes into memory as it goes.
"""

from __future__ import annotations

import io
import struct
from typing import Protocol

import av
import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]

# Muxer and encoder per format; Ogg Opus is what the API means by "opus".
_CONTAINERS = {"mp3": ("mp3", "libmp3lame"), "flac": ("flac", "flac"), "opus": ("ogg", "libopus")}
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


class StreamEncoder(Protocol):
    def encode(self, pcm: Pcm) -> bytes: ...

    def finish(self) -> bytes: ...


def stream_encoder(fmt: str, sample_rate: int) -> StreamEncoder:
    if fmt == "pcm":
        return _RawPcm()
    if fmt == "wav":
        return _StreamingWav(sample_rate)
    if fmt in _CONTAINERS:
        return _Muxed(fmt, sample_rate)
    raise ValueError(f"no stream encoder for {fmt!r}")


class _RawPcm:
    def encode(self, pcm: Pcm) -> bytes:
        return pcm.astype("<i2", copy=False).tobytes()

    def finish(self) -> bytes:
        return b""


class _StreamingWav(_RawPcm):
    def __init__(self, sample_rate: int) -> None:
        self._header: bytes | None = wav_header(sample_rate, data_bytes=None)

    def encode(self, pcm: Pcm) -> bytes:
        header, self._header = self._header or b"", None
        return header + super().encode(pcm)

    def finish(self) -> bytes:
        header, self._header = self._header or b"", None
        return header


def wav_header(sample_rate: int, data_bytes: int | None, channels: int = 1) -> bytes:
    """A 44-byte PCM WAV header; an unknown length is written as 0xFFFFFFFF, as streams do."""
    size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    block = 2 * channels
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        sample_rate,
        sample_rate * block,
        block,
        16,
        b"data",
        size,
    )


class _MemorySink(io.RawIOBase):
    def __init__(self) -> None:
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._buffer += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


class _Muxed:
    def __init__(self, fmt: str, sample_rate: int) -> None:
        container_format, codec = _CONTAINERS[fmt]
        self._rate = sample_rate
        if fmt == "opus" and sample_rate not in _OPUS_RATES:
            raise ValueError(f"Opus cannot take {sample_rate} Hz")
        self._sink = _MemorySink()
        # A small I/O buffer: the muxer hands bytes over soon after they are encoded.
        self._container = av.open(self._sink, "w", format=container_format, buffer_size=4096)
        stream = self._container.add_stream(codec, rate=sample_rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        self._stream = stream

    def encode(self, pcm: Pcm) -> bytes:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self._rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()
