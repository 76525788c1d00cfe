"""Ogg Opus (RFC 7845) written page by page, so every payload is playable the moment it is sent.

We write the pages ourselves rather than drive libavformat's ogg muxer: the muxer decides
page boundaries itself (by default a page per second of audio) and hides the state a
barge-in has to reset, while the page format is a 27-byte header and a lacing table.

Latency: one encode() call closes one page holding every packet that call completed. Fed in
real time (20 ms at a time) that is a page per packet, sent as soon as libopus has coded it:
no added delay, at a cost of 28 bytes of page header per packet (~11 kbit/s). When input
arrives in bursts, the burst's packets share a page and the overhead shrinks by itself.
The first payload starts with the OpusHead and OpusTags pages.

The stream has no end-of-stream page: a session's audio ends when the socket does, and
players treat a stream cut after a complete page as complete.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from voxgate.codecs.encoded_audio import EncodedAudio, PacketClock
from voxgate.codecs.opus import OpusEncoder
from voxgate.codecs.opus_packets import OpusRun
from voxgate.codecs.output_format import OPUS_CLOCK_RATE, OutputFormat

_FLAG_BOS = 0x02
_MAX_LACING = 255  # lacing values a page header can hold
VENDOR = b"voxgate"

# Ogg's CRC-32 (polynomial 0x04C11DB7, MSB first, initial 0, no final xor) is zlib's CRC-32
# with every bit order mirrored: mirror each input byte, run zlib's reflected CRC with a
# zero register (zlib pre- and post-inverts, hence the 0xFFFFFFFF on both sides), and
# mirror the 32-bit result. zlib does the byte loop in C.
_MIRROR = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], dtype=np.uint8)


def ogg_crc(data: bytes) -> int:
    """The CRC an Ogg page header carries, over the page with its CRC field zeroed."""
    mirrored = _MIRROR[np.frombuffer(data, dtype=np.uint8)].tobytes()
    register = zlib.crc32(mirrored, 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int.from_bytes(_MIRROR[np.frombuffer(register.to_bytes(4, "little"), np.uint8)])


class OggPageWriter:
    """Pages of one logical Ogg stream, numbered in order."""

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self._sequence = 0

    def page(self, packets: list[bytes], granule: int, flags: int = 0) -> bytes:
        """One page of whole packets, the last of which ends at ``granule``."""
        lacing = b"".join(_lacing(len(p)) for p in packets)
        if len(lacing) > _MAX_LACING:
            raise ValueError(f"{len(packets)} packets need {len(lacing)} lacing values")
        header = struct.pack(
            "<4sBBqIIIB", b"OggS", 0, flags, granule, self.serial, self._sequence, 0, len(lacing)
        )
        page = bytearray(header + lacing + b"".join(packets))
        struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
        self._sequence += 1
        return bytes(page)


def page_groups(packets: list[bytes]) -> list[list[bytes]]:
    """``packets`` in order, cut into as few groups as fit a page each."""
    groups: list[list[bytes]] = [[]]
    used = 0
    for packet in packets:
        need = len(packet) // 255 + 1
        if used + need > _MAX_LACING:
            groups.append([])
            used = 0
        groups[-1].append(packet)
        used += need
    return [group for group in groups if group]


def _lacing(size: int) -> bytes:
    # 255 means "the packet goes on"; a final value below 255 (possibly 0) ends it.
    return b"\xff" * (size // 255) + bytes([size % 255])


def opus_tags(vendor: bytes = VENDOR) -> bytes:
    """RFC 7845 comment header: a vendor string and no user comments."""
    return b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)


class OggOpusEncoder:
    """Mono s16le at ``input_rate`` to a continuous Ogg Opus stream, a page per call."""

    def __init__(self, fmt: OutputFormat, input_rate: int, *, serial: int | None = None) -> None:
        self.format = fmt
        self._opus = OpusEncoder(fmt, input_rate)
        serial = int.from_bytes(os.urandom(4)) if serial is None else serial
        self._writer = OggPageWriter(serial)
        self._clock = PacketClock(OPUS_CLOCK_RATE)
        self._granule = 0  # 48 kHz samples of every packet written, pre-skip included
        self.headers = self._writer.page([self._opus.opus_head], 0, _FLAG_BOS)
        self.headers += self._writer.page([opus_tags()], 0)  # tags on a page of their own
        self._unsent_headers = self.headers

    def encode(self, pcm: bytes) -> list[EncodedAudio]:
        return self._paged(self._opus.encode(pcm))

    def flush(self) -> list[EncodedAudio]:
        return self._paged(self._opus.flush())

    def passthrough(self, run: OpusRun) -> list[EncodedAudio]:
        """Packets the upstream coded, paged as they are (Opus passthrough)."""
        return self._paged(self._opus.passthrough(run))

    def reset(self) -> None:
        """Drop held-back audio; the Ogg stream (serial, pages, granule) carries on."""
        self._opus.reset()

    def _paged(self, packets: list[EncodedAudio]) -> list[EncodedAudio]:
        if not packets:
            return []
        pages = b""
        ticks = iter(p.ticks for p in packets)
        for group in page_groups([p.data for p in packets]):
            self._granule += sum(next(ticks) for _ in group)
            pages += self._writer.page(group, self._granule)
        data, self._unsent_headers = self._unsent_headers + pages, b""
        return [self._clock.stamp(data, sum(p.ticks for p in packets))]
