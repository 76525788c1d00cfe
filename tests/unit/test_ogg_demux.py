"""The Ogg Opus demuxer against real muxers (PyAV's libavformat, voxgate's own) and fuzzing.

Packets must come out byte for byte as libavformat's demuxer gives them, however the bytes
are cut; a broken stream must raise AudioError and nothing else, with bounded memory.
"""

from __future__ import annotations

import io
import itertools
import struct

import av
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxgate.codecs.ogg import OggOpusEncoder, ogg_crc, opus_tags
from voxgate.codecs.ogg_demux import MAX_PACKET_SIZE, MAX_PAGE_SIZE, OggOpusDemuxer, OpusHead
from voxgate.codecs.opus_toc import packet_samples
from voxgate.codecs.output_format import OutputFormat
from voxgate.errors import AudioError

BOS, EOS, CONTINUED = 0x02, 0x04, 0x01


# -- real streams -----------------------------------------------------------------------


def voice_like(seconds: float, rate: int, channels: int = 1) -> npt.NDArray[np.int16]:
    """A gliding tone with hiss: enough entropy that a high bitrate fills large packets."""
    t = np.arange(round(seconds * rate)) / rate
    noise = np.random.default_rng(5).normal(0, 0.08, (channels, t.size))
    signal = 0.3 * np.sin(2 * np.pi * (180 + 120 * t) * t) + noise
    return (signal * 32767).clip(-32768, 32767).astype(np.int16)


