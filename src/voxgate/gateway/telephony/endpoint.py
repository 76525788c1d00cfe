"""``/v1/telephony/{provider}``: a provider's media WebSocket, attached to a live session.

The provider connects when the call reaches the stream instruction (TwiML
``<Connect><Stream url="wss://…/v1/telephony/twilio">``) and names the session in the
stream's custom parameters: ``session_id`` (from ``session.created``) and ``token``, a
client token minted for that session (``POST /v1/client_tokens`` with ``session_id``).
Until both check out nothing is sent to the call; a bad, used, expired or foreign token,
or a session that is not live here, closes the stream with 1008 and the error code as the
reason. Then the leg takes the session's audio, the caller's audio and keys go to the
agent's socket (when it asked for them), and ``stop`` or a dropped stream detaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from voxgate.errors import AuthError, LimitExceeded, ProtocolViolation, VoxgateError
from voxgate.gateway.cluster.forward import forwarded
from voxgate.gateway.telephony.dialect import (
    CallerAudio,
    CallStarted,
    CallStopped,
    Dialect,
    Digit,
    MarkPlayed,
)
from voxgate.gateway.telephony.leg import CallLeg
from voxgate.gateway.telephony.plivo import PlivoDialect
from voxgate.gateway.telephony.round_trip import RoundTrip, keep_timing
from voxgate.gateway.telephony.telnyx import TelnyxDialect
from voxgate.gateway.telephony.twilio import TwilioDialect, signature_matches
from voxgate.gateway.telephony.vonage import VonageDialect
from voxgate.sessions.options import SessionOptions

if TYPE_CHECKING:
    from voxgate.gateway.realtime import RealtimeConnection

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 65_536
START_TIMEOUT_S = 10.0


class TelephonyEndpoint:
    def __init__(self, services: Any) -> None:
        self.services = services

    def routes(self) -> list[web.RouteDef]:
        routes = [web.get("/v1/telephony/twilio", self.twilio)]
        for name, dialect in other_dialects().items():
            routes.append(web.get(f"/v1/telephony/{name}", self._plain(dialect)))
        return routes

    def _plain(self, dialect: Callable[[], Dialect]) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._run(request, dialect())

        return handle

    async def twilio(self, request: web.Request) -> web.StreamResponse:
        auth_token = self.services.settings.twilio_auth_token
        carried, _ = await self.services.cluster.redeem_ticket(request.headers)
        if (
            auth_token
            and not carried
            and not signature_matches(
                auth_token, _urls_as_requested(request), request.headers.get("X-Twilio-Signature")
            )
        ):
            raise AuthError("X-Twilio-Signature does not sign this request", code="forbidden")
        return await self._run(request, TwilioDialect())

    async def _run(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        # Pings and pongs are handled here: the pongs time the round trip to the provider.
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20.0, autoping=False)
        await ws.prepare(request)
        try:
            read: list[str | bytes] = []
            started = await self._started(ws, dialect, read)
            owner_url = await self._owner_elsewhere(request, started)
            if owner_url is not None:
                await self.services.cluster.proxy_stream(ws, request, owner_url, read)
                return ws
            connection = await self._session(started)
        except VoxgateError as exc:
            log.info("%s stream refused: %s", dialect.name, exc.message)
            self.services.metrics.errors.labels(exc.code).inc()
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=exc.code.encode())
            return ws
        leg = CallLeg(ws, dialect, input_rate=SessionOptions().sample_rate)
        try:
            await connection.attach_call(leg, started.stream_id, started.call_id)
        except LimitExceeded as exc:
            await leg.aclose()
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=exc.code.encode())
            return ws
        reason = "dropped"
        round_trip = RoundTrip()
        pinger = asyncio.create_task(keep_timing(ws, round_trip), name="call-pings")
        try:
            reason = await self._relay(ws, dialect, leg, connection, started, round_trip)
        finally:
            pinger.cancel()
            # Detached first: the turn stops at what the caller heard, while the leg still
            # says what that is and before anything more is pushed into it.
            await connection.detach_call(leg, started.stream_id, reason)
            await leg.aclose()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close()
        return ws

    async def _started(
        self, ws: web.WebSocketResponse, dialect: Dialect, read: list[str | bytes]
    ) -> CallStarted:
        """The provider's opening messages, up to the one that names the session (kept in
        ``read``, should the stream be carried to the session's node)."""
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                msg = await ws.receive()
                if msg.type is WSMsgType.PING:
                    await ws.pong(msg.data)
                    continue
                if msg.type is WSMsgType.PONG:
                    continue
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    raise ProtocolViolation("the stream ended before its start message")
                read.append(msg.data)
                event = dialect.parse(msg.data)  # anything but its greeting before start fails
                if isinstance(event, CallStarted):
                    return event

    async def _owner_elsewhere(self, request: web.Request, started: CallStarted) -> str | None:
        """The URL of the node holding the stream's session, when that is another node."""
        session_id = started.parameters.get("session_id")
        if not session_id or session_id in self.services.live_sessions or forwarded(request):
            return None
        url: str | None = await self.services.cluster.owner_url(session_id)
        return url

    async def _session(self, started: CallStarted) -> RealtimeConnection:
        session_id = started.parameters.get("session_id")
        token = started.parameters.get("token")
        if not session_id or not token:
            raise AuthError(
                "the stream's custom parameters must carry session_id and token",
                code="unauthorized",
            )
        # The session is found first, so a token is never spent on a wrong session id.
        connection: RealtimeConnection | None = self.services.live_sessions.get(session_id)
        if connection is None or connection.principal is None:
            raise ProtocolViolation(f"no live session {session_id!r} here", code="not_found")
        principal = await self.services.redeem_token(token, None)
        if principal.session_id != session_id:
            raise AuthError("this token was not minted for that session", code="token_scope")
        if principal.account_id != connection.principal.account_id:
            raise AuthError("that session belongs to another account", code="forbidden")
        return connection

    async def _relay(
        self,
        ws: web.WebSocketResponse,
        dialect: Dialect,
        leg: CallLeg,
        connection: RealtimeConnection,
        started: CallStarted,
        round_trip: RoundTrip,
    ) -> str:
        """Until the call's stream ends; why it ended."""
        async for msg in ws:
            if msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
                continue
            if msg.type is WSMsgType.PONG:
                if round_trip.pong(msg.data, time.monotonic()):
                    leg.round_trip_ms = round_trip.ms
                    self.services.metrics.call_round_trip.observe(round_trip.last_s)
                continue
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                event = dialect.parse(msg.data)
            except ProtocolViolation as exc:
                # Not the provider's words: counted and dropped, the call goes on.
                self.services.metrics.errors.labels(exc.code).inc()
                log.info("%s stream %s: %s", dialect.name, started.stream_id, exc.message)
                continue
            if isinstance(event, CallerAudio):
                await connection.caller_audio(started.stream_id, event.payload, dialect.encoding)
            elif isinstance(event, MarkPlayed):
                leg.marked(event.name)
            elif isinstance(event, Digit):
                await connection.caller_digit(started.stream_id, event.digit)
            elif isinstance(event, CallStopped):
                return "stop"
        return "closed" if leg.readyState == "live" else "dropped"


def other_dialects() -> dict[str, Callable[[], Dialect]]:
    """The providers besides Twilio (whose route also checks its signature)."""
    return {"telnyx": TelnyxDialect, "plivo": PlivoDialect, "vonage": VonageDialect}


def _urls_as_requested(request: web.Request) -> list[str]:
    """The URL the provider signed: behind a TLS proxy the gateway sees http, it used wss;
    Twilio's guidance for WebSocket handshakes is to try the URL with a trailing slash too."""
    host = request.headers.get("X-Forwarded-Host") or request.host
    path = request.path.rstrip("/")
    query = f"?{request.query_string}" if request.query_string else ""
    return [
        f"{scheme}://{host}{path}{slash}{query}" for scheme in ("wss", "ws") for slash in ("", "/")
    ]
