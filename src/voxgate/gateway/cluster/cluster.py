"""This node's place in the cluster: its lease, its sessions, the way to reach an owner.

Alone (no Redis) a node owns every session and forwards nothing; its key limits count in
this process. With Redis it joins the cluster at start, renews its lease every third of
``VOXGATE_NODE_LEASE``, records each session it accepts (owner and key slot, refreshed
every ``SESSION_REFRESH_S``) and, on each renewal, looks for nodes whose lease lapsed: it
claims one and reaps it (``reaper``). What the node holds for the cluster is a few Redis
calls per session opened or closed, and one call per lease renewal: nothing per turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from voxgate.errors import LimitExceeded, StoreUnavailable
from voxgate.gateway.access.principal import Principal
from voxgate.gateway.access.session_slots import MemorySessionSlots, SessionSlots
from voxgate.gateway.cluster.forward import (
    FORWARDED_HEADER,
    TICKET_HEADER,
    forward_http,
    forwarded,
    proxy_socket,
)
from voxgate.gateway.cluster.state import RedisClusterState, SessionOwner

log = logging.getLogger(__name__)

SESSION_TTL_S = 60.0  # a session record (and its key slot) lapses this long unrefreshed
SESSION_REFRESH_S = 15.0
REAP_HOLD_S = 30.0  # a claimed node is re-claimable this long after, should its reaper die
RESOURCE_SEPARATOR = "."

Reap = Callable[[str], Awaitable[None]]


def new_node_id() -> str:
    """A node's id: where it runs, which process, and a random part (restarts differ)."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())
    return f"{host[:32] or 'node'}-{os.getpid()}-{secrets.token_hex(3)}"


