"""How many live sessions each key has, against its limit: in this process, or cluster-wide.

A session takes a slot of its key when its socket opens and gives it back when it ends. In
Redis the slots of a key are one sorted set, ``<prefix>access:slots:{<key_id>}``, of session
ids scored by when they lapse: the node holding a session refreshes it, so the slots of a
node that died lapse on their own (and its reaper frees them at once). Taking a slot is one
script: prune what lapsed, count, add.

A session whose socket dropped keeps its slot while it waits for a resume, and is also
listed as *waiting* (``<prefix>access:waiting:{<key_id>}``, scored by the end of its grace):
a key at its limit with a waiting session lets a new socket in to resume it, holding no slot
of its own (``docs/protocol.md``, "Resuming a session").
"""

from __future__ import annotations

import time
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


# KEYS waiting. 1 when a session of the key waits for a resume.
_WAITING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1]) > 0 and 1 or 0
"""
# KEYS waiting; ARGV session id, for how long (ms).
_WAIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
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

    async def wait(self, key_id: str, session_id: str, for_s: float) -> None:
        """The session's socket dropped: it waits up to ``for_s`` for a resume."""
        ...

    async def done_waiting(self, key_id: str, session_id: str) -> None: ...

    async def has_waiting(self, key_id: str) -> bool:
        """Whether a session of the key waits for a resume."""
        ...


class MemorySessionSlots:
    """The slots of one process."""

    def __init__(self) -> None:
        self._slots: dict[str, set[str]] = {}
        self._waiting: dict[str, dict[str, float]] = {}  # key -> session -> until (monotonic)

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

    async def wait(self, key_id: str, session_id: str, for_s: float) -> None:
        self._waiting.setdefault(key_id, {})[session_id] = time.monotonic() + for_s

    async def done_waiting(self, key_id: str, session_id: str) -> None:
        waiting = self._waiting.get(key_id)
        if waiting is not None:
            waiting.pop(session_id, None)
            if not waiting:
                del self._waiting[key_id]

    async def has_waiting(self, key_id: str) -> bool:
        now = time.monotonic()
        return any(until > now for until in self._waiting.get(key_id, {}).values())


class RedisSessionSlots:
    """The slots of every node, in Redis; a slot lapses ``ttl_s`` after its last refresh."""

    def __init__(self, redis: StoreRedis, *, ttl_s: float, prefix: str = "voxgate:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._acquire = redis.register_script(_ACQUIRE)
        self._refresh = redis.register_script(_REFRESH)
        self._wait = redis.register_script(_WAIT)
        self._has_waiting = redis.register_script(_WAITING)

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

    async def wait(self, key_id: str, session_id: str, for_s: float) -> None:
        await self._wait(
            keys=[self._waiting(key_id)], args=[session_id, max(1, round(for_s * 1000))]
        )

    async def done_waiting(self, key_id: str, session_id: str) -> None:
        await self._redis.zrem(self._waiting(key_id), session_id)

    async def has_waiting(self, key_id: str) -> bool:
        return bool(await self._has_waiting(keys=[self._waiting(key_id)], args=[]))

    def _key(self, key_id: str) -> str:
        return f"{self._prefix}access:slots:{{{key_id}}}"

    def _waiting(self, key_id: str) -> str:
        return f"{self._prefix}access:waiting:{{{key_id}}}"
