"""Ogg Opus (RFC 7845) read sans-I/O: bytes in as they arrive, whole Opus packets out.

Passthrough takes the upstream's Ogg Opus stream apart into the packets it carries and
sends those on unchanged, so the demuxer never decodes. Bytes come split anywhere (base64
SSE deltas cut at arbitrary offsets); a page is taken apart once all its bytes are in.

What is checked, because a stream that fails it would be played wrong downstream:

* every page: the capture pattern, version 0, its CRC, its sequence number (a gap is a
  lost page), and that a packet left open continues on the next page and only there;
* the first page of a stream: beginning-of-stream, and an OpusHead alone on it (version
  major 0, channel mapping family 0, one or two channels), then an OpusTags packet;
* one logical stream at a time. A chained stream (an end-of-stream page, then a new
  beginning-of-stream page with a new OpusHead) is accepted and its head exposed;
  interleaved logical streams are refused (``code="multiplexed_ogg"``).

Packets are not looked into: :func:`voxgate.codecs.opus_toc.packet_samples` does that for
the caller that needs their durations. Nothing is trimmed either; each page's granule
position is handed out so a caller can tell how much of the last packet is real audio.

Memory is bounded by the format: a page is at most 65,307 bytes (27 header bytes, 255
lacing values of up to 255 bytes each), and an audio packet left open across pages at most
61,440 bytes (RFC 7845 section 3 has demuxers refuse bigger ones). OpusTags may legitimately
be huge (cover art) and is skipped without being kept.
"""

from __future__ import annotations

import enum
import logging
import re
import struct
from dataclasses import dataclass

from voxgate.codecs.ogg import ogg_crc
from voxgate.errors import AudioError

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<4sBBqIIIB")
_HEADER_SIZE = _HEADER.size  # 27
MAX_PAGE_SIZE = _HEADER_SIZE + 255 + 255 * 255  # 65,307
MAX_PACKET_SIZE = 61_440
_CONTINUED, _BOS, _EOS = 0x01, 0x02, 0x04
_NO_GRANULE = -1  # a page on which no packet ends
_OPUS_HEAD = b"OpusHead"
_OPUS_TAGS = b"OpusTags"
# A packet's lacing: any 255s ("the packet goes on"), then one value below 255 that ends it.
_LACED_PACKET = re.compile(rb"\xff*[\x00-\xfe]")


@dataclass(frozen=True, slots=True)
class OpusHead:
    """The identification header of an Ogg Opus stream (RFC 7845 section 5.1)."""

    version: int
    channels: int
    pre_skip: int  # 48 kHz samples the decoder drops at the start
    input_sample_rate: int  # of the encoder's input, informational; 0 when unknown
    output_gain: int  # Q7.8 dB, to apply on decoding
    mapping_family: int

    @property
    def output_gain_db(self) -> float:
        return self.output_gain / 256

    @classmethod
    def parse(cls, packet: bytes) -> OpusHead:
        """Read an OpusHead packet; only mapping family 0 (mono or stereo) is accepted."""
        if len(packet) < 19 or not packet.startswith(_OPUS_HEAD):
            raise _invalid("the first packet is not an OpusHead")
        version, channels, pre_skip, rate, gain, family = struct.unpack_from("<BBHIhB", packet, 8)
        # The upper four bits are the major version; minor versions stay compatible.
        if version >> 4:
            raise _invalid(f"OpusHead version {version}; only major version 0 is known")
        if family != 0:
            raise AudioError(
                f"Opus channel mapping family {family}; only family 0 (mono, stereo)",
                code="unsupported_channel_mapping",
            )
        if channels not in (1, 2):
            raise _invalid(f"OpusHead with mapping family 0 says {channels} channels")
        return cls(version, channels, pre_skip, rate, gain, family)


@dataclass(frozen=True, slots=True)
class OggPage:
    """One page taken apart: the audio packets that end on it, and where they end."""

    sequence: int
    granule: int  # 48 kHz samples up to the end of its last packet, pre-skip included; -1
    packets: tuple[bytes, ...]  # audio packets ending on this page, in order
    end_of_stream: bool


class _Expect(enum.Enum):
    HEAD = "head"  # a beginning-of-stream page with an OpusHead
    TAGS = "tags"  # the OpusTags packet, which may span pages
    AUDIO = "audio"


