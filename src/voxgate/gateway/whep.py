"""WHEP: a session's audio over WebRTC, negotiated with one HTTP request.

Follows the WebRTC-HTTP Egress Protocol draft, shaped like RFC 9725 (WHIP):

- ``POST /v1/sessions/{id}/whep`` with an SDP offer (``application/sdp``) attaches a
  WebRTC audio track to a live realtime session; ``POST /v1/whep`` creates a new session
  whose text then arrives over an RTCDataChannel speaking the WebSocket's JSON protocol.
  Both answer ``201 Created`` with the SDP answer, a ``Location`` for the new resource, an
  ``ETag`` and one ``Link: <...>; rel="ice-server"`` per configured STUN/TURN server.
- ``DELETE`` on the location ends it; ``PATCH`` is refused with 405 (no trickle ICE, no ICE
  restart: candidates are all in the answer, as aiortc gathers them before answering).
- Authorization: ``Bearer`` with an API key, or a client token scoped to that session;
  a token is redeemed (spent) only once the session is found and the offer is read.

Peer connection states drive the resource: failed or closed frees everything (track, tasks,
UDP ports) and, for a session created here, settles its credits; a peer that does not
connect within ``CONNECT_TIMEOUT_S`` is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import OperationError
from aiortc.rtcdatachannel import RTCDataChannel

from voxgate.errors import AuthError, InvalidInput
from voxgate.gateway.access.principal import Principal
from voxgate.gateway.cluster.forward import to_resource_owner, to_session_owner
from voxgate.gateway.metrics import WebrtcSample
from voxgate.gateway.webrtc.clock import MediaClock
from voxgate.gateway.webrtc.sdp import describe_mono_opus, send_opus_only
from voxgate.gateway.webrtc.track import SessionAudioTrack, TrackOptions

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
DATA_CHANNEL_LABEL = "voxgate"
_MAX_SDP_BYTES = 64 * 1024
_NO_AUDIO = "the offer has no audio m-line to send the speech on"
_OPUS = re.compile(r"(?im)^a=rtpmap:\d+ opus/48000")


@dataclass
class WhepResource:
    resource_id: str
    session_id: str
    account_id: str
    pc: RTCPeerConnection
    track: SessionAudioTrack
    etag: str
    owns_session: bool  # created by POST /v1/whep: the data channel is its only client
    connection: Any = None  # the RealtimeConnection the track is attached to
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    closed: bool = False


class WhepEndpoint:
    def __init__(self, services: Any, connection_factory: Any) -> None:
        self.services = services
        self._new_connection = connection_factory  # (socket, principal) -> RealtimeConnection
        self.resources: dict[str, WhepResource] = {}
        services.metrics.webrtc_sampler = self.sample

    def sample(self) -> WebrtcSample:
        """The live peers' counters and the process' media clock, for ``/metrics``."""
        stats = [resource.track.stats for resource in self.resources.values()]
        clock = MediaClock.shared().stats()
        return WebrtcSample(
            peers=len(stats),
            packets_sent=sum(s.packets_sent for s in stats),
            underruns_gateway=sum(s.underruns_gateway for s in stats),
            underruns_upstream=sum(s.underruns_upstream for s in stats),
            clock_streams=clock.streams,
            clock_late_p99_s=clock.late_p99_ms / 1000,
            clock_skipped_ticks=clock.skipped_ticks,
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/sessions/{session_id}/whep", self.attach),
            web.post("/v1/whep", self.create),
            web.delete("/v1/whep/{resource_id}", self.delete),
            web.patch("/v1/whep/{resource_id}", self.patch),
            web.options("/v1/sessions/{session_id}/whep", self.options),
            web.options("/v1/whep", self.options),
        ]

    # -- handlers ---------------------------------------------------------------------

    @to_session_owner
    async def attach(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        # Redeeming a client token spends it, so a token is redeemed only once the session
        # is found and the offer read; an API key costs nothing to check and goes first.
        principal = None if _client_token(request) else await self._authorize(request, session_id)
        connection = self.services.live_sessions.get(session_id)
        if connection is None:
            raise InvalidInput(f"no live session {session_id!r} on this server", code="not_found")
        offer = await _offer(request)
        if principal is None:
            principal = await self._authorize(request, session_id)
        if connection.principal.account_id != principal.account_id:
            raise AuthError("that session belongs to another account", code="forbidden")
        resource = await self._negotiate(offer, session_id, principal, owns_session=False)
        connection.attach_webrtc(resource.track)
        resource.connection = connection
        return self._created(resource)

    async def create(self, request: web.Request) -> web.Response:
        # As in attach: a client token is redeemed only once the offer is known to be usable.
        principal = None if _client_token(request) else await self._authorize(request, None)
        offer = await _offer(request)
        if "m=application" not in offer:
            raise InvalidInput(
                "POST /v1/whep needs a data channel in the offer for the text; "
                "to listen to an existing session use /v1/sessions/{id}/whep",
                code="no_data_channel",
            )
        if principal is None:
            principal = await self._authorize(request, None)
        resource = await self._negotiate(offer, None, principal, owns_session=True)
        return self._created(resource)

    @to_resource_owner
    async def delete(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        if "Authorization" in request.headers:
            await self._authorize(request, resource.session_id, account_id=resource.account_id)
        # Without credentials, the resource URL itself (96 random bits, handed only to the
        # peer that negotiated it) is the capability: a browser's token is spent by then.
        await self.close(resource)
        return web.Response(status=200)

    @to_resource_owner
    async def patch(self, request: web.Request) -> web.Response:
        self._resource(request)
        # Trickle ICE and ICE restarts are not supported: all candidates are in the answer.
        return web.Response(
            status=405,
            headers={"Allow": "DELETE"},
            text="trickle ICE and ICE restart are not supported",
        )

    async def options(self, request: web.Request) -> web.Response:
        headers = {"Allow": "OPTIONS, POST", "Accept-Post": "application/sdp"}
        headers.update(self._link_headers())
        return web.Response(status=204, headers=headers)

    # -- negotiation ------------------------------------------------------------------

    async def _negotiate(
        self, offer: str, session_id: str | None, principal: Principal, *, owns_session: bool
    ) -> WhepResource:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers()))
        settings = self.services.settings
        track = SessionAudioTrack(
            TrackOptions(
                bitrate=settings.webrtc_opus_bitrate,
                complexity=settings.webrtc_opus_complexity,
                dtx=settings.webrtc_dtx,
            )
        )
        resource = WhepResource(
            resource_id=self.services.cluster.resource_id(secrets.token_urlsafe(12)),
            session_id=session_id or "",
            account_id=principal.account_id,
            pc=pc,
            track=track,
            etag=f'"{secrets.token_hex(8)}"',
            owns_session=owns_session,
        )
        try:
            if owns_session:
                pc.on("datachannel", lambda channel: self._on_channel(resource, channel, principal))
            # Made before the offer is read: aiortc settles the answer's codecs as it reads
            # the offer, and our Opus packets must never go out under another codec's label.
            transceiver = pc.addTransceiver("audio", direction="sendonly")
            send_opus_only(transceiver)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            if transceiver.mid is None:
                raise InvalidInput(_NO_AUDIO, code="no_audio")
            transceiver.sender.replaceTrack(track)
            track.bind(transceiver)
            await pc.setLocalDescription(await pc.createAnswer())
        except (ValueError, OperationError) as exc:
            await pc.close()
            raise InvalidInput(f"cannot use this SDP offer: {exc}", code="bad_sdp") from None
        except BaseException:
            await pc.close()
            raise
        self.resources[resource.resource_id] = resource
        pc.on("connectionstatechange", lambda: self._on_state(resource))
        self._spawn(resource, self._connect_deadline(resource))
        return resource

    def _created(self, resource: WhepResource) -> web.Response:
        answer = describe_mono_opus(
            resource.pc.localDescription.sdp, bitrate=resource.track.options.bitrate
        )
        headers = {
            "Location": f"/v1/whep/{resource.resource_id}",
            "ETag": resource.etag,
            "Content-Type": "application/sdp",
        }
        response = web.Response(status=201, body=answer.encode(), headers=headers)
        for value in self._link_values():
            response.headers.add("Link", value)
        return response

    # -- lifecycle --------------------------------------------------------------------

    def _on_state(self, resource: WhepResource) -> None:
        state = resource.pc.connectionState
        log.info("whep %s: peer %s", resource.resource_id, state)
        if state in ("failed", "closed"):
            self._spawn(resource, self.close(resource))

    async def _connect_deadline(self, resource: WhepResource) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if resource.pc.connectionState != "connected":
            log.info("whep %s: peer never connected; dropped", resource.resource_id)
            await self.close(resource)

    async def close(self, resource: WhepResource) -> None:
        """Free the track, the peer connection (its UDP ports) and, if ours, the session."""
        if resource.closed:
            return
        resource.closed = True
        self.resources.pop(resource.resource_id, None)
        if resource.connection is not None:
            if resource.owns_session:
                await resource.connection.socket_closed()
            else:
                resource.connection.detach_webrtc(resource.track)
        resource.track.stop()
        await resource.pc.close()
        current = asyncio.current_task()
        for task in list(resource.tasks):
            if task is not current:
                task.cancel()

    async def aclose(self) -> None:
        await asyncio.gather(
            *(self.close(r) for r in list(self.resources.values())), return_exceptions=True
        )

    def _on_channel(
        self, resource: WhepResource, channel: RTCDataChannel, principal: Principal
    ) -> None:
        if channel.label != DATA_CHANNEL_LABEL or resource.connection is not None:
            channel.close()
            return
        socket = DataChannelSocket(channel)
        connection = self._new_connection(socket, principal)
        connection.attach_webrtc(resource.track)
        resource.connection = connection
        resource.session_id = connection.session_id
        self._spawn(resource, self._run_channel(resource, connection))

    async def _run_channel(self, resource: WhepResource, connection: Any) -> None:
        self.services.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.services.connections.discard(connection)
            resource.connection = None
            await self.close(resource)

    # -- helpers ----------------------------------------------------------------------

    async def _authorize(
        self, request: web.Request, session_id: str | None, *, account_id: str | None = None
    ) -> Principal:
        header = request.headers.get("Authorization", "")
        token = _client_token(request)
        principal: Principal
        if token:
            principal = await self.services.redeem_token(token, request.headers.get("Origin"))
            if principal.session_id is not None and principal.session_id != session_id:
                raise AuthError("this client token is for another session", code="token_scope")
        else:
            principal = await self.services.authenticate_bearer(header)
        if account_id is not None and principal.account_id != account_id:
            raise AuthError("that resource belongs to another account", code="forbidden")
        return principal

    def _resource(self, request: web.Request) -> WhepResource:
        resource = self.resources.get(request.match_info["resource_id"])
        if resource is None:
            raise InvalidInput("no such WHEP resource", code="not_found")
        return resource

    def _ice_servers(self) -> list[RTCIceServer]:
        settings = self.services.settings
        servers = [RTCIceServer(urls=url) for url in settings.stun_urls]
        if settings.turn_url:
            servers.append(
                RTCIceServer(
                    urls=settings.turn_url,
                    username=settings.turn_username,
                    credential=settings.turn_credential,
                )
            )
        return servers

    def _link_values(self) -> list[str]:
        settings = self.services.settings
        links = [f'<{url}>; rel="ice-server"' for url in settings.stun_urls]
        if settings.turn_url:
            links.append(
                f'<{settings.turn_url}>; rel="ice-server"; '
                f'username="{settings.turn_username}"; '
                f'credential="{settings.turn_credential}"; credential-type="password"'
            )
        return links

    def _link_headers(self) -> dict[str, str]:
        values = self._link_values()
        return {"Link": ", ".join(values)} if values else {}

    def _spawn(self, resource: WhepResource, coro: Any) -> None:
        task = asyncio.create_task(coro)
        resource.tasks.add(task)
        task.add_done_callback(resource.tasks.discard)


def _client_token(request: web.Request) -> str:
    """The client token in ``Authorization: Bearer vgct_...``, or "" (an API key, or none)."""
    header = request.headers.get("Authorization", "")
    token = header.partition(" ")[2].strip() if header.lower().startswith("bearer ") else ""
    return token if token.startswith("vgct_") else ""


async def _offer(request: web.Request) -> str:
    if request.content_type != "application/sdp":
        raise InvalidInput("send the SDP offer as application/sdp", code="unsupported_media_type")
    body = await request.content.read(_MAX_SDP_BYTES + 1)
    if len(body) > _MAX_SDP_BYTES:
        raise InvalidInput("SDP offer too large", code="bad_sdp")
    offer = body.decode("utf-8", "replace")
    if not offer.startswith("v=0"):
        raise InvalidInput("the body is not an SDP offer (it must start with v=0)", code="bad_sdp")
    audio = next((m for m in re.split(r"(?m)^(?=m=)", offer) if m.startswith("m=audio")), None)
    if audio is None:
        raise InvalidInput(_NO_AUDIO, code="no_audio")
    if not _OPUS.search(audio):
        raise InvalidInput("the offer's audio does not take Opus, all we send", code="no_opus")
    return offer


class _Message:
    """What ``RealtimeConnection`` reads from a socket: a type and data, like aiohttp's."""

    def __init__(self, type_: WSMsgType, data: Any) -> None:
        self.type = type_
        self.data = data
        self.extra = None


