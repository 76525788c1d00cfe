"""Carrying a request to the node that owns its session: an HTTP exchange, or a socket.

An HTTP request (WHEP, RTP) is replayed on the owner with its credentials, and the owner's
answer handed back: the owner authenticates it as if it had come straight. A socket (a
telephony stream, a resuming client) is joined to a socket of its own to the owner, and
what either side sends is passed on unchanged until one of them closes. Whatever this node
already read from the socket (a provider's opening messages, a client's resume) goes
first. A forwarded request says so in ``FORWARDED_HEADER`` (the forwarding node's id); the
owner answers it itself and never forwards it again, so a stale record cannot make a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Protocol, TypeVar

import aiohttp
from aiohttp import WSMsgType, web

from voxgate.errors import NodeUnavailable

log = logging.getLogger(__name__)


class _Forwarder(Protocol):
    async def forward_for_session(
        self, request: web.Request, session_id: str
    ) -> web.Response | None: ...

    async def forward_for_resource(
        self, request: web.Request, resource_id: str
    ) -> web.Response | None: ...


class _Services(Protocol):
    @property
    def cluster(self) -> _Forwarder: ...


class _Endpoint(Protocol):
    @property
    def services(self) -> _Services: ...


_E = TypeVar("_E", bound=_Endpoint)
Handler = Callable[[_E, web.Request], Awaitable[web.Response]]


def to_session_owner(handler: Handler[_E]) -> Handler[_E]:
    """An endpoint's handler for ``{session_id}`` routes, run on the node that owns it:
    elsewhere the request is forwarded there and the owner's answer returned."""
    return _on_owner(handler, "session_id")


def to_resource_owner(handler: Handler[_E]) -> Handler[_E]:
    """As :func:`to_session_owner`, for ``{resource_id}`` routes (a WHEP resource)."""
    return _on_owner(handler, "resource_id")


def _on_owner(handler: Handler[_E], key: str) -> Handler[_E]:
    @functools.wraps(handler)
    async def routed(endpoint: _E, request: web.Request) -> web.Response:
        cluster = endpoint.services.cluster
        forward = (
            cluster.forward_for_session if key == "session_id" else cluster.forward_for_resource
        )
        forwarded = await forward(request, request.match_info[key])
        return forwarded if forwarded is not None else await handler(endpoint, request)

    return routed


FORWARDED_HEADER = "X-Voxgate-Forwarded-By"
TICKET_HEADER = "X-Voxgate-Ticket"
CONNECT_TIMEOUT_S = 3.0
_REQUEST_HEADERS = ("Authorization", "Content-Type", "Origin", "If-Match")
_RESPONSE_HEADERS = ("Location", "ETag", "Content-Type", "Allow", "Accept-Post", "Retry-After")
# Hop-by-hop and handshake headers: the proxy's own socket to the owner makes its own.
_SOCKET_SKIPPED = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)


def forwarded(request: web.Request) -> bool:
    """Whether another node sent ``request`` here for this node to answer itself."""
    return FORWARDED_HEADER in request.headers


async def forward_http(
    request: web.Request, owner_url: str, node_id: str, client: aiohttp.ClientSession
) -> web.Response:
    """Replay ``request`` on the owner and hand back its answer."""
    headers = {h: request.headers[h] for h in _REQUEST_HEADERS if h in request.headers}
    headers[FORWARDED_HEADER] = node_id
    body = await request.read()
    try:
        async with client.request(
            request.method, f"{owner_url}{request.rel_url}", headers=headers, data=body
        ) as answer:
            payload = await answer.read()
            response = web.Response(status=answer.status, body=payload)
            for name in _RESPONSE_HEADERS:
                if name in answer.headers:
                    response.headers[name] = answer.headers[name]
            for link in answer.headers.getall("Link", []):
                response.headers.add("Link", link)
            return response
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _unreachable(owner_url, exc) from exc


async def proxy_socket(
    ws: web.WebSocketResponse,
    owner_url: str,
    path: str,
    node_id: str,
    client: aiohttp.ClientSession,
    *,
    headers: Mapping[str, str] = MappingProxyType({}),
    already_read: Sequence[str | bytes] = (),
    protocols: Sequence[str] = (),
    skip_first: Callable[[str | bytes], bool] | None = None,
    pass_pings: bool = False,
) -> str:
    """Join the prepared socket ``ws`` to the owner's ``path`` until either side closes.

    ``headers`` go with the handshake (the hop-by-hop ones are the proxy's own).
    ``skip_first`` drops the owner's first message when it says so (the owner greets the
    socket as a new one, and the client has been greeted here already). ``pass_pings``
    (``ws`` made with ``autoping=False``): pings and pongs go through both ways, so each
    end times the round trip to the other. Returns the side that closed first: ``client``
    or ``owner``.
    """
    sent_headers = {
        name: value
        for name, value in headers.items()
        if name.lower() not in _SOCKET_SKIPPED and name.lower() != FORWARDED_HEADER.lower()
    }
    sent_headers[FORWARDED_HEADER] = node_id
    url = f"{owner_url.replace('http', 'ws', 1)}{path}"
    try:
        owner = await client.ws_connect(
            url,
            headers=sent_headers,
            protocols=tuple(protocols),
            heartbeat=20.0,
            autoping=not pass_pings,
            max_msg_size=0,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CONNECT_TIMEOUT_S),
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _unreachable(owner_url, exc) from exc
    async with owner:
        for message in already_read:
            await _send(owner, message)
        to_owner = asyncio.create_task(_pipe(ws, owner, None))
        to_client = asyncio.create_task(_pipe(owner, ws, skip_first))
        done, pending = await asyncio.wait(
            (to_owner, to_client), return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if to_client in done:  # the owner closed: the client hears the same close
            code, reason = to_client.result()
            if code is None:  # the owner's socket dropped: the node is likely dying
                code, reason = aiohttp.WSCloseCode.INTERNAL_ERROR, b"node_unavailable"
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close(code=code, message=reason)
            return "owner"
        code, reason = to_owner.result()
        if code is None:
            # The client's socket dropped without a close frame: so does the owner's.
            connection = owner._response.connection
            if connection is not None and connection.transport is not None:
                connection.transport.abort()
        else:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await owner.close(code=code, message=reason)
        return "client"


_Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _pipe(
    source: _Socket, sink: _Socket, skip_first: Callable[[str | bytes], bool] | None
) -> tuple[int | None, bytes]:
    """Pass messages on until ``source`` closes: its close code (None: it dropped), reason."""
    first = True
    while True:
        message = await source.receive()
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            if not (first and skip_first is not None and skip_first(message.data)):
                await _send(sink, message.data)
            first = False
        elif message.type is WSMsgType.PING:  # only when passed through (no autoping)
            await sink.ping(message.data)
        elif message.type is WSMsgType.PONG:
            await sink.pong(message.data)
        elif message.type is WSMsgType.CLOSE:
            reason = message.extra if isinstance(message.extra, str) else ""
            return int(message.data), reason.encode()[:120]
        elif message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None, b""


async def _send(socket: _Socket, message: str | bytes) -> None:
    if isinstance(message, bytes):
        await socket.send_bytes(message)
    else:
        await socket.send_str(message)


def _unreachable(owner_url: str, exc: BaseException) -> NodeUnavailable:
    log.warning("the node at %s did not answer a forwarded request: %r", owner_url, exc)
    return NodeUnavailable(
        "the gateway node that holds this session did not answer; retry shortly",
        retry_after_s=1,
    )
