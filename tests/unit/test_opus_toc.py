"""Opus packet durations from the TOC byte, against libopus' own packets and RFC 6716.

libavformat's ogg demuxer gives every packet a duration read from its TOC as well; ours
must agree on real libopus packets of every frame size, and hold RFC 6716's framing rules
(section 3.4) on packets built by hand.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_ogg_demux import demux_all, pyav_ogg_opus, pyav_packets, voxgate_ogg_opus
from voxgate.codecs.opus_toc import MAX_PACKET_SAMPLES, packet_samples, packet_toc
from voxgate.errors import AudioError

FRAME_MS = ("2.5", "5", "10", "20", "40", "60")


@pytest.mark.parametrize("frame_ms", FRAME_MS)
@pytest.mark.parametrize("bitrate", [16000, 64000, 256000])
def test_durations_equal_libavformat(frame_ms: str, bitrate: int) -> None:
    packets = pyav_packets(pyav_ogg_opus(frame_ms=frame_ms, bitrate=bitrate))
    # The last packet's duration is cut to the stream's end granule; it is whole here.
    for packet, duration in packets[:-1]:
        assert packet_samples(packet) == duration == round(float(frame_ms) * 48)
    assert packet_samples(packets[-1][0]) >= packets[-1][1]


def test_modes_follow_the_bitrate() -> None:
    low = {packet_toc(p) for p, _ in pyav_packets(pyav_ogg_opus(bitrate=8000))}
    high = {packet_toc(p) for p, _ in pyav_packets(pyav_ogg_opus(bitrate=256000))}
    assert {(t.mode, t.frame_samples, t.stereo) for t in low} <= {
        ("silk", 960, False),
        ("hybrid", 960, False),
    }
    assert {(t.mode, t.bandwidth, t.frame_samples) for t in high} == {("celt", "fullband", 960)}


def test_voxgate_packets_are_20ms() -> None:
    assert {packet_samples(p) for p in demux_all(voxgate_ogg_opus())} == {960}


@pytest.mark.parametrize(
    ("config", "samples"),
    [(0, 480), (3, 2880), (9, 960), (11, 2880), (12, 480), (15, 960), (16, 120), (29, 240)],
)
def test_frame_size_per_configuration(config: int, samples: int) -> None:
    assert packet_samples(bytes([config << 3]) + b"\x00" * 10) == samples


CELT_20MS = 31 << 3  # fullband CELT, 20 ms frames


@pytest.mark.parametrize(
    ("packet", "samples"),
    [
        (bytes([CELT_20MS]), 960),  # code 0, an empty frame (DTX)
        (bytes([CELT_20MS | 1]) + bytes(20), 1920),  # code 1: two frames of 10 bytes
        (bytes([CELT_20MS | 2, 5]) + bytes(12), 1920),  # code 2: 5 bytes, then 7
        (bytes([CELT_20MS | 2, 252, 1]) + bytes(256), 1920),  # a two-byte length: 256
        (bytes([CELT_20MS | 3, 6]) + bytes(60), 5760),  # code 3 CBR: six frames of 10
        (bytes([CELT_20MS | 3, 0x83, 4, 5]) + bytes(15), 2880),  # VBR: 4, 5 and 6 bytes
        (bytes([CELT_20MS | 3, 0x42, 255, 1]) + bytes(10) + bytes(255), 1920),  # padding 255
        (bytes([16 << 3 | 3, 48]) + bytes(48), 5760),  # 48 frames of 2.5 ms
    ],
)
def test_valid_framing(packet: bytes, samples: int) -> None:
    assert packet_samples(packet) == samples


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"", "empty"),
        (bytes([CELT_20MS]) + bytes(1276), "1276 bytes"),
        (bytes([CELT_20MS | 1]) + bytes(3), "evenly"),
        (bytes([CELT_20MS | 1]) + bytes(2 * 1276), "1276 bytes"),
        (bytes([CELT_20MS | 2]), "inside a frame length"),
        (bytes([CELT_20MS | 2, 253]), "two-byte"),
        (bytes([CELT_20MS | 2, 9]) + bytes(8), "overruns"),
        (bytes([CELT_20MS | 3]), "no frame count"),
        (bytes([CELT_20MS | 3, 0]), "not 0"),
        (bytes([CELT_20MS | 3, 7]) + bytes(70), "not 7 (140 ms)"),
        (bytes([CELT_20MS | 3, 3]) + bytes(10), "equal (CBR)"),
        (bytes([CELT_20MS | 3, 0x82, 20]) + bytes(10), "overruns"),
        (bytes([CELT_20MS | 3, 0x83, 4, 4]) + bytes(6), "longer than the packet"),
        (bytes([CELT_20MS | 3, 0x41, 30]) + bytes(10), "padding"),
        (bytes([CELT_20MS | 3, 0x41]) + b"\xff" * 400, "padding"),
    ],
)
def test_framing_that_breaks_rfc_6716_is_invalid_opus(packet: bytes, message: str) -> None:
    with pytest.raises(AudioError) as caught:
        packet_samples(packet)
    assert caught.value.code == "invalid_opus"
    assert message in caught.value.message


@given(st.binary(max_size=2000))
def test_any_bytes_give_a_duration_in_range_or_invalid_opus(packet: bytes) -> None:
    try:
        samples = packet_samples(packet)
    except AudioError as error:
        assert error.code == "invalid_opus"  # noqa: PT017 - a property, not one case
    else:
        assert 120 <= samples <= MAX_PACKET_SAMPLES
        assert samples % 120 == 0


@given(st.integers(0, 255), st.binary(min_size=1, max_size=8))
def test_any_frame_count_byte_is_handled(toc: int, rest: bytes) -> None:
    packet = bytes([toc | 3]) + rest
    try:
        assert packet_samples(packet) <= MAX_PACKET_SAMPLES
    except AudioError as error:
        assert error.code == "invalid_opus"  # noqa: PT017
