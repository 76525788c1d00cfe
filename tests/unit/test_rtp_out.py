"""RtpOut's packets, read back by aiortc's own RTP parser and by libsrtp; attach declines what it
does not know; the socket takes packets directly only while asyncio queues none."""

from __future__ import annotations

import struct
from collections import deque
from types import SimpleNamespace
from typing import Any

import pylibsrtp
import pytest
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from voxgate.gateway.webrtc.rtp import RtpOut, _protector


class Socket:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


class ClearSrtp:
    """Stands in for libsrtp only here: protect() returns the packet as is, so the test
    can read the header RtpOut built. The real session is exercised by the peer tests."""

    def protect(self, data: bytes) -> bytes:
        return data


class Sender:
    def __init__(self) -> None:
        self._RTCRtpSender__ntp_timestamp = 0
        self._RTCRtpSender__rtp_timestamp = 0
        self._RTCRtpSender__octet_count = 0
        self._RTCRtpSender__packet_count = 0


def make_out(socket: Socket, *, nominated: bool = True) -> Any:
    pair = SimpleNamespace(protocol=SimpleNamespace(transport=socket), remote_addr=("h", 9))
    return RtpOut(
        sender=Sender(),
        dtls=SimpleNamespace(state="connected", _state=State.CONNECTED),
        srtp=ClearSrtp(),
        ice=SimpleNamespace(_nominated={1: pair} if nominated else {}),
        payload_type=111,
        ssrc=0x1234ABCD,
        mid=(1, "0"),
        seq=65535,
        timestamp_origin=0xFFFFFF00,
    )


def parse(data: bytes) -> RtpPacket:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid")
            ]
        )
    )
    return RtpPacket.parse(data, extensions)


def test_packets_read_back_with_mid_marker_and_wrapping_counters() -> None:
    socket = Socket()
    out = make_out(socket)
    assert out.send(b"\xf8\xff\xfe", 0, marker=True)
    assert out.send(b"opus-bytes", 960)
    first, second = (parse(data) for data, _ in socket.sent)
    assert (first.payload_type, first.ssrc, first.marker) == (111, 0x1234ABCD, 1)
    assert (first.sequence_number, second.sequence_number) == (65535, 0)  # wraps at 16 bits
    assert (first.timestamp, second.timestamp) == (0xFFFFFF00, (0xFFFFFF00 + 960) % (1 << 32))
    assert first.extensions.mid == "0"
    assert second.extensions.mid == "0"
    assert (second.marker, second.payload) == (0, b"opus-bytes")
    assert socket.sent[0][1] == ("h", 9)
    assert out.packets_sent == 2
    # The sender's RTCP reports read these.
    assert out._sender._RTCRtpSender__packet_count == 2
    assert out._sender._RTCRtpSender__octet_count == 13
    assert out._sender._RTCRtpSender__rtp_timestamp == second.timestamp


def test_nothing_is_sent_before_ice_nominates_or_after_dtls_closes() -> None:
    socket = Socket()
    assert not make_out(socket, nominated=False).send(b"x", 0)
    closed = make_out(socket)
    closed._dtls._state = State.CLOSED
    assert not closed.send(b"x", 0)
    assert socket.sent == []


def test_attach_declines_a_transceiver_it_does_not_know() -> None:
    transceiver: Any = SimpleNamespace(sender=SimpleNamespace(transport=None))
    assert RtpOut.attach(transceiver) is None


KEY = bytes(range(30))  # 16-byte master key + 14-byte salt


def srtp_session(direction: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(
        pylibsrtp.Policy(
            key=KEY,
            ssrc_type=direction,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        )
    )


def test_protect_without_allocation_is_libsrtp_protect() -> None:
    ours, theirs = (
        srtp_session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND),
        srtp_session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND),
    )
    receiver = srtp_session(pylibsrtp.Policy.SSRC_ANY_INBOUND)
    protect = _protector(ours)
    for seq in range(3):
        packet = struct.pack("!BBHII", 0x80, 111, seq, seq * 960, 0x1234) + bytes([seq]) * 40
        protected = protect(packet)
        assert protected == theirs.protect(packet)
        assert receiver.unprotect(protected) == packet
    with pytest.raises(ValueError, match="too long"):
        protect(bytes(1500))


class QueueingTransport:
    """asyncio's datagram transport as RtpOut sees it: a socket and a send queue."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer: deque[tuple[bytes, Any]] = deque()
        self.queued: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.queued.append(data)


class FullSocket:
    def sendto(self, data: bytes, addr: Any) -> None:
        raise BlockingIOError


def direct_out(transport: Any) -> Any:
    out = make_out(Socket())
    pair = SimpleNamespace(protocol=SimpleNamespace(transport=transport), remote_addr=("h", 9))
    out._nominated[1] = pair
    return out


def test_the_socket_itself_takes_packets_while_nothing_is_queued() -> None:
    sock = Socket()
    transport = QueueingTransport(sock)
    out = direct_out(transport)
    assert out.send(b"first", 0)
    transport._buffer.append((b"waiting", ("h", 9)))  # asyncio holds one back: keep order
    assert out.send(b"second", 960)
    assert [data[-5:] for data, _ in sock.sent] == [b"first"]
    assert [data[-6:] for data in transport.queued] == [b"second"]


def test_a_full_socket_hands_the_packet_to_the_transport() -> None:
    transport = QueueingTransport(FullSocket())
    out = direct_out(transport)
    assert out.send(b"payload", 0)
    assert [data[-7:] for data in transport.queued] == [b"payload"]
    assert out.packets_sent == 1
