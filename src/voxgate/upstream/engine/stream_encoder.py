"""Incremental encoders for ``/stream``: feed PCM sentence by sentence, get bytes to send.

Every format is one continuous stream, so the concatenation of all deltas is a valid file:
a WAV header (with an open-ended size, as streaming servers send it) then samples; MP3
frames and FLAC from a muxer that writes into memory as it goes; Ogg Opus in pages of our
own, so every delta is whole pages of 20 ms packets.

Ogg Opus does not go through libavformat's ogg muxer: it keeps a page open until it holds
a second of audio (``page_duration``), and even set to 20 ms it holds the last packet back
until the next one starts a page, so the first audio would trail the first PCM delta.
Here each ``encode`` writes one page of the packets libopus coded from that slice, at once.
The last page is end-of-stream, and its granule position trims the padding of the last
packet, so a decoder's output is exactly as long as the PCM stream.
"""

from __future__ import annotations

import io
import struct
from typing import Protocol

import av
import numpy as np
import numpy.typing as npt

from voxgate.codecs.encoded_audio import EncodedAudio
from voxgate.codecs.ogg import OggPageWriter, opus_tags, page_groups
from voxgate.codecs.opus import PACKET_TICKS, OpusEncoder
from voxgate.codecs.output_format import OPUS_CLOCK_RATE, OutputFormat

Pcm = npt.NDArray[np.int16]

# Muxer and encoder per format.
_CONTAINERS = {"mp3": ("mp3", "libmp3lame"), "flac": ("flac", "flac")}
# Ogg Opus is what the API means by "opus": voxgate's defaults (32 kbit/s, VOIP tuning).
_OPUS = OutputFormat("ogg_opus", OPUS_CLOCK_RATE)
_BOS, _EOS = 0x02, 0x04
_SERIAL = 0x766F7867  # one logical stream per response: any fixed serial will do


class StreamEncoder(Protocol):
    def encode(self, pcm: Pcm) -> bytes: ...

    def finish(self) -> bytes: ...


def stream_encoder(fmt: str, sample_rate: int) -> StreamEncoder:
    if fmt == "pcm":
        return _RawPcm()
    if fmt == "wav":
        return _StreamingWav(sample_rate)
    if fmt == "opus":
        return _OggOpus(sample_rate)
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


class _OggOpus:
    """20 ms Opus packets in Ogg pages written as soon as libopus codes them."""

    def __init__(self, sample_rate: int) -> None:
        self._rate = sample_rate
        self._opus = OpusEncoder(_OPUS, sample_rate)
        self._writer = OggPageWriter(_SERIAL)
        self._headers = self._writer.page([self._opus.opus_head], 0, _BOS)
        self._headers += self._writer.page([opus_tags()], 0)
        self._granule = 0  # 48 kHz samples of the packets written, pre-skip included
        self._samples_in = 0

    def encode(self, pcm: Pcm) -> bytes:
        self._samples_in += len(pcm)
        return self._pages(self._opus.encode(pcm.astype("<i2", copy=False).tobytes()))

    def finish(self) -> bytes:
        # RFC 7845 end trimming: the last granule counts the real samples, not the padding.
        real_end = self._opus.pre_skip + self._samples_in * OPUS_CLOCK_RATE // self._rate
        return self._pages(self._opus.flush(), end=real_end)

    def _pages(self, packets: list[EncodedAudio], end: int | None = None) -> bytes:
        if not packets:
            return b""  # headers wait for the first packets: no delta of headers alone
        groups = page_groups([p.data for p in packets])
        pages, self._headers = self._headers, b""
        for number, group in enumerate(groups, 1):
            self._granule += PACKET_TICKS * len(group)
            if end is not None and number == len(groups):
                pages += self._writer.page(group, min(end, self._granule), _EOS)
            else:
                pages += self._writer.page(group, self._granule)
        return pages