def pyav_ogg_opus(
    *, frame_ms: str = "20", bitrate: int = 32000, rate: int = 48000, channels: int = 1
) -> bytes:
    """Three seconds through libopus and libavformat's ogg muxer."""
    layout = "mono" if channels == 1 else "stereo"
    samples = voice_like(3.0, rate, channels)
    out = io.BytesIO()
    with av.open(out, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        stream.bit_rate = bitrate
        stream.codec_context.options = {"frame_duration": frame_ms}
        step = rate // 50
        for at in range(0, samples.shape[1], step):
            piece = np.ascontiguousarray(samples[:, at : at + step]).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(piece, format="s16", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def pyav_packets(data: bytes) -> list[tuple[bytes, int]]:
    """(packet, duration in 48 kHz samples) as libavformat's ogg demuxer reads them."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        return [(bytes(p), int(p.duration or 0)) for p in container.demux(stream) if p.size]


def voxgate_ogg_opus(seconds: float = 2.0, call_ms: int = 200) -> bytes:
    encoder = OggOpusEncoder(OutputFormat("ogg_opus", 48000), 24000, serial=7)
    pcm = voice_like(seconds, 24000).tobytes()
    step = 48 * call_ms
    payloads = [p for at in range(0, len(pcm), step) for p in encoder.encode(pcm[at : at + step])]
    return b"".join(p.data for p in payloads + encoder.flush())


def demux_all(data: bytes) -> list[bytes]:
    demuxer = OggOpusDemuxer()
    packets = demuxer.feed(data)
    demuxer.finish()
    return packets


# -- streams written by hand, for what muxers do not produce ---------------------------


def raw_page(
    lacing: bytes,
    body: bytes,
    *,
    flags: int = 0,
    granule: int = 0,
    serial: int = 1,
    sequence: int = 0,
    version: int = 0,
) -> bytes:
    header = struct.pack(
        "<4sBBqIIIB", b"OggS", version, flags, granule, serial, sequence, 0, len(lacing)
    )
    page = bytearray(header + lacing + body)
    struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
    return bytes(page)


def head_packet(channels: int = 1, family: int = 0, pre_skip: int = 312, version: int = 1) -> bytes:
    return b"OpusHead" + struct.pack("<BBHIhB", version, channels, pre_skip, 48000, 0, family)


def paged(
    packets: list[bytes],
    *,
    segments: int = 255,
    serial: int = 1,
    head: bytes | None = None,
    tags: bytes | None = None,
    eos: bool = False,
) -> bytes:
    """A logical stream: the head page, then tags and packets, ``segments`` lacing values a
    page, so that with few segments a page ends in the middle of a packet."""
    head = head or head_packet()
    out = raw_page(bytes([len(head)]), head, flags=BOS, serial=serial)
    laced: list[tuple[int, bytes, int]] = []  # (lacing value, its bytes, samples it ends)
    for number, packet in enumerate([tags or opus_tags(), *packets]):
        sizes = [255] * (len(packet) // 255) + [len(packet) % 255]
        offsets = np.cumsum([0, *sizes])
        ends = packet_samples(packet) if number else 0
        laced += [(s, packet[o : o + s], 0) for s, o in zip(sizes[:-1], offsets, strict=False)]
        laced.append((sizes[-1], packet[offsets[-2] :], ends))
    granule, sequence, continued = 0, 1, False
    for at in range(0, len(laced), segments):
        group = laced[at : at + segments]
        ending = [ends for value, _, ends in group if value < 255]
        granule += sum(ending)
        flags = (CONTINUED if continued else 0) | (
            EOS if eos and at + segments >= len(laced) else 0
        )
        lacing, body = bytes(v for v, _, _ in group), b"".join(b for _, b, _ in group)
        page_granule = granule if ending else -1
        out += raw_page(
            lacing, body, flags=flags, granule=page_granule, serial=serial, sequence=sequence
        )
        sequence += 1
        continued = group[-1][0] == 255
    return out


def page_offsets(data: bytes) -> list[int]:
    """Where each page of a well-formed stream starts."""
    offsets, at = [], 0
    while at < len(data):
        offsets.append(at)
        count = data[at + 26]
        at += 27 + count + sum(data[at + 27 : at + 27 + count])
    return offsets


def opus_packets(count: int, size: int = 80) -> list[bytes]:
    """Code 0 CELT packets of 20 ms (config 31): valid framing, arbitrary content."""
    return [bytes([0xF8]) + bytes([n % 256]) * (size - 1) for n in range(count)]


# -- agreement with libavformat ---------------------------------------------------------


@pytest.mark.parametrize(
    ("frame_ms", "bitrate"),
    [("10", 24000), ("20", 32000), ("40", 64000), ("60", 96000), ("20", 256000), ("60", 256000)],
)
def test_packets_equal_libavformat(frame_ms: str, bitrate: int) -> None:
    data = pyav_ogg_opus(frame_ms=frame_ms, bitrate=bitrate)
    expected = [packet for packet, _ in pyav_packets(data)]
    assert demux_all(data) == expected
    if bitrate > 200_000:
        assert max(map(len, expected)) > 255  # lacing values of 255 inside a page


def test_packets_continued_across_pages_equal_libavformat() -> None:
    packets = [p for p, _ in pyav_packets(pyav_ogg_opus(frame_ms="60", bitrate=256000))]
    assert min(map(len, packets)) > 3 * 255
    data = paged(packets, segments=3)  # every packet spans two or more pages
    assert [p for p, _ in pyav_packets(data)] == packets  # libavformat reads it so too
    assert demux_all(data) == packets


def test_voxgate_encoder_stream_equals_libavformat_and_its_head() -> None:
    data = voxgate_ogg_opus()
    demuxer = OggOpusDemuxer()
    packets = demuxer.feed(data)
    assert packets == [p for p, _ in pyav_packets(data)]
    head = demuxer.head
    assert head is not None
    assert (head.version, head.channels, head.mapping_family, head.output_gain) == (1, 1, 0, 0)
    assert head.input_sample_rate == 24000
    assert head.pre_skip == int.from_bytes(data[28 + 10 : 28 + 12], "little")
    assert demuxer.last_granule == sum(map(packet_samples, packets))


def test_stereo_head_and_pages() -> None:
    data = pyav_ogg_opus(channels=2, rate=24000)
    demuxer = OggOpusDemuxer()
    pages = demuxer.feed_pages(data)
    demuxer.finish()
    assert demuxer.head is not None
    assert demuxer.head == OpusHead(1, 2, demuxer.head.pre_skip, 24000, 0, 0)
    assert pages[0].packets == pages[1].packets == ()  # OpusHead, OpusTags
    assert pages[-1].end_of_stream
    assert demuxer.last_granule == pages[-1].granule > 3 * 48000


# -- any cut of the bytes --------------------------------------------------------------

STREAM = voxgate_ogg_opus(seconds=1.0, call_ms=60)
STREAM_PACKETS = demux_all(STREAM)


@given(st.lists(st.integers(0, len(STREAM)), max_size=40))
def test_any_split_gives_the_same_packets(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    demuxer = OggOpusDemuxer()
    packets = [p for a, b in itertools.pairwise(bounds) for p in demuxer.feed(STREAM[a:b])]
    demuxer.finish()
    assert packets == STREAM_PACKETS


def test_one_byte_at_a_time() -> None:
    demuxer = OggOpusDemuxer()
    packets = [p for i in range(len(STREAM)) for p in demuxer.feed(STREAM[i : i + 1])]
    assert packets == STREAM_PACKETS
    assert demuxer.buffered == 0


def _feed_checked(demuxer: OggOpusDemuxer, pieces: list[bytes]) -> None:
    for piece in pieces:
        demuxer.feed(piece)
        assert demuxer.buffered <= MAX_PAGE_SIZE + MAX_PACKET_SIZE
    demuxer.finish()


@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=8))
def test_arbitrary_bytes_raise_audio_error_only(data: bytes, cuts: list[int]) -> None:
    bounds = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    with pytest.raises(AudioError):  # nothing arbitrary is a whole Ogg Opus stream
        _feed_checked(OggOpusDemuxer(), [data[a:b] for a, b in itertools.pairwise(bounds)])


@given(st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_a_changed_byte_is_always_caught(data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(STREAM) - 1))
    flip = data.draw(st.integers(1, 255))
    broken = bytearray(STREAM)
    broken[at] ^= flip
    with pytest.raises(AudioError):  # the CRC covers every byte of a page
        _feed_checked(OggOpusDemuxer(), [bytes(broken)])


@given(st.data())
def test_overwritten_or_cut_streams_raise_audio_error_or_demux(data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(STREAM)))
    junk = data.draw(st.binary(max_size=64))
    end = data.draw(st.integers(at, len(STREAM)))
    broken = STREAM[:at] + junk + STREAM[at + len(junk) : end]
    code = None
    try:
        _feed_checked(OggOpusDemuxer(), [broken[:at], broken[at:]])
    except AudioError as error:
        code = error.code
    assert code in (None, "invalid_ogg")


def test_a_stream_cut_at_a_page_boundary_is_whole_inside_it_is_not() -> None:
    boundary = page_offsets(STREAM)[4]
    demuxer = OggOpusDemuxer()
    demuxer.feed(STREAM[:boundary])
    demuxer.finish()
    for cut in (boundary - 1, boundary + 5, boundary + 30):
        demuxer = OggOpusDemuxer()
        demuxer.feed(STREAM[:cut])
        with pytest.raises(AudioError, match="inside a page") as caught:
            demuxer.finish()
        assert caught.value.code == "invalid_ogg"


# -- what is refused, and how ----------------------------------------------------------


def refusal(data: bytes) -> AudioError:
    with pytest.raises(AudioError) as caught:
        _feed_checked(OggOpusDemuxer(), [data])
    return caught.value


def test_garbage_before_the_first_page_is_refused_at_once() -> None:
    demuxer = OggOpusDemuxer()
    demuxer.feed(b"Og")  # a prefix of "OggS" is fine...
    with pytest.raises(AudioError, match="not an Ogg page") as caught:
        demuxer.feed(b"x")  # ...but not this
    assert caught.value.code == "invalid_ogg"
    assert refusal(b"\n" + STREAM).code == "invalid_ogg"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (raw_page(b"\x13", head_packet(), flags=BOS, version=1), "version 1"),
        (raw_page(b"\x13", head_packet(), flags=0), "beginning-of-stream"),
        (raw_page(bytes([len(opus_tags())]), opus_tags(), flags=BOS), "not an OpusHead"),
        (raw_page(b"\x13\x01", head_packet() + b"\xf8", flags=BOS), "one whole packet"),
        (raw_page(b"\x13", head_packet(version=0x10), flags=BOS), "major version"),
        (raw_page(b"\x13", head_packet(channels=3), flags=BOS), "3 channels"),
        (paged([], tags=b"OpusTagz" + bytes(8)), "not OpusTags"),
        (paged(opus_packets(2))[:-2], "inside a page"),
        (paged(opus_packets(1, size=300), segments=1)[: -(28 + 45)], "inside a packet"),
        (raw_page(b"\x13", head_packet(), flags=BOS), "before its OpusTags"),
        (b"", "before its OpusHead"),
    ],
)
def test_broken_streams_are_invalid_ogg(data: bytes, message: str) -> None:
    error = refusal(data)
    assert error.code == "invalid_ogg"
    assert message in error.message


def test_a_bad_crc_is_refused() -> None:
    page = bytearray(raw_page(b"\x13", head_packet(), flags=BOS))
    page[-1] ^= 1
    error = refusal(bytes(page))
    assert (error.code, error.message) == ("invalid_ogg", "page 0 fails its CRC")


def test_mapping_families_other_than_0_are_refused() -> None:
    error = refusal(paged([], head=head_packet(channels=6, family=1) + bytes([4, 2]) + bytes(6)))
    assert error.code == "unsupported_channel_mapping"


def test_a_lost_page_is_refused() -> None:
    pages = paged(opus_packets(3), segments=1)
    offsets = page_offsets(pages)  # head, tags, then a packet a page
    assert "pages are lost" in refusal(pages[: offsets[3]] + pages[offsets[4] :]).message


def test_continuation_must_match_the_open_packet() -> None:
    head = paged([])
    unexpected = raw_page(b"\x50", opus_packets(1)[0], flags=CONTINUED, sequence=2)
    assert "does not continue" in refusal(head + unexpected).message
    left_open = raw_page(b"\xff", bytes([0xF8]) * 255, sequence=2)
    not_continued = raw_page(b"\x01", b"\x00", sequence=3)
    assert "does not continue" in refusal(head + left_open + not_continued).message


def test_interleaved_logical_streams_are_refused() -> None:
    first = paged(opus_packets(4), segments=1, serial=1)
    second = paged(opus_packets(4), segments=1, serial=2)
    split = page_offsets(first)[3]
    assert refusal(first[:split] + second + first[split:]).code == "multiplexed_ogg"
    # A second beginning-of-stream page at the start (grouped streams) is just as refused.
    heads = first[: page_offsets(first)[1]] + second[: page_offsets(second)[1]]
    assert refusal(heads).code == "multiplexed_ogg"


def test_a_packet_over_the_rfc_7845_bound_is_refused() -> None:
    # A valid Opus packet (code 3, one 10-byte frame) made huge by its padding.
    padding = MAX_PACKET_SIZE
    length = b"\xff" * (padding // 254) + bytes([padding % 254])
    padded = b"\xfb\x41" + length + bytes(10) + bytes(padding)
    assert packet_samples(padded) == 960
    error = refusal(paged([padded]))
    assert (error.code, error.message) == ("invalid_ogg", "an Opus packet over 61440 bytes")


# -- chains, tags and granules ---------------------------------------------------------


def test_a_chained_stream_exposes_each_link_head() -> None:
    first = pyav_ogg_opus(rate=48000)
    second = pyav_ogg_opus(rate=16000, frame_ms="40")
    demuxer = OggOpusDemuxer()
    packets = demuxer.feed(first)
    assert demuxer.head is not None
    assert demuxer.head.input_sample_rate == 48000
    assert demuxer.link_start == 0
    assert demuxer.last_granule is not None
    assert demuxer.last_granule > 3 * 48000
    packets += demuxer.feed(second)
    demuxer.finish()
    assert demuxer.head is not None
    assert demuxer.head.input_sample_rate == 16000
    assert demuxer.link_start == len(pyav_packets(first))
    assert packets == [p for p, _ in pyav_packets(first) + pyav_packets(second)]


def test_a_page_after_the_end_of_stream_must_begin_a_new_one() -> None:
    ended = paged(opus_packets(2), eos=True)
    assert "beginning-of-stream" in refusal(ended + raw_page(b"\x01", b"\xf8", sequence=3)).message


def test_huge_tags_are_skipped_without_being_kept() -> None:
    tags = b"OpusTags" + bytes(300_000)
    data = paged(opus_packets(3), tags=tags)
    demuxer = OggOpusDemuxer()
    packets = []
    for at in range(0, len(data), 4096):
        packets += demuxer.feed(data[at : at + 4096])
        assert demuxer.buffered <= MAX_PAGE_SIZE + len(b"OpusTags")
    demuxer.finish()
    assert packets == opus_packets(3)


def test_granule_of_each_page_and_the_last() -> None:
    demuxer = OggOpusDemuxer()
    pages = demuxer.feed_pages(paged(opus_packets(5), segments=2))
    # OpusTags and the first packet share a page here: accepted, the packet is audio.
    assert [(len(p.packets), p.granule) for p in pages] == [(0, 0), (1, 960), (2, 2880), (2, 4800)]
    assert demuxer.last_granule == 5 * 960
