"""Turning the upstream's PCM deltas into whole-sample chunks with a known sample rate.

The API does not document the PCM rate of ``/stream``: it is configuration (24 kHz mono
s16le by default), unless a delta starts with a WAV header, which then says what follows.
Deltas may split a sample (odd byte counts); a split sample is carried to the next delta.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from voxgate.errors import UpstreamStreamError

_RIFF_HEADER_MIN = 12


@dataclass(frozen=True, slots=True)
class PcmFormat:
    sample_rate: int
    channels: int = 1
    sample_width: int = 2  # bytes; s16le

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.sample_width


@dataclass(frozen=True, slots=True)
class PcmChunk:
    """Signed 16-bit little-endian interleaved PCM, always a whole number of frames."""

    data: bytes
    sample_rate: int
    channels: int = 1

    @property
    def frames(self) -> int:
        return len(self.data) // (2 * self.channels)

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


class PcmStreamDecoder:
    """Sans-I/O: ``feed(delta) -> list[PcmChunk]``, then ``finish()`` at the end of the stream."""

    def __init__(self, default_sample_rate: int) -> None:
        self._format = PcmFormat(default_sample_rate)
        self._carry = b""
        self._header = b""  # bytes of a WAV header not yet complete
        self._in_header = False

    @property
    def format(self) -> PcmFormat:
        return self._format

    def feed(self, delta: bytes) -> list[PcmChunk]:
        if self._in_header:
            delta = self._header + delta
            self._header = b""
            self._in_header = False
        if not delta:
            return []
        if not self._carry and _may_be_wav_header(delta):
            if len(delta) < _RIFF_HEADER_MIN or not _header_complete(delta):
                self._header, self._in_header = delta, True
                return []
            self._format, delta = _parse_wav(delta)
        return self._frames(delta)

    def finish(self) -> None:
        """Called at ``speech.audio.done``: a half header left over means a broken stream."""
        if self._in_header:
            raise UpstreamStreamError("stream ended inside a WAV header", retryable=True)
        # A dangling partial sample cannot be played; dropping it is inaudible.
        self._carry = b""

    def _frames(self, data: bytes) -> list[PcmChunk]:
        data = self._carry + data
        whole = len(data) - len(data) % self._format.frame_bytes
        self._carry = data[whole:]
        if whole == 0:
            return []
        return [PcmChunk(data[:whole], self._format.sample_rate, self._format.channels)]


def _may_be_wav_header(data: bytes) -> bool:
    if len(data) < _RIFF_HEADER_MIN:
        return b"RIFF".startswith(data[:4]) and (len(data) <= 8 or b"WAVE".startswith(data[8:]))
    return data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def _header_complete(data: bytes) -> bool:
    try:
        _parse_wav(data)
    except _Incomplete:
        return False
    return True


class _Incomplete(Exception):
    pass


def _parse_wav(data: bytes) -> tuple[PcmFormat, bytes]:
    """Parse RIFF chunks up to ``data``; return the format and the sample bytes after it."""
    pos = _RIFF_HEADER_MIN
    fmt: PcmFormat | None = None
    while True:
        if pos + 8 > len(data):
            raise _Incomplete
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"data":
            if fmt is None:
                raise UpstreamStreamError("WAV data before its fmt chunk", retryable=False)
            return fmt, data[body:]
        if body + size > len(data):
            raise _Incomplete
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[body : body + size])
        pos = body + size + (size & 1)


def _parse_fmt(body: bytes) -> PcmFormat:
    if len(body) < 16:
        raise UpstreamStreamError("WAV fmt chunk too short", retryable=False)
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
    # 0xFFFE is WAVE_FORMAT_EXTENSIBLE, which carries PCM in its sub-format.
    if tag not in (1, 0xFFFE) or bits != 16:
        raise UpstreamStreamError(
            f"unsupported WAV audio (format tag {tag}, {bits} bits); expected 16-bit PCM",
            retryable=False,
        )
    if channels < 1 or not 4000 <= rate <= 192000:
        raise UpstreamStreamError(
            f"implausible WAV header: {channels} ch at {rate} Hz", retryable=False
        )
    return PcmFormat(sample_rate=rate, channels=channels)
