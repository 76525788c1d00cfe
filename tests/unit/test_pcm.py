"""Upstream PCM deltas become whole-sample chunks at the right rate."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxgate.errors import UpstreamStreamError
from voxgate.upstream.engine.stream_encoder import wav_header
from voxgate.upstream.pcm import PcmStreamDecoder


def decode(pieces: list[bytes], default_rate: int = 24000) -> tuple[bytes, set[int]]:
    decoder = PcmStreamDecoder(default_rate)
    out = b""
    rates: set[int] = set()
    for piece in pieces:
        for chunk in decoder.feed(piece):
            assert len(chunk.data) % 2 == 0
            out += chunk.data
            rates.add(chunk.sample_rate)
    decoder.finish()
    return out, rates


def test_raw_pcm_uses_the_configured_rate() -> None:
    data, rates = decode([b"\x01\x02\x03\x04"], default_rate=16000)
    assert data == b"\x01\x02\x03\x04"
    assert rates == {16000}


def test_odd_byte_counts_are_carried_across_deltas() -> None:
    data, _ = decode([b"\x01", b"\x02\x03", b"\x04\x05\x06"])
    assert data == b"\x01\x02\x03\x04\x05\x06"


def test_wav_header_sets_the_rate_and_is_stripped() -> None:
    samples = struct.pack("<4h", 1, -1, 2, -2)
    data, rates = decode([wav_header(22050, None) + samples])
    assert data == samples
    assert rates == {22050}


@given(st.lists(st.integers(min_value=1, max_value=60), max_size=12))
def test_wav_header_split_anywhere(cuts: list[int]) -> None:
    samples = struct.pack("<8h", *range(8))
    stream = wav_header(48000, len(samples)) + samples
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    data, rates = decode(pieces)
    assert data == samples
    assert rates <= {48000}


def test_wav_with_extra_chunks_before_data() -> None:
    header = wav_header(16000, 4)
    fmt_end = 12 + 8 + 16
    extra = b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd size is padded
    stream = header[:fmt_end] + extra + header[fmt_end:] + b"\x10\x00\x20\x00"
    data, rates = decode([stream])
    assert data == b"\x10\x00\x20\x00"
    assert rates == {16000}


def test_non_pcm_wav_is_refused() -> None:
    header = bytearray(wav_header(24000, None))
    struct.pack_into("<H", header, 20, 3)  # IEEE float
    with pytest.raises(UpstreamStreamError, match="16-bit PCM"):
        decode([bytes(header)])


def test_stream_ending_inside_a_header_is_an_error() -> None:
    with pytest.raises(UpstreamStreamError, match="inside a WAV header"):
        decode([b"RIFF\x00\x00"])