def node_url(host: str, port: int, configured: str = "") -> str:
    """The URL other nodes reach this one at: ``configured``, or derived from the listener."""
    if configured:
        return configured.rstrip("/")
    if host in ("0.0.0.0", "::", ""):
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class Cluster:
    """One gateway node among its peers (alone, when ``state`` is None)."""

    def __init__(
        self,
        node_id: str,
        url: str,
        *,
        state: RedisClusterState | None = None,
        slots: SessionSlots | None = None,
        lease_s: float = 5.0,
    ) -> None:
        self.node_id = node_id
        self.url = url
        self.state = state
        self.slots: SessionSlots = slots or MemorySessionSlots()
        self.lease_s = lease_s
        self.reap: Reap | None = None  # set by the services: how to reap a dead node
        self.on_lapsed: Callable[[], Awaitable[None]] | None = None  # this node was reaped
        self.on_forward: Callable[[str], None] = lambda kind: None  # kind: http or socket
        self._owned: dict[str, SessionOwner] = {}
        self._urls: dict[str, str] = {}
        self._client: aiohttp.ClientSession | None = None
        self._beat: asyncio.Task[None] | None = None
        self._joined = False

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Join (if the store is reachable; else at the first renewal that reaches it)."""
        if self.state is None:
            return
        with contextlib.suppress(StoreUnavailable):
            await self._join()
        self._beat = asyncio.get_running_loop().create_task(self._heartbeat(), name="node-lease")

    async def aclose(self) -> None:
        """Leave: this node's records go (its sessions have ended by now)."""
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        if self.state is not None and self._joined:
            with contextlib.suppress(StoreUnavailable):
                await self.state.forget(self.node_id)
        if self._client is not None:
            await self._client.close()

    @property
    def client(self) -> aiohttp.ClientSession:
        """The HTTP client that carries forwarded requests to other nodes."""
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return self._client

    # -- sessions ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def session(self, principal: Principal, session_id: str) -> AsyncIterator[None]:
        """Hold a slot of the key and own ``session_id`` while the block runs."""
        await self.slots.acquire(principal.key_id, session_id, principal.max_sessions)
        owner = SessionOwner(
            session_id=session_id,
            node_id=self.node_id,
            account_id=principal.account_id,
            key_id=principal.key_id,
        )
        try:
            holder = await self.state.own(owner, SESSION_TTL_S) if self.state else None
            if holder is not None:
                raise LimitExceeded(
                    f"session {session_id!r} is live on another node", code="session_exists"
                )
            self._owned[session_id] = owner
        except BaseException:
            with contextlib.suppress(StoreUnavailable):
                await self.slots.release(principal.key_id, session_id)
            raise
        try:
            yield
        finally:
            self._owned.pop(session_id, None)
            try:
                await self.slots.release(principal.key_id, session_id)
                if self.state is not None:
                    await self.state.disown(session_id, self.node_id)
            except StoreUnavailable:  # both lapse within SESSION_TTL_S
                log.info("session %s: its slot and record are left to lapse", session_id)

    async def owner_url(self, session_id: str) -> str | None:
        """The URL of the node that owns ``session_id``, when that is another node."""
        if self.state is None or session_id in self._owned:
            return None
        owner = await self.state.owner(session_id)
        if owner is None or owner.node_id == self.node_id:
            return None
        return await self._url_of(owner.node_id)

    async def is_lost(self, session_id: str) -> bool:
        """Whether ``session_id`` belonged to a node that died (its resume is refused)."""
        return self.state is not None and await self.state.is_lost(session_id)

    def resource_id(self, local_id: str) -> str:
        """An id for a resource of this node (a WHEP peer) that names the node."""
        if self.state is None:
            return local_id
        return f"{self.node_id}{RESOURCE_SEPARATOR}{local_id}"

    # -- forwarding -------------------------------------------------------------------

    async def forward_for_session(
        self, request: web.Request, session_id: str
    ) -> web.Response | None:
        """The owner's answer to ``request`` when another node owns ``session_id``."""
        if forwarded(request):
            return None
        url = await self.owner_url(session_id)
        if url is None:
            return None
        self.on_forward("http")
        return await forward_http(request, url, self.node_id, self.client)

    async def forward_for_resource(
        self, request: web.Request, resource_id: str
    ) -> web.Response | None:
        """The owner's answer to ``request`` when ``resource_id`` is another node's."""
        node_id, separator, _ = resource_id.rpartition(RESOURCE_SEPARATOR)
        if forwarded(request) or not separator or node_id == self.node_id:
            return None
        url = await self._url_of(node_id)
        if url is None:
            return None  # a node that is gone: its resources are gone too (404 here)
        self.on_forward("http")
        return await forward_http(request, url, self.node_id, self.client)

    async def proxy_resume(
        self, ws: web.WebSocketResponse, owner_url: str, resume: str, principal: Principal
    ) -> None:
        """Carry the client socket ``ws`` to the owner, which resumes the session there.

        ``resume`` is the client's ``session.resume`` message as it came; the owner
        authenticates the socket by a one-use ticket carrying ``principal`` (the client's
        credentials were checked here, and a client token is spent by then). The owner's
        greeting of a new socket is dropped: the client had its greeting here.
        """
        assert self.state is not None
        ticket = secrets.token_urlsafe(18)
        await self.state.issue_ticket(ticket, principal)
        self.on_forward("socket")
        await proxy_socket(
            ws,
            owner_url,
            "/v1/realtime",
            self.node_id,
            self.client,
            headers={TICKET_HEADER: ticket},
            already_read=(resume,),
            protocols=("voxgate.v1",),
            skip_first=_is_greeting,
        )

    async def proxy_stream(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        owner_url: str,
        already_read: list[str | bytes],
    ) -> None:
        """Carry a provider's media stream to the owner of its session.

        The owner sees the handshake's headers and the messages read here, with a ticket
        saying this node checked what it could (a provider's signature, which names this
        node's URL, cannot be checked again there).
        """
        assert self.state is not None
        ticket = secrets.token_urlsafe(18)
        await self.state.issue_ticket(ticket, None)
        self.on_forward("socket")
        headers = dict(request.headers)
        headers[TICKET_HEADER] = ticket
        await proxy_socket(
            ws,
            owner_url,
            str(request.rel_url),
            self.node_id,
            self.client,
            headers=headers,
            already_read=already_read,
            pass_pings=True,  # the owner times the round trip to the provider
        )

    async def redeem_ticket(self, headers: Mapping[str, str]) -> tuple[bool, Principal | None]:
        """(carried by a peer node, the principal it vouches for) for a socket's handshake."""
        ticket = headers.get(TICKET_HEADER)
        if ticket is None or self.state is None or FORWARDED_HEADER not in headers:
            return False, None
        return await self.state.redeem_ticket(ticket)

    # -- lease, refresh, reaping ------------------------------------------------------

    async def _join(self) -> None:
        assert self.state is not None
        await self.state.join(self.node_id, self.url, self.lease_s)
        self._joined = True
        log.info("node %s joined the cluster at %s", self.node_id, self.url)

    async def _heartbeat(self) -> None:
        assert self.state is not None
        loop = asyncio.get_running_loop()
        refreshed_at = loop.time()
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                if not self._joined:
                    await self._join()
                elif not await self.state.renew(self.node_id, self.lease_s):
                    await self._lapsed()
                    continue
                if loop.time() - refreshed_at >= SESSION_REFRESH_S:
                    await self._refresh()
                    refreshed_at = loop.time()
                await self._reap_lapsed()
            except StoreUnavailable as exc:
                log.info("node lease not renewed: %s", exc.message)
            except Exception:
                log.exception("node heartbeat failed")

    async def _refresh(self) -> None:
        assert self.state is not None
        owners = list(self._owned.values())
        await self.state.refresh(owners, SESSION_TTL_S)
        by_key: dict[str, list[str]] = {}
        for owner in owners:
            by_key.setdefault(owner.key_id, []).append(owner.session_id)
        for key_id, session_ids in by_key.items():
            await self.slots.refresh(key_id, session_ids)

    async def _reap_lapsed(self) -> None:
        assert self.state is not None
        for node_id in await self.state.lapsed():
            if node_id == self.node_id or self.reap is None:
                continue
            if await self.state.claim(node_id, self.node_id, REAP_HOLD_S):
                log.warning("node %s: its lease lapsed; reaping it", node_id)
                await self.reap(node_id)
                await self.state.forget(node_id)

    async def _lapsed(self) -> None:
        """This node was taken for dead and reaped: its sessions are settled elsewhere."""
        log.error("node %s was reaped by a peer (its lease lapsed); rejoining", self.node_id)
        if self.on_lapsed is not None:
            await self.on_lapsed()
        await self._join()
        await self._refresh()

    async def _url_of(self, node_id: str) -> str | None:
        url = self._urls.get(node_id)
        if url is None and self.state is not None:
            url = await self.state.node_url(node_id)
            if url is not None:
                self._urls[node_id] = url
        return url

    async def ping(self) -> None:
        """One round trip to the shared store (``StoreUnavailable`` if it is away)."""
        if self.state is not None:
            await self.state.ping()

    def describe(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "url": self.url, "sessions": len(self._owned)}


def _is_greeting(message: str | bytes) -> bool:
    if not isinstance(message, str) or '"session.created"' not in message:
        return False
    with contextlib.suppress(ValueError):
        return bool(json.loads(message).get("type") == "session.created")
    return False
