"""``/v1/sessions/{session_id}/rtp``: a live session's audio as RTP to a SIP media server.

``POST`` (an API key of the session's account as bearer) with ``{"host", "port", "codec":
"PCMU" | "opus" | "L16", "payload_type"?, "rtcp_port"?}`` attaches a call leg that sends
the session's speech as RTP over UDP to ``host:port`` and RTCP sender reports every
``REPORT_INTERVAL_S`` to ``rtcp_port`` (default ``port + 1``); it answers 201 with the
sink's ``id``, its ``ssrc`` and an SDP a receiver can read (``ffmpeg -i stream.sdp``).
``DELETE /v1/sessions/{session_id}/rtp/{id}`` stops it with an RTCP BYE; the session's
socket gets ``telephony.detached`` (``stop``). A session that ends hangs the leg up: BYE too.

The leg (``leg.py``) writes to :class:`RtpSocket` as it writes to a provider's WebSocket:
``send_bytes`` for each packet (the dialect in ``rtp.py`` builds it), ``close`` at hang-up.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from voxgate.envelope import ok
from voxgate.errors import AuthError, InvalidInput, LimitExceeded
from voxgate.gateway.cluster.forward import to_session_owner
from voxgate.gateway.telephony.leg import CallLeg
from voxgate.gateway.telephony.rtp import CODECS, RtpCodec, RtpDialect, describe, goodbye
from voxgate.gateway.telephony.rtp import sender_report as build_sender_report
from voxgate.sessions.options import SessionOptions
from voxgate.upstream.engine.validation import parse_json_object

if TYPE_CHECKING:
    from voxgate.gateway.realtime import RealtimeConnection

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 5.0
_DYNAMIC_TYPES = range(96, 128)
_MAX_BODY_BYTES = 4096


@dataclass(frozen=True, slots=True)
class RtpTarget:
    """Where the stream goes, and how it is coded; validated from the request's body."""

    host: str
    port: int
    rtcp_port: int
    codec: RtpCodec
    payload_type: int


class _Datagrams(asyncio.DatagramProtocol):
    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the receiver is not (yet, or any more) listening:
        # the stream goes on, as RTP does, and finds it once it listens again.
        log.debug("rtp send: %r", exc)