class DataChannelSocket:
    """An RTCDataChannel seen as the WebSocket a RealtimeConnection expects."""

    def __init__(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        self._inbox: asyncio.Queue[_Message] = asyncio.Queue()
        self.closed = False
        channel.on("message", self._on_message)
        channel.on("close", self._on_close)

    def _on_message(self, message: str | bytes) -> None:
        kind = WSMsgType.TEXT if isinstance(message, str) else WSMsgType.BINARY
        self._inbox.put_nowait(_Message(kind, message))

    def _on_close(self) -> None:
        self.closed = True
        self._inbox.put_nowait(_Message(WSMsgType.CLOSED, None))

    async def receive(self) -> _Message:
        if self.closed and self._inbox.empty():
            return _Message(WSMsgType.CLOSED, None)
        return await self._inbox.get()

    async def send_str(self, data: str) -> None:
        self._check()
        self._channel.send(data)

    async def send_bytes(self, data: bytes) -> None:
        self._check()
        self._channel.send(data)

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        if not self.closed:
            self.closed = True
            self._channel.close()
            self._inbox.put_nowait(_Message(WSMsgType.CLOSED, None))
        return True

    def _check(self) -> None:
        if self.closed or self._channel.readyState != "open":
            raise ConnectionResetError("the data channel is closed")
