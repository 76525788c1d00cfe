"""The gateway's aiohttp application: realtime WebSocket, client tokens, REST, operations."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from voxgate.envelope import Handler, envelope_errors, error_response, ok
from voxgate.errors import AuthError, InvalidInput, StoreUnavailable, VoxgateError
from voxgate.gateway.access.auth import bearer_token
from voxgate.gateway.cluster.forward import TICKET_HEADER
from voxgate.gateway.demo import DemoPage
from voxgate.gateway.openapi import openapi_document
from voxgate.gateway.realtime import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX, RealtimeConnection
from voxgate.gateway.rest import VoxtralCompatible
from voxgate.gateway.services import Services
from voxgate.gateway.telephony.endpoint import TelephonyEndpoint
from voxgate.gateway.telephony.rtp_endpoint import RtpEndpoint
from voxgate.gateway.whep import WhepEndpoint
from voxgate.upstream.engine.validation import parse_json_object

log = logging.getLogger(__name__)

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
WHEP: web.AppKey[WhepEndpoint] = web.AppKey("whep", WhepEndpoint)


def create_gateway_app(services: Services) -> web.Application:
    app = web.Application(
        middlewares=[envelope_errors, count_store_outages],
        client_max_size=services.settings.max_message_bytes * 16,
    )
    app[SERVICES] = services
    rest = VoxtralCompatible(services)
    demo = DemoPage(services, rest)
    whep = WhepEndpoint(
        services, lambda socket, principal: RealtimeConnection(socket, services, principal, None)
    )
    app[WHEP] = whep
    telephony = TelephonyEndpoint(services)
    rtp = RtpEndpoint(services)
    app.add_routes(
        [
            web.get("/v1/realtime", realtime),
            web.post("/v1/client_tokens", client_tokens),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics),
            web.get("/openapi.json", openapi),
            *rest.routes(),
            *whep.routes(),
            *telephony.routes(),
            *rtp.routes(),
            *demo.routes(),
        ]
    )

    async def close_peers(_: web.Application) -> None:
        await whep.aclose()
        await rtp.aclose()
        await rest.aclose()

    app.on_shutdown.append(close_peers)
    return app


@web.middleware
async def count_store_outages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the requests answered 503 ``store_unavailable`` (the envelope answers them)."""
    try:
        return await handler(request)
    except StoreUnavailable:
        request.app[SERVICES].metrics.store_unavailable.labels("http").inc()
        raise


async def realtime(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    if services.draining:
        return error_response(503, "draining", "the server is shutting down; reconnect elsewhere")
    origin = request.headers.get("Origin")
    services.origins.check(origin)  # a foreign page is refused before the upgrade
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    token = next(
        (
            p.removeprefix(TOKEN_SUBPROTOCOL_PREFIX)
            for p in offered
            if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)
        ),
        None,
    )
    principal = None
    carried, vouched = await services.cluster.redeem_ticket(request.headers)
    if carried:
        principal = vouched  # a peer node checked the credentials and carries the socket
    elif TICKET_HEADER in request.headers:
        raise AuthError("this forwarding ticket is unknown or spent", code="unauthorized")
    elif request.headers.get("Authorization"):
        principal = await services.authenticate_bearer(request.headers["Authorization"])
    elif token:
        principal = await services.redeem_token(token, origin)
    ws = web.WebSocketResponse(
        protocols=(SUBPROTOCOL,),
        heartbeat=20.0,
        compress=False,
        max_msg_size=services.settings.max_message_bytes,
    )
    await ws.prepare(request)
    connection = RealtimeConnection(ws, services, principal, origin, request.transport)
    services.connections.add(connection)
    try:
        await connection.run()
    finally:
        services.connections.discard(connection)
    return ws


async def client_tokens(request: web.Request) -> web.Response:
    """Mint a short-lived, single-use token for a browser, with an API key (server side)."""
    services = request.app[SERVICES]
    key = await services.authenticate_key(bearer_token(request.headers.get("Authorization")))
    body = await _json(request)
    token, claims = await services.tokens.mint(
        key,
        voice_id=_optional_str(body, "voice_id"),
        max_credits=_int(body, "max_credits", 10_000),
        ttl_s=_number(body, "ttl_s", 60.0),
        session_id=_optional_str(body, "session_id"),
    )
    return ok(
        {
            "token": token,
            "token_id": claims.token_id,
            "expires_at": claims.expires_at,
            "voice_id": claims.voice_id,
            "max_credits": claims.max_credits,
            "session_id": claims.session_id,
        }
    )


async def healthz(request: web.Request) -> web.Response:
    return ok({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    checks = await services.ready()
    ready = all(v == "ok" for k, v in checks.items() if k != "draining") and not services.draining
    return web.Response(
        status=200 if ready else 503,
        content_type="application/json",
        body=orjson.dumps({"code": 0 if ready else 503, "data": checks}),
    )


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[SERVICES].metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(openapi_document()), content_type="application/json")


async def drain(services: Services) -> None:
    """SIGTERM: refuse new sessions, let live turns finish, then close with 1001."""
    services.draining = True
    deadline = time.monotonic() + services.settings.drain_timeout_s
    log.info(
        "draining %d connections (up to %.0f s)",
        len(services.connections),
        services.settings.drain_timeout_s,
    )
    await asyncio.gather(
        *(c.drain(deadline) for c in list(services.connections)), return_exceptions=True
    )


async def _json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is an empty object."""
    return parse_json_object(await request.read() or b"{}")


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidInput(f"{name} must be a non-empty string", code=f"invalid_{name}")
    return value


def _int(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer", code=f"invalid_{name}")
    return value


def _number(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number", code=f"invalid_{name}")
    return float(value)


__all__ = ["SERVICES", "VoxgateError", "create_gateway_app", "drain"]
