"""RTP to a SIP media server (Asterisk ``externalMedia``, FreeSWITCH, a trunk's media
gateway): the call leg's dialect, the RTCP it sends, and the SDP that describes it.

Pure: packets are built here and sent by the UDP socket in ``rtp_endpoint.py``.

* **RTP** (RFC 3550, profile RFC 3551): version 2, one random SSRC for the stream, the
  sequence number +1 per packet from a random origin, the timestamp from a random origin
  advancing by the samples each packet carries on the codec's clock: PCMU 160 per 20 ms at
  8 kHz, Opus 960 per 20 ms at 48 kHz (RFC 7587; voxgate's encoder makes 20 ms packets
  only), L16 320 per 20 ms at 16 kHz (RFC 3551 §4.5.11: network byte order, so the leg's
  little-endian samples are swapped).
* **Talkspurts**: the leg sends nothing between turns, so the stream has silences. The
  dialect finds them itself from a monotonic clock: each packet is due (plays at the
  receiver) ``samples / clock`` after the one before, from the start of its talkspurt. A
  packet asked for more than ``TALKSPURT_GAP_S`` after the previous packet's due time
  starts a new talkspurt: it carries the marker bit, as RFC 3551 §4.1 asks, and its
  timestamp moves on by the silence's wall time, so the receiver's playout keeps the
  pause. A shorter delay is the leg being a little late: the timestamps stay contiguous and
  the receiver's jitter buffer absorbs it. The first packet of the stream is marked too.
* **RTCP**: a sender report (RFC 3550 §6.4.1: NTP and RTP timestamps of one instant, the
  packet and octet counts) with the SDES ``CNAME`` a compound packet must carry, and on
  stop the same followed by a ``BYE``.
"""

from __future__ import annotations

import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voxgate.codecs.opus_toc import packet_samples
from voxgate.codecs.output_format import Encoding
from voxgate.errors import ProtocolViolation
from voxgate.gateway.telephony.dialect import CallEvent

__all__ = [
    "CODECS",
    "TALKSPURT_GAP_S",
    "RtpCodec",
    "RtpDialect",
    "describe",
    "goodbye",
    "sender_report",
]

TALKSPURT_GAP_S = 0.040
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)

_HEADER = struct.Struct("!BBHII")
_VERSION = 0x80  # V=2, no padding, no extension, no CSRC
_MARKER = 0x80
_RTCP_SR = 200
_RTCP_SDES = 202
_RTCP_BYE = 203
_SDES_CNAME = 1


@dataclass(frozen=True, slots=True)
class RtpCodec:
    """One codec as RTP names it, and as the call leg encodes it."""

    name: str  # the SDP encoding name: PCMU, opus, L16
    encoding: Encoding  # what the leg's encoder makes
    clock_rate: int  # the RTP clock, also the leg's encoder rate
    default_payload_type: int
    rtpmap: str  # a=rtpmap's value after the payload type

    def samples(self, payload: bytes) -> int:
        """How many ticks of the RTP clock ``payload`` lasts."""
        if self.encoding == "mulaw":
            return len(payload)
        if self.encoding == "opus":
            return packet_samples(payload)  # 960 when coded here; its own when passed through
        return len(payload) // 2


CODECS: dict[str, RtpCodec] = {
    "PCMU": RtpCodec("PCMU", "mulaw", 8000, 0, "PCMU/8000"),
    "opus": RtpCodec("opus", "opus", 48000, 111, "opus/48000/2"),  # always /2: RFC 7587
    "L16": RtpCodec("L16", "pcm_s16le", 16000, 96, "L16/16000/1"),
}