class OggOpusDemuxer:
    """Feed Ogg Opus bytes; get back the Opus audio packets each feed completed.

    ``head`` is the OpusHead of the current logical stream; in a chained stream it
    changes, and ``link_start`` is then the index (among the ``packets_out`` audio packets
    returned so far) of the first packet of the new link. ``last_granule`` is the granule
    position of the last page on which an audio packet ended, or ``None`` before the first.

    Every refusal is an :class:`AudioError` (``invalid_ogg``, ``multiplexed_ogg``,
    ``unsupported_channel_mapping``); the demuxer is of no further use after one.
    """

    def __init__(self) -> None:
        self.head: OpusHead | None = None
        self.link_start = 0
        self.last_granule: int | None = None
        self.packets_out = 0
        self._expect = _Expect.HEAD
        self._serial = 0
        self._sequence = 0
        self._page = bytearray()  # the start of a page whose end has not arrived
        self._open: bytearray | None = None  # a packet that goes on on the next page

    @property
    def buffered(self) -> int:
        """Bytes held between feeds: an incomplete page, and a packet left open."""
        return len(self._page) + len(self._open or b"")

    def feed(self, data: bytes) -> list[bytes]:
        """The audio packets completed by ``data``, in order."""
        return [packet for page in self.feed_pages(data) for packet in page.packets]

    def feed_pages(self, data: bytes) -> list[OggPage]:
        """The pages ``data`` completed, header pages included (with no packets)."""
        pages: list[OggPage] = []
        at = self._complete_page(data, pages) if self._page else 0
        while at < len(data):
            end = at + _page_size(data, at)
            if end > len(data):
                break
            pages.append(self._take_apart(data[at:end]))
            at = end
        self._page += data[at:]  # nothing when a page was left open: it took all of data
        return pages

    def finish(self) -> None:
        """Raise unless the stream ended on a page boundary, with no packet left open."""
        if self._page:
            raise _invalid(f"the stream ends inside a page ({len(self._page)} bytes of it)")
        if self._open is not None:
            raise _invalid("the stream ends inside a packet continued on a page never sent")
        if self.head is None:
            raise _invalid("the stream ends before its OpusHead")
        if self._expect is _Expect.TAGS:
            raise _invalid("the stream ends before its OpusTags")

    def _complete_page(self, data: bytes, pages: list[OggPage]) -> int:
        """Add to the open page what it lacks from ``data``; how much of ``data`` it took."""
        at = 0
        while (missing := _page_size(self._page) - len(self._page)) > 0:
            if at == len(data):
                return at
            piece = data[at : at + missing]
            self._page += piece
            at += len(piece)
        pages.append(self._take_apart(bytes(self._page)))
        self._page = bytearray()
        return at

    def _take_apart(self, page: bytes) -> OggPage:
        _, _, flags, granule, serial, sequence, crc, count = _HEADER.unpack_from(page)
        if ogg_crc(page[:22] + bytes(4) + page[26:]) != crc:
            raise _invalid(f"page {sequence} fails its CRC")
        self._follow(flags, serial, sequence)
        lacing = page[_HEADER_SIZE : _HEADER_SIZE + count]
        body = _HEADER_SIZE + count
        if bool(flags & _CONTINUED) != (self._open is not None):
            raise _invalid(f"page {sequence} does not continue the packet left open")
        packets: list[bytes] = []
        if self._expect is _Expect.HEAD:
            self._read_head(lacing, page[body:])
        else:
            packets = self._read_packets(lacing, page, body)
        if packets and granule != _NO_GRANULE:
            self.last_granule = granule
        self.packets_out += len(packets)
        if flags & _EOS:
            self._end_link(sequence)
        return OggPage(sequence, granule, tuple(packets), bool(flags & _EOS))

    def _follow(self, flags: int, serial: int, sequence: int) -> None:
        """Check that the page belongs where it comes: its stream, its place in it."""
        if self._expect is _Expect.HEAD:
            if not flags & _BOS:
                raise _invalid("the stream does not begin with a beginning-of-stream page")
            self._serial = serial
        elif serial != self._serial:
            raise AudioError(
                f"a page of logical stream {serial:#x} inside stream {self._serial:#x}; "
                "only one Opus stream at a time (or chained) is read",
                code="multiplexed_ogg",
            )
        elif flags & _BOS:
            raise _invalid(f"page {sequence} begins a stream inside stream {serial:#x}")
        elif sequence != (self._sequence + 1) & 0xFFFFFFFF:
            raise _invalid(f"page {sequence} follows page {self._sequence}: pages are lost")
        self._sequence = sequence

    def _read_head(self, lacing: bytes, body: bytes) -> None:
        if not _LACED_PACKET.fullmatch(lacing):
            raise _invalid("the first page does not hold one whole packet, the OpusHead")
        self.head = OpusHead.parse(body)
        self.link_start = self.packets_out
        self.last_granule = None
        log.debug("Ogg Opus stream %#x: %s", self._serial, self.head)
        self._set_expect(_Expect.TAGS)

    def _read_packets(self, lacing: bytes, page: bytes, at: int) -> list[bytes]:
        """The packets ending on a page whose body starts at ``at``; a last one that goes
        on is kept open."""
        packets: list[bytes] = []
        if self._open is None and self._expect is _Expect.AUDIO and b"\xff" not in lacing:
            # The usual page: packets under 255 bytes, each whole on it. One copy each.
            for size in lacing:
                packets.append(page[at : at + size])
                at += size
            return packets
        complete = lacing.rstrip(b"\xff")
        for laced in _LACED_PACKET.finditer(complete):
            size = 255 * (laced.end() - laced.start() - 1) + complete[laced.end() - 1]
            if self._open is None and self._expect is _Expect.AUDIO:
                _check_packet_size(size)
                packets.append(page[at : at + size])
            else:
                self._add_to_open(page[at : at + size])
                packet, self._open = bytes(self._open or b""), None
                if self._expect is _Expect.TAGS:
                    self._end_tags(packet)
                else:
                    packets.append(packet)
            at += size
        if len(complete) < len(lacing):
            self._add_to_open(page[at:])
        return packets

    def _add_to_open(self, piece: bytes) -> None:
        """A piece of a packet that began on an earlier page or goes on on a later one."""
        if self._open is None:
            self._open = bytearray()
        if self._expect is _Expect.TAGS:
            # Only the magic is kept: OpusTags may carry megabytes of pictures.
            self._open += piece[: max(0, len(_OPUS_TAGS) - len(self._open))]
        else:
            _check_packet_size(len(self._open) + len(piece))
            self._open += piece

    def _end_tags(self, magic: bytes) -> None:
        if magic != _OPUS_TAGS:
            raise _invalid("the packet after the OpusHead is not OpusTags")
        self._set_expect(_Expect.AUDIO)

    def _end_link(self, sequence: int) -> None:
        if self._open is not None:
            raise _invalid(f"end-of-stream page {sequence} leaves a packet open")
        if self._expect is not _Expect.AUDIO:
            raise _invalid(f"end-of-stream page {sequence} before the Opus headers ended")
        self._set_expect(_Expect.HEAD)  # a chained stream may begin a new link

    def _set_expect(self, expect: _Expect) -> None:
        log.debug("Ogg Opus demuxer: %s -> %s", self._expect.value, expect.value)
        self._expect = expect


def _page_size(buffer: bytes | bytearray, start: int = 0) -> int:
    """The size of the page that starts at ``start``, as far as the bytes there tell so
    far: the header's size, then the header and lacing's, then the whole page's. Bytes
    that cannot start a page are refused as soon as they arrive."""
    available = len(buffer) - start
    if buffer[start : start + 4] != b"OggS"[:available]:
        raise _invalid("bytes that are not an Ogg page where a page should begin")
    if available > 4 and buffer[start + 4] != 0:
        raise _invalid(f"Ogg page version {buffer[start + 4]}; only version 0 exists")
    if available < _HEADER_SIZE:
        return _HEADER_SIZE
    lacing_end = _HEADER_SIZE + buffer[start + 26]
    if available < lacing_end:
        return lacing_end
    return lacing_end + sum(buffer[start + _HEADER_SIZE : start + lacing_end])


def _check_packet_size(size: int) -> None:
    if size > MAX_PACKET_SIZE:
        raise _invalid(f"an Opus packet over {MAX_PACKET_SIZE} bytes")


def _invalid(message: str) -> AudioError:
    return AudioError(message, code="invalid_ogg")