class RtpSocket:
    """The leg's socket for RTP: packets to the target, RTCP beside them."""

    def __init__(
        self,
        rtp: asyncio.DatagramTransport,
        rtcp: asyncio.DatagramTransport,
        dialect: RtpDialect,
    ) -> None:
        self.dialect = dialect
        self.closed = False
        self.on_close: Callable[[], object] | None = None
        self._rtp = rtp
        self._rtcp = rtcp
        self._reports: asyncio.Task[None] | None = None
        self.local_address: str = rtp.get_extra_info("sockname")[0]
        self.cname = f"voxgate@{self.local_address}"

    @classmethod
    async def open(cls, target: RtpTarget, dialect: RtpDialect) -> RtpSocket:
        loop = asyncio.get_running_loop()
        address = await _resolve(target.host, target.port)
        rtp, _ = await loop.create_datagram_endpoint(_Datagrams, remote_addr=(address, target.port))
        try:
            rtcp, _ = await loop.create_datagram_endpoint(
                _Datagrams, remote_addr=(address, target.rtcp_port)
            )
        except OSError:
            rtp.close()
            raise
        return cls(rtp, rtcp, dialect)

    async def send_bytes(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("the RTP stream is stopped")
        self._rtp.sendto(data)
        if self._reports is None:
            self._reports = asyncio.create_task(self._report(), name="rtcp-reports")

    async def send_str(self, data: str) -> None:
        raise RuntimeError("RTP carries no text messages")  # the dialect makes none

    async def close(self, *, code: int = 1000, message: bytes = b"") -> None:
        """Stop: a last sender report and a BYE (when anything was sent), then the sockets."""
        if self.closed:
            return
        self.closed = True
        if self._reports is not None:
            self._reports.cancel()
            await asyncio.gather(self._reports, return_exceptions=True)
            self._rtcp.sendto(goodbye(self._sender_report(), self.dialect.ssrc, "stopped"))
        self._rtp.close()
        self._rtcp.close()
        if self.on_close is not None:
            self.on_close()

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            self._rtcp.sendto(self._sender_report())

    def _sender_report(self) -> bytes:
        dialect = self.dialect
        return build_sender_report(
            dialect.ssrc,
            time.time(),
            dialect.timestamp_at(time.monotonic()),
            dialect.packets_sent,
            dialect.octets_sent,
            self.cname,
        )


@dataclass(slots=True)
class RtpSink:
    sink_id: str
    session_id: str
    account_id: str
    connection: RealtimeConnection
    leg: CallLeg
    socket: RtpSocket


class RtpEndpoint:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.sinks: dict[str, RtpSink] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/sessions/{session_id}/rtp", self.attach),
            web.delete("/v1/sessions/{session_id}/rtp/{sink_id}", self.delete),
        ]

    @to_session_owner
    async def attach(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        principal = await self.services.authenticate_bearer(request.headers.get("Authorization"))
        connection, owner = self._connection(session_id)
        if owner != principal.account_id:
            raise AuthError("that session belongs to another account", code="forbidden")
        target = rtp_target(await _body(request))
        dialect = RtpDialect(target.codec, target.payload_type)
        rtp_socket = await self._open(target, dialect)
        sink = RtpSink(
            secrets.token_hex(12),
            session_id,
            principal.account_id,
            connection,
            # The leg writes to its socket as to a WebSocket: send_bytes, send_str, close.
            CallLeg(
                rtp_socket,
                dialect,
                input_rate=SessionOptions().sample_rate,
            ),
            rtp_socket,
        )
        try:
            await connection.attach_call(sink.leg, sink.sink_id, "")
        except LimitExceeded:
            await sink.leg.aclose()
            await rtp_socket.close()
            raise
        self.sinks[sink.sink_id] = sink
        # A session that ends hangs its leg up, which closes the socket: the sink goes too.
        rtp_socket.on_close = lambda: self.sinks.pop(sink.sink_id, None)
        return self._created(sink, target)

    @to_session_owner
    async def delete(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        principal = await self.services.authenticate_bearer(request.headers.get("Authorization"))
        sink = self.sinks.get(request.match_info["sink_id"])
        if sink is None or sink.session_id != session_id:
            raise InvalidInput("no such RTP stream on this session", code="not_found")
        if sink.account_id != principal.account_id:
            raise AuthError("that stream belongs to another account", code="forbidden")
        await self.stop(sink, "stop")
        stats = sink.socket.dialect
        return ok(
            {
                "id": sink.sink_id,
                "packets_sent": stats.packets_sent,
                "octets_sent": stats.octets_sent,
            }
        )

    async def stop(self, sink: RtpSink, reason: str) -> None:
        """As a provider's stream that ends: detached first, at what was heard, then BYE."""
        self.sinks.pop(sink.sink_id, None)
        await sink.connection.detach_call(sink.leg, sink.sink_id, reason)
        await sink.leg.aclose()
        await sink.socket.close()

    async def aclose(self) -> None:
        for sink in list(self.sinks.values()):
            await self.stop(sink, "closed")

    # -- helpers ----------------------------------------------------------------------

    def _connection(self, session_id: str) -> tuple[RealtimeConnection, str]:
        """The live session, and its account."""
        connection: RealtimeConnection | None = self.services.live_sessions.get(session_id)
        if connection is None or connection.principal is None:
            raise InvalidInput(f"no live session {session_id!r} on this server", code="not_found")
        return connection, connection.principal.account_id

    async def _open(self, target: RtpTarget, dialect: RtpDialect) -> RtpSocket:
        try:
            return await RtpSocket.open(target, dialect)
        except OSError as exc:
            raise InvalidInput(
                f"cannot send to {target.host}:{target.port}: {exc.strerror or exc}",
                code="invalid_rtp_target",
            ) from exc

    def _created(self, sink: RtpSink, target: RtpTarget) -> web.Response:
        dialect = sink.socket.dialect
        sdp = describe(
            target.codec,
            target.payload_type,
            address=sink.socket.local_address,
            port=target.port,
            rtcp_port=target.rtcp_port,
            ssrc=dialect.ssrc,
            cname=sink.socket.cname,
            session=sink.session_id,
        )
        data = {"id": sink.sink_id, "ssrc": dialect.ssrc, "codec": target.codec.name, "sdp": sdp}
        response = ok(data)
        response.set_status(201)
        response.headers["Location"] = f"/v1/sessions/{sink.session_id}/rtp/{sink.sink_id}"
        return response


def rtp_target(body: dict[str, Any]) -> RtpTarget:
    """The body of ``POST …/rtp``, checked: ``InvalidInput`` naming the field otherwise."""
    host = body.get("host")
    if not isinstance(host, str) or not host.strip() or len(host) > 253:
        raise InvalidInput("host must be an IP address or a host name", code="invalid_rtp_target")
    port = _port(body, "port", None)
    rtcp_port = _port(body, "rtcp_port", port + 1)
    if rtcp_port == port:
        raise InvalidInput("rtcp_port must differ from port", code="invalid_rtp_target")
    name = body.get("codec")
    codec = next((c for c in CODECS.values() if isinstance(name, str) and _same(c, name)), None)
    if codec is None:
        raise InvalidInput(f"codec {name!r}: one of {', '.join(CODECS)}", code="unsupported_codec")
    payload_type = body.get("payload_type", codec.default_payload_type)
    allowed = (0, *_DYNAMIC_TYPES) if codec.name == "PCMU" else tuple(_DYNAMIC_TYPES)
    if isinstance(payload_type, bool) or payload_type not in allowed:
        raise InvalidInput(
            f"payload_type {payload_type!r}: {codec.name} takes "
            + ("0 or " if codec.name == "PCMU" else "")
            + "a dynamic type, 96 to 127",
            code="invalid_payload_type",
        )
    return RtpTarget(host.strip(), port, rtcp_port, codec, int(payload_type))


def _same(codec: RtpCodec, name: str) -> bool:
    return codec.name.lower() == name.lower()  # SDP encoding names ignore case


def _port(body: dict[str, Any], name: str, default: int | None) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput(f"{name} must be a UDP port, 1 to 65535", code="invalid_rtp_target")
    return value


async def _resolve(host: str, port: int) -> str:
    """``host``'s address to send to; ``OSError`` when it has none a stream may go to."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"{host!r} has no address")
    address = str(infos[0][4][0])
    ip = ipaddress.ip_address(address)
    if ip.is_multicast or ip.is_unspecified or address == "255.255.255.255":
        raise OSError(f"{address} is not one receiver's address")
    return address


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.content.read(_MAX_BODY_BYTES + 1)
    if len(raw) > _MAX_BODY_BYTES:
        raise InvalidInput("the body is too large", code="invalid_json")
    return parse_json_object(raw or b"{}")


__all__ = ["REPORT_INTERVAL_S", "RtpEndpoint", "RtpSink", "RtpSocket", "RtpTarget", "rtp_target"]