class RtpDialect:
    """The call leg's RTP packets: ``media`` answers each payload as one whole packet."""

    name = "rtp"
    marks = False  # RTP has no echo of what played: the leg models the playout

    def __init__(
        self,
        codec: RtpCodec,
        payload_type: int | None = None,
        *,
        ssrc: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.codec = codec
        self.encoding: Encoding = codec.encoding
        self.sample_rate = codec.clock_rate
        pt = codec.default_payload_type if payload_type is None else payload_type
        self.payload_type = pt
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.packets_sent = 0
        self.octets_sent = 0  # payload octets, as sender reports count them
        self._clock = clock
        self._seq = secrets.randbits(16)
        self._origin = secrets.randbits(32)
        self._next_ticks = 0  # the next packet's timestamp, from the origin
        self._last_ticks = 0  # the previous packet's
        self._spurt: tuple[float, int] | None = None  # (when, ticks) its talkspurt began

    def parse(self, data: str | bytes) -> CallEvent:
        raise ProtocolViolation("RTP egress receives nothing", code="invalid_message")

    def media(self, payload: bytes) -> bytes:
        now = self._clock()
        marker = self._talkspurt_starts(now)
        ticks = self._next_ticks
        if self.encoding == "pcm_s16le":
            payload = np.frombuffer(payload, "<i2").astype(">i2").tobytes()
        header = _HEADER.pack(
            _VERSION,
            (_MARKER if marker else 0) | self.payload_type,
            self._seq,
            (self._origin + ticks) & 0xFFFFFFFF,
            self.ssrc,
        )
        self._seq = (self._seq + 1) & 0xFFFF
        self._last_ticks = ticks
        self._next_ticks = ticks + self.codec.samples(payload)
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return header + payload

    def mark(self, name: str) -> str:
        raise RuntimeError("RTP has no marks")

    def clear(self) -> None:
        return None  # nothing is held downstream but the receiver's jitter buffer

    def timestamp_at(self, now: float) -> int:
        """The RTP timestamp of the instant ``now`` (monotonic), as sender reports say it."""
        if self._spurt is None:
            return self._origin
        began, ticks = self._spurt
        return (self._origin + ticks + round((now - began) * self.sample_rate)) & 0xFFFFFFFF

    def _talkspurt_starts(self, now: float) -> bool:
        if self._spurt is None:
            self._spurt = (now, 0)
            return True
        began, ticks = self._spurt
        previous_due = began + (self._last_ticks - ticks) / self.sample_rate
        if now - previous_due <= TALKSPURT_GAP_S:
            return False
        # The silence is in the timestamps, so the receiver plays the pause where it was.
        elapsed = ticks + round((now - began) * self.sample_rate)
        self._next_ticks = max(self._next_ticks, elapsed)
        self._spurt = (now, self._next_ticks)
        return True


def sender_report(
    ssrc: int, unix_time: float, rtp_timestamp: int, packets: int, octets: int, cname: str
) -> bytes:
    """A compound RTCP packet: SR without report blocks, then SDES with the CNAME."""
    ntp = int((unix_time + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF
    body = struct.pack(
        "!IIIIII",
        ssrc,
        ntp >> 32,
        ntp & 0xFFFFFFFF,
        rtp_timestamp & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )
    return _rtcp(_RTCP_SR, 0, body) + _source_description(ssrc, cname)


def goodbye(report: bytes, ssrc: int, reason: str = "") -> bytes:
    """``report`` (a compound packet must open with one) followed by a BYE for ``ssrc``."""
    body = struct.pack("!I", ssrc)
    if reason:
        text = reason.encode()[:255]
        body += bytes([len(text)]) + text
        body += bytes(-len(body) % 4)
    return report + _rtcp(_RTCP_BYE, 1, body)


def describe(
    codec: RtpCodec,
    payload_type: int,
    *,
    address: str,
    port: int,
    rtcp_port: int,
    ssrc: int,
    cname: str,
    session: str,
) -> str:
    """The SDP a receiver (ffmpeg, a media server) reads to take this stream on ``port``."""
    family = "IP6" if ":" in address else "IP4"
    version = secrets.randbits(31)
    lines = [
        "v=0",
        f"o=- {version} {version} IN {family} {address}",
        f"s=voxgate {session}",
        f"c=IN {family} {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {payload_type}",
        f"a=rtpmap:{payload_type} {codec.rtpmap}",
        *([f"a=fmtp:{payload_type} stereo=0;sprop-stereo=0"] if codec.name == "opus" else []),
        "a=ptime:20",
        f"a=rtcp:{rtcp_port}",
        f"a=ssrc:{ssrc} cname:{cname}",
        "a=sendonly",
    ]
    return "\r\n".join(lines) + "\r\n"


def _rtcp(packet_type: int, count: int, body: bytes) -> bytes:
    # Length in 32-bit words minus one, the header's word included.
    return struct.pack("!BBH", _VERSION | count, packet_type, len(body) // 4) + body


def _source_description(ssrc: int, cname: str) -> bytes:
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, _SDES_CNAME, len(text)) + text
    chunk += bytes(4 - len(chunk) % 4)  # the item list ends with at least one null octet
    return _rtcp(_RTCP_SDES, 1, chunk)
