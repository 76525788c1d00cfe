"""Opus packets straight onto the peer's SRTP socket, from the media clock's tick.

aiortc's ``RTCRtpSender`` runs one task per track that awaits ``recv()``, builds an
``RtpPacket`` object, serialises its header extensions in Python, keeps a retransmission
history, and awaits three coroutines down to the socket: about 50-60 µs of interpreter
work per packet, a quarter of what libopus spends coding it. :class:`RtpOut` does the same
send from the tick that coded the packet: a 12-byte header and the negotiated ``sdes:mid``
extension (both prepared once), one libsrtp ``protect`` and one ``sendto`` on the ICE pair
aiortc nominated. Signalling, ICE, DTLS, keys, RTCP receiving and the sender reports stay
aiortc's: the sender's report counters are kept up to date here, so its reports (and
``getStats``) tell the truth.

This reaches into a few private attributes of aiortc and aioice (the SRTP session, the
nominated candidate pair, the sender's report counters). :meth:`RtpOut.attach` checks
every one of them and answers None when any is missing, and the track then sends through
``recv()`` as any aiortc track does: slower, never broken.

Per packet, two more shortcuts, each with the public path as its fallback: libsrtp's
``srtp_protect`` is called on the session's own buffer with a length cell made once
(pylibsrtp's ``protect`` allocates one per call), and the datagram goes to the socket
itself while asyncio's transport has nothing queued (any error, a full socket included,
hands the packet to ``transport.sendto``, which queues or reports it as always).

Not sent: ``ssrc-audio-level`` (optional per packet; browsers measure the decoded audio
themselves) and ``abs-send-time`` (aiortc does not negotiate it for audio). Opus over
WebRTC is not retransmitted (no NACK is negotiated for audio), so no history is kept.
"""

from __future__ import annotations

import logging
import secrets
import struct
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import RTCRtpTransceiver

__all__ = ["RtpOut"]

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHII")
_VERSION = 0x80  # V=2, no padding, no CSRC
_EXTENSION = 0x10  # X: a header extension follows the fixed header
_MARKER = 0x80
_ONE_BYTE_PROFILE = 0xBEDE  # RFC 8285 one-byte header extensions
_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)
# Name-mangled counters of RTCRtpSender that its RTCP sender reports read.
_REPORT_COUNTERS = (
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__octet_count",
    "_RTCRtpSender__packet_count",
)


