"""What an Opus packet spans, read from its TOC byte and framing (RFC 6716 section 3.1).

Passthrough never decodes, yet it must know each packet's duration to put it on a clock
(an RTP timestamp, a playout position). The TOC byte names the frame size and the framing
code the frame count, so the duration costs a few byte reads, whatever the payload.

The packet is also held to the framing rules of RFC 6716 section 3.4 (R1-R7): a packet
that breaks them would be refused by every decoder downstream, so it is refused here,
where the error can still name the upstream. Frame contents are not looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voxgate.errors import AudioError

Mode = Literal["silk", "hybrid", "celt"]
Bandwidth = Literal["narrowband", "mediumband", "wideband", "superwideband", "fullband"]

MAX_PACKET_SAMPLES = 5760  # 120 ms at 48 kHz: the most one packet may hold (R5)
MAX_FRAME_BYTES = 1275  # the longest frame a length can say, and the implicit limit (R2)


@dataclass(frozen=True, slots=True)
class OpusToc:
    """The table-of-contents byte of an Opus packet: its coding mode and frame layout."""

    config: int
    mode: Mode
    bandwidth: Bandwidth
    frame_samples: int  # per frame, at 48 kHz
    stereo: bool
    code: int  # 0: one frame, 1: two equal frames, 2: two frames, 3: a counted number


def _config_table() -> tuple[tuple[Mode, Bandwidth, int], ...]:
    # RFC 6716 table 2: configurations 0-11 SILK, 12-15 hybrid, 16-31 CELT, four (or two)
    # frame sizes per bandwidth. Frame sizes in 48 kHz samples: 2.5 ms is 120.
    layouts: tuple[tuple[Mode, tuple[Bandwidth, ...], tuple[int, ...]], ...] = (
        ("silk", ("narrowband", "mediumband", "wideband"), (480, 960, 1920, 2880)),
        ("hybrid", ("superwideband", "fullband"), (480, 960)),
        ("celt", ("narrowband", "wideband", "superwideband", "fullband"), (120, 240, 480, 960)),
    )
    table: list[tuple[Mode, Bandwidth, int]] = []
    for mode, bandwidths, sizes in layouts:
        table += [(mode, bandwidth, size) for bandwidth in bandwidths for size in sizes]
    return tuple(table)


_CONFIGS = _config_table()
_FRAME_SAMPLES = tuple(size for _, _, size in _CONFIGS)


def packet_toc(packet: bytes) -> OpusToc:
    """The TOC of ``packet``; only its first byte is read (see :func:`packet_samples`)."""
    if not packet:
        raise _invalid("an empty Opus packet has no TOC byte")
    toc = packet[0]
    mode, bandwidth, frame_samples = _CONFIGS[toc >> 3]
    return OpusToc(toc >> 3, mode, bandwidth, frame_samples, bool(toc & 0x04), toc & 0x03)


def packet_samples(packet: bytes) -> int:
    """How many 48 kHz samples ``packet`` decodes to: 120 (2.5 ms) to 5760 (120 ms).

    Raises :class:`AudioError` (``code="invalid_opus"``) for a packet that breaks RFC 6716's
    framing rules: empty, a frame over 1,275 bytes, a code 1 packet of even length, frame
    lengths that overrun the packet, a code 3 packet without or with a zero frame count,
    more than 120 ms, or padding longer than the packet.
    """
    size = len(packet)
    if size == 0:
        raise _invalid("an empty Opus packet has no TOC byte")
    toc = packet[0]
    frame = _FRAME_SAMPLES[toc >> 3]
    code = toc & 0x03
    if code == 0:
        _check_frame(size - 1)
        return frame
    if code == 1:
        if size % 2 == 0:
            raise _invalid(f"a code 1 packet splits evenly in two frames; {size - 1} bytes do not")
        _check_frame((size - 1) // 2)
        return 2 * frame
    if code == 2:
        first, used = _frame_length(packet, 1, size)
        _check_frame(size - 1 - used - first)
        return 2 * frame
    return frame * _code3_frames(packet, frame)


def _code3_frames(packet: bytes, frame: int) -> int:
    """Check a code 3 packet's frame count byte, padding and frame lengths; the count."""
    size = len(packet)
    if size < 2:
        raise _invalid("a code 3 packet has no frame count byte")
    count = packet[1] & 0x3F
    if count == 0 or count * frame > MAX_PACKET_SAMPLES:
        ms = count * frame / 48
        raise _invalid(f"a code 3 packet holds 1 to 120 ms of frames, not {count} ({ms:g} ms)")
    at, padding = 2, 0
    if packet[1] & 0x40:
        at, padding = _padding(packet)
    end = size - padding  # where the frames stop and the padding starts
    if end < at:
        raise _invalid(f"the padding of a code 3 packet ({padding} bytes) runs past its end")
    if packet[1] & 0x80:  # VBR: a length for every frame but the last
        used = 0
        for _ in range(count - 1):
            length, width = _frame_length(packet, at, end)
            at += width
            used += length
        _check_frame(end - at - used)
    else:
        if (end - at) % count:
            raise _invalid(f"{end - at} bytes do not split into {count} equal (CBR) frames")
        _check_frame((end - at) // count)
    return count


def _padding(packet: bytes) -> tuple[int, int]:
    """(where the padding length ends, how many padding bytes trail the packet)."""
    at, padding = 2, 0
    while True:
        if at + padding >= len(packet):
            raise _invalid("the padding of a code 3 packet runs past its end")
        value = packet[at]
        at += 1
        # 255 says "254 bytes, and the length goes on in the next byte".
        if value < 255:
            return at, padding + value
        padding += 254


def _frame_length(packet: bytes, at: int, end: int) -> tuple[int, int]:
    """A frame length coded at ``at`` (one byte, or two from 252 on) and its width,
    which must leave the frame itself inside ``packet[:end]``."""
    if at >= end:
        raise _invalid("an Opus packet ends inside a frame length")
    first = packet[at]
    if first < 252:
        length, width = first, 1
    elif at + 1 >= end:
        raise _invalid("an Opus packet ends inside a two-byte frame length")
    else:
        length, width = first + 4 * packet[at + 1], 2
    if at + width + length > end:
        raise _invalid(f"a frame of {length} bytes overruns its Opus packet")
    return length, width


def _check_frame(length: int) -> None:
    if length < 0:
        raise _invalid("the frames of an Opus packet are longer than the packet")
    if length > MAX_FRAME_BYTES:
        raise _invalid(f"an Opus frame of {length} bytes; at most {MAX_FRAME_BYTES}")


def _invalid(message: str) -> AudioError:
    return AudioError(message, code="invalid_opus")
