"""What the nodes of a cluster share in Redis: who is alive, who owns which session.

Keys (every script touches one slot, so the layout holds on Redis Cluster)::

    <prefix>cluster:{nodes}:members        zset: node id, by lease expiry (ms, server clock)
    <prefix>cluster:{nodes}:node:<id>      hash: url, joined; reaping = the node reaping it
    <prefix>cluster:session:{<sid>}        hash: node, account, key (expires, refreshed)
    <prefix>cluster:node:{<id>}:sessions   set: the node's session ids
    <prefix>cluster:lost:{<sid>}           string: the dead node, for LOST_TTL_S
    <prefix>cluster:ticket:{<ticket>}      string: a forwarded principal, for TICKET_TTL_S

A node joins with its URL and renews its lease every third of it. A renewal that finds the
node being reaped (its lease lapsed and a survivor claimed it) fails: the node's sessions
were settled by the survivor, and the node must end them. A survivor claims a lapsed node
atomically, so one node reaps it; the claim is a lease of its own, so a reaper that dies
mid-way is replaced by the next.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from voxgate.gateway.access.principal import Principal
from voxgate.store import StoreRedis

LOST_TTL_S = 600  # a resume of a dead node's session is answered session_lost this long
TICKET_TTL_S = 10  # a forwarded socket must reach its owner within this

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS members, node; ARGV node id, url, lease ms.
_JOIN = (
    _NOW
    + """