class RtpOut:
    """Sends one track's Opus payloads as SRTP on the ICE pair aiortc nominated.

    Make it with :meth:`attach` once the sender started (DTLS is up: aiortc calls the
    track's ``recv()`` for the first time). ``timestamp`` passed to :meth:`send` is the
    track's own 48 kHz clock; a random origin is added, as RFC 3550 asks.
    """

    __slots__ = (
        "_addr",
        "_connected",
        "_dtls",
        "_extension",
        "_first_byte",
        "_nominated",
        "_octets",
        "_packets",
        "_pair",
        "_payload_type",
        "_protect",
        "_sender",
        "_seq",
        "_sock",
        "_srtp",
        "_ssrc",
        "_timestamp_origin",
        "_transport",
    )

    def __init__(
        self,
        *,
        sender: Any,
        dtls: Any,
        srtp: Any,
        ice: Any,
        payload_type: int,
        ssrc: int,
        mid: tuple[int, str] | None,
        seq: int,
        timestamp_origin: int,
    ) -> None:
        self._sender = sender
        self._dtls = dtls
        # The DTLS state as it is now (connected): compared by identity per packet, which
        # costs nothing, where the public ``state`` formats an enum each time.
        self._connected = dtls._state
        self._srtp = srtp
        self._protect = _protector(srtp)
        self._nominated: dict[int, Any] = ice._nominated  # aioice fills it in place
        self._pair: Any = None  # the pair the route below was taken from
        self._transport: Any = None
        self._sock: Any = None  # its socket, when the transport is asyncio's own
        self._addr: Any = None
        self._payload_type = payload_type
        self._ssrc = ssrc
        self._extension = _mid_extension(*mid) if mid else b""
        self._first_byte = _VERSION | (_EXTENSION if self._extension else 0)
        self._seq = seq & 0xFFFF
        self._timestamp_origin = timestamp_origin & 0xFFFFFFFF
        self._packets = 0
        self._octets = 0

    @classmethod
    def attach(cls, transceiver: RTCRtpTransceiver) -> RtpOut | None:
        """A direct sender for ``transceiver``'s negotiated Opus stream, or None when DTLS
        is not up or aiortc's internals are not what this module knows (then send through
        ``recv()``)."""
        sender = transceiver.sender
        try:
            dtls = sender.transport
            srtp = dtls._tx_srtp
            ice = dtls.transport._connection
            codecs = transceiver._codecs
            extensions = transceiver._headerExtensions
            ssrc = sender._ssrc
            if srtp is None or not codecs or not isinstance(ice._nominated, dict):
                return None
            if dtls.state != "connected" or dtls._state is None:
                return None
            if not all(hasattr(sender, name) for name in _REPORT_COUNTERS):
                return None
        except AttributeError:
            logger.info("aiortc internals differ; WebRTC audio goes through RTCRtpSender")
            return None
        codec = codecs[0]
        if codec.mimeType.lower() != "audio/opus" or codec.payloadType is None:
            return None
        mid_id = next((e.id for e in extensions if e.uri == _MID_URI), None)
        mid = (mid_id, transceiver.mid) if mid_id and transceiver.mid else None
        seed = secrets.randbits(48)
        return cls(
            sender=sender,
            dtls=dtls,
            srtp=srtp,
            ice=ice,
            payload_type=codec.payloadType,
            ssrc=ssrc,
            mid=mid,
            seq=seed >> 32,
            timestamp_origin=seed & 0xFFFFFFFF,
        )

    @property
    def packets_sent(self) -> int:
        """Packets handed to the socket."""
        return self._packets

    def send(self, payload: bytes, timestamp: int, marker: bool = False) -> bool:
        """Protect and send one packet; False when the connection is gone (nothing sent)."""
        pair = self._nominated.get(1)
        if pair is None or self._dtls._state is not self._connected:
            return False
        if pair is not self._pair:
            self._route(pair)
        rtp_timestamp = (self._timestamp_origin + timestamp) & 0xFFFFFFFF
        header = _HEADER.pack(
            self._first_byte,
            (_MARKER if marker else 0) | self._payload_type,
            self._seq,
            rtp_timestamp,
            self._ssrc,
        )
        packet = self._protect(header + self._extension + payload)
        transport = self._transport
        if self._sock is None or transport._buffer:
            transport.sendto(packet, self._addr)  # behind what asyncio holds queued
        else:
            try:
                self._sock.sendto(packet, self._addr)
            except OSError:
                transport.sendto(packet, self._addr)  # queues it, or reports the error
        self._seq = (self._seq + 1) & 0xFFFF
        self._packets += 1
        self._octets += len(payload)
        sender = self._sender
        # What RTCRtpSender's RTCP sender reports carry: the pair of clocks at the last
        # packet, and the counts.
        sender._RTCRtpSender__ntp_timestamp = int((time.time() + _NTP_EPOCH_OFFSET) * (1 << 32))
        sender._RTCRtpSender__rtp_timestamp = rtp_timestamp
        sender._RTCRtpSender__octet_count = self._octets
        sender._RTCRtpSender__packet_count = self._packets
        return True

    def _route(self, pair: Any) -> None:
        """Where ``pair``'s packets go: its transport and address, and the transport's
        socket when it is asyncio's datagram transport (a socket and a send queue)."""
        self._pair = pair
        self._transport = pair.protocol.transport
        self._addr = pair.remote_addr
        sock = getattr(self._transport, "_sock", None)
        queued = getattr(self._transport, "_buffer", None)
        direct = callable(getattr(sock, "sendto", None)) and queued is not None
        self._sock = sock if direct else None


def _protector(srtp: Any) -> Callable[[bytes], bytes]:
    """``srtp.protect`` without its per-call allocation: libsrtp on the session's own
    buffer, with a length cell made once. ``srtp.protect`` itself when pylibsrtp's
    session is not what this knows (anything but a ``pylibsrtp.Session``)."""
    try:
        from pylibsrtp._binding import ffi, lib  # type: ignore[import-not-found]

        if type(srtp) is not pylibsrtp.Session:
            raise TypeError(type(srtp).__name__)
        session, cdata, buffer = srtp._srtp[0], srtp._cdata, srtp._buffer
        room = len(cdata) - pylibsrtp.SRTP_MAX_TRAILER_LEN
    except (ImportError, AttributeError, TypeError):
        protect: Callable[[bytes], bytes] = srtp.protect
        return protect
    length = ffi.new("int *")
    call = lib.srtp_protect

    def protect_packet(packet: bytes) -> bytes:
        size = len(packet)
        if size > room:
            raise ValueError("packet is too long")
        buffer[0:size] = packet
        length[0] = size
        status = call(session, cdata, length)
        if status:
            raise pylibsrtp.Error(f"srtp_protect failed with status {status}")
        data: bytes = buffer[0 : length[0]]
        return data

    return protect_packet


def _mid_extension(ext_id: int, mid: str) -> bytes:
    """The RFC 8285 one-byte-header extension block carrying ``mid``, padded to 32 bits."""
    value = mid.encode()
    if not 1 <= ext_id <= 14 or not 1 <= len(value) <= 16:
        raise ValueError(f"cannot carry mid {mid!r} as one-byte extension {ext_id}")
    element = bytes([ext_id << 4 | (len(value) - 1)]) + value
    element += bytes(-len(element) % 4)
    return struct.pack("!HH", _ONE_BYTE_PROFILE, len(element) // 4) + element
