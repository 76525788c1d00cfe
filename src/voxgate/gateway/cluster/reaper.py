"""Reaping a node that died: what it held is given back, what it owned is let go.

For each session the dead node recorded: every credit hold still open is refunded at once
(the ledger's ``release_session``, instead of waiting out ``VOXGATE_HOLD_TTL``), the
session's key slot is freed, its record removed, and the session remembered as lost, so a
client resuming it is told ``session_lost`` rather than "no such session". Audio the dead
node delivered but had not yet settled is not charged: its settlements died with it.
Reaping is idempotent, so a reaper that dies mid-way is simply followed by another.
"""

from __future__ import annotations

import logging

from voxgate.gateway.access.session_slots import SessionSlots
from voxgate.gateway.cluster.state import RedisClusterState
from voxgate.sessions.ledger import Ledger

log = logging.getLogger(__name__)


async def reap_node(
    node_id: str, state: RedisClusterState, slots: SessionSlots, ledger: Ledger
) -> tuple[int, int]:
    """Settle the dead node's sessions; (sessions reaped, credits released)."""
    sessions = released = 0
    for session_id in await state.sessions_of(node_id):
        owner = await state.owner(session_id)
        if owner is not None and owner.node_id == node_id:
            released += await ledger.release_session(session_id, account_id=owner.account_id)
            await slots.release(owner.key_id, session_id)
            await slots.done_waiting(owner.key_id, session_id)  # lost: nothing to resume
        await state.disown(session_id, node_id)
        await state.mark_lost(session_id, node_id)
        sessions += 1
    log.warning(
        "reaped node %s: %d sessions lost, %d held credits refunded", node_id, sessions, released
    )
    return sessions, released