redis.call('HSET', KEYS[2], 'url', ARGV[2], 'joined', now)
redis.call('HDEL', KEYS[2], 'reaping')
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return now
"""
)
# KEYS members, node; ARGV node id, lease ms. 0: the node was reaped or forgotten.
_RENEW = (
    _NOW
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('HEXISTS', KEYS[2], 'reaping') == 1 then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)
# KEYS members, node; ARGV node id, claimant, how long the claim holds (ms).
_CLAIM = (
    _NOW
    + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > now then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], 'reaping', ARGV[2])
return 1
"""
)
# KEYS members; the ids whose lease has lapsed.
_LAPSED = (
    _NOW
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
"""
)

# KEYS the session's record; ARGV node, account, key, ttl ms. The other holder, or false.
_OWN = """
local node = redis.call('HGET', KEYS[1], 'node')
if node and node ~= ARGV[1] then return node end
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'account', ARGV[2], 'key', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return false
"""


@dataclass(frozen=True, slots=True)
class SessionOwner:
    session_id: str
    node_id: str
    account_id: str
    key_id: str


class RedisClusterState:
    """The shared state of the nodes, in Redis (``redis`` must decode responses)."""

    def __init__(self, redis: StoreRedis, *, prefix: str = "voxgate:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._join = redis.register_script(_JOIN)
        self._renew = redis.register_script(_RENEW)
        self._claim = redis.register_script(_CLAIM)
        self._lapsed = redis.register_script(_LAPSED)
        self._own = redis.register_script(_OWN)

    async def ping(self) -> None:
        await self._redis.ping()

    # -- nodes ------------------------------------------------------------------------

    async def join(self, node_id: str, url: str, lease_s: float) -> None:
        await self._join(keys=self._node_keys(node_id), args=[node_id, url, _ms(lease_s)])

    async def renew(self, node_id: str, lease_s: float) -> bool:
        """Push the lease ahead; False once the node was taken for dead."""
        return bool(await self._renew(keys=self._node_keys(node_id), args=[node_id, _ms(lease_s)]))

    async def node_url(self, node_id: str) -> str | None:
        url = await self._redis.hget(self._node_keys(node_id)[1], "url")
        return str(url) if url is not None else None

    async def live_nodes(self) -> dict[str, float]:
        """Node id -> lease expiry (seconds, server clock), lapsed ones included."""
        members: list[Any] = await self._redis.zrange(
            self._node_keys("")[0], 0, -1, withscores=True
        )
        return {str(node): float(score) / 1000 for node, score in members}

    async def lapsed(self) -> list[str]:
        return [str(n) for n in await self._lapsed(keys=[self._node_keys("")[0]])]

    async def claim(self, node_id: str, claimant: str, hold_s: float) -> bool:
        """Take a lapsed node to reap; False if it is alive or another node has it."""
        args: list[str | int] = [node_id, claimant, _ms(hold_s)]
        return bool(await self._claim(keys=self._node_keys(node_id), args=args))

    async def forget(self, node_id: str) -> None:
        """Remove a node that left or was reaped."""
        members, node = self._node_keys(node_id)
        await self._redis.zrem(members, node_id)
        await self._redis.delete(node, self._node_sessions(node_id))

    # -- sessions ---------------------------------------------------------------------

    async def own(self, owner: SessionOwner, ttl_s: float) -> str | None:
        """Record that ``owner.node_id`` holds the session; the other node that holds it
        already, if one does (then nothing is written)."""
        record = self._session(owner.session_id)
        holder = await self._own(
            keys=[record],
            args=[owner.node_id, owner.account_id, owner.key_id, _ms(ttl_s)],
        )
        if holder:
            return str(holder)
        await self._redis.sadd(self._node_sessions(owner.node_id), owner.session_id)
        return None

    async def refresh(self, owners: list[SessionOwner], ttl_s: float) -> None:
        """Keep the records of a node's live sessions (rewritten, should they have lapsed)."""
        if not owners:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for owner in owners:
                record = self._session(owner.session_id)
                pipe.hset(
                    record,
                    mapping={
                        "node": owner.node_id,
                        "account": owner.account_id,
                        "key": owner.key_id,
                    },
                )
                pipe.pexpire(record, _ms(ttl_s))
            await pipe.execute()
        by_node: dict[str, list[str]] = {}
        for owner in owners:
            by_node.setdefault(owner.node_id, []).append(owner.session_id)
        for node_id, session_ids in by_node.items():
            await self._redis.sadd(self._node_sessions(node_id), *session_ids)

    async def owner(self, session_id: str) -> SessionOwner | None:
        fields = await self._redis.hgetall(self._session(session_id))
        if not fields:
            return None
        return SessionOwner(
            session_id=session_id,
            node_id=str(fields["node"]),
            account_id=str(fields["account"]),
            key_id=str(fields["key"]),
        )

    async def disown(self, session_id: str, node_id: str) -> None:
        await self._redis.delete(self._session(session_id))
        await self._redis.srem(self._node_sessions(node_id), session_id)

    async def sessions_of(self, node_id: str) -> list[str]:
        return sorted(str(s) for s in await self._redis.smembers(self._node_sessions(node_id)))

    async def mark_lost(self, session_id: str, node_id: str) -> None:
        await self._redis.set(self._lost(session_id), node_id, ex=LOST_TTL_S)

    async def is_lost(self, session_id: str) -> bool:
        return bool(await self._redis.exists(self._lost(session_id)))

    # -- tickets ----------------------------------------------------------------------

    async def issue_ticket(self, ticket: str, principal: Principal | None) -> None:
        """A one-use pass for a socket this node carries to the owner of its session."""
        body = json.dumps(_principal_fields(principal), separators=(",", ":"))
        await self._redis.set(self._ticket(ticket), body, ex=TICKET_TTL_S)

    async def redeem_ticket(self, ticket: str) -> tuple[bool, Principal | None]:
        """(valid, the principal it carries); a ticket is spent by its first redemption."""
        body = await self._redis.getdel(self._ticket(ticket))
        if body is None:
            return False, None
        fields = json.loads(body)
        return True, Principal(**fields) if fields else None

    # -- keys -------------------------------------------------------------------------

    def _node_keys(self, node_id: str) -> list[str]:
        base = f"{self._prefix}cluster:{{nodes}}"
        return [f"{base}:members", f"{base}:node:{node_id}"]

    def _node_sessions(self, node_id: str) -> str:
        return f"{self._prefix}cluster:node:{{{node_id}}}:sessions"

    def _session(self, session_id: str) -> str:
        return f"{self._prefix}cluster:session:{{{session_id}}}"

    def _lost(self, session_id: str) -> str:
        return f"{self._prefix}cluster:lost:{{{session_id}}}"

    def _ticket(self, ticket: str) -> str:
        return f"{self._prefix}cluster:ticket:{{{ticket}}}"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _principal_fields(principal: Principal | None) -> dict[str, object]:
    return {} if principal is None else dataclasses.asdict(principal)
