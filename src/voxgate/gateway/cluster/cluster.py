"""This node's place in the cluster: who owns a session, and the way to reach the owner."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from voxgate.gateway.access.principal import Principal

log = logging.getLogger(__name__)


class Cluster:
    """One gateway node among its peers (alone, when nothing is configured)."""

    def __init__(self, node_id: str, url: str) -> None:
        self.node_id = node_id
        self.url = url

    async def owner_url(self, session_id: str) -> str | None:
        """The URL of the node that owns ``session_id``, when that is another live node."""
        return None

    async def is_lost(self, session_id: str) -> bool:
        """Whether ``session_id`` belonged to a node that died (its resume is refused)."""
        return False

    async def proxy_resume(
        self, ws: web.WebSocketResponse, owner_url: str, resume: str, principal: Principal
    ) -> None:
        """Carry the client socket ``ws`` to the owner, which resumes the session there.

        ``resume`` is the client's ``session.resume`` message as it came. Returns when either
        side has closed; the owner's messages reach ``ws`` unchanged, and the client's reach
        the owner.
        """
        raise NotImplementedError(f"forwarding to {owner_url} for {principal.key_id}: {ws!r}")

    def describe(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "url": self.url}
