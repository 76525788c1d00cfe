"""How many live sessions each key has, against its limit: in this process, or cluster-wide.

A session takes a slot of its key when its socket opens and gives it back when it ends. In
Redis the slots of a key are one sorted set, ``<prefix>access:slots:{<key_id>}``, of session
ids scored by when they lapse: the node holding a session refreshes it, so the slots of a
node that died lapse on their own (and its reaper frees them at once). Taking a slot is one
script: prune what lapsed, count, add.
"""

from __future__ import annotations

from typing import Protocol

from voxgate.errors import LimitExceeded
from voxgate.store import StoreRedis

# KEYS slots; ARGV session id, limit, ttl ms. {1, count} taken, {0, count} full.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if count >= tonumber(ARGV[2]) then return {0, count} end
  count = count + 1
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, count}
"""
# KEYS slots; ARGV ttl ms, then the session ids to keep.
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ttl)
return #ARGV - 1
"""


def too_many(held: int) -> LimitExceeded:
    return LimitExceeded(
        f"this key already has {held} live sessions, its limit", code="too_many_sessions"
    )


class SessionSlots(Protocol):
    async def acquire(self, key_id: str, session_id: str, limit: int) -> int:
        """Take a slot (``too_many_sessions`` when the key is full); the count after."""
        ...

    async def release(self, key_id: str, session_id: str) -> None: ...

    async def refresh(self, key_id: str, session_ids: list[str]) -> None:
        """The holder's sessions are alive: their slots must not lapse."""
        ...


class MemorySessionSlots:
    """The slots of one process."""

    def __init__(self) -> None:
        self._slots: dict[str, set[str]] = {}

    async def acquire(self, key_id: str, session_id: str, limit: int) -> int:
        held = self._slots.setdefault(key_id, set())
        if session_id not in held and len(held) >= limit:
            raise too_many(len(held))
        held.add(session_id)
        return len(held)

    async def release(self, key_id: str, session_id: str) -> None:
        held = self._slots.get(key_id)
        if held is not None:
            held.discard(session_id)
            if not held:
                del self._slots[key_id]

    async def refresh(self, key_id: str, session_ids: list[str]) -> None:
        return None


class RedisSessionSlots:
    """The slots of every node, in Redis; a slot lapses ``ttl_s`` after its last refresh."""

    def __init__(self, redis: StoreRedis, *, ttl_s: float, prefix: str = "voxgate:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._acquire = redis.register_script(_ACQUIRE)
        self._refresh = redis.register_script(_REFRESH)

    async def acquire(self, key_id: str, session_id: str, limit: int) -> int:
        taken, count = await self._acquire(
            keys=[self._key(key_id)], args=[session_id, limit, self._ttl_ms]
        )
        if not taken:
            raise too_many(int(count))
        return int(count)

    async def release(self, key_id: str, session_id: str) -> None:
        await self._redis.zrem(self._key(key_id), session_id)

    async def refresh(self, key_id: str, session_ids: list[str]) -> None:
        if session_ids:
            await self._refresh(keys=[self._key(key_id)], args=[self._ttl_ms, *session_ids])

    def _key(self, key_id: str) -> str:
        return f"{self._prefix}access:slots:{{{key_id}}}"
