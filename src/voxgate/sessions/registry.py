"""Which worker holds which session: the session registry.

A record maps a session id to its owner (the worker id or address holding its sockets), its
account, when it was created, and the last usage snapshot its owner pushed. Records expire:
the owner calls ``touch`` as a heartbeat, each touch pushing the expiry ``ttl_s`` ahead, so the
sessions of a crashed worker disappear on their own. ``update_usage`` does not extend a session:
only the owner's heartbeat says it is alive.

Two stores share one contract: ``MemorySessionRegistry`` (one process) and
``RedisSessionRegistry``. In Redis a record is a hash that expires with the session
(``<prefix>registry:session:{<session_id>}``), and each account has an index of its session
ids, scored by expiry (``<prefix>registry:account:{<account_id>}``), cleaned as it is read.
Both keys live in their own slot, so a record and its index are written one after the other;
a reader trusts the record, never the index alone.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from voxgate.errors import InvalidInput
from voxgate.sessions.ledger import Clock, Usage, check_id
from voxgate.store import DEFAULT_TIMEOUT_S as DEFAULT_STORE_TIMEOUT_S
from voxgate.store import StoreRedis, decodes_responses, redis_client

DEFAULT_SESSION_TTL_S = 30.0
MAX_SESSION_TTL_S = 86_400.0
INDEX_GRACE_MS = 60_000  # index entries outlive their record this long before pruning


@dataclass(frozen=True, kw_only=True)
class SessionRecord:
    """One live session, as the registry last saw it."""

    session_id: str
    account_id: str
    owner: str  # worker id or address holding the session's sockets
    created_at: float  # seconds on the store's clock (Redis: the server's)
    expires_at: float
    ttl_s: float  # how far each touch pushes expires_at
    usage: Usage | None  # the owner's last snapshot, None until the first update_usage


class SessionRegistry(Protocol):
    """Session id -> owner, account, creation time and usage, for live sessions only."""

    async def register(
        self, session_id: str, account_id: str, owner: str, ttl_s: float = ...
    ) -> SessionRecord:
        """Record a new session; ``InvalidInput(code="session_exists")`` if one is live."""
        ...

    async def get(self, session_id: str) -> SessionRecord | None:
        """The live session, or None (never registered, removed, or expired)."""
        ...

    async def touch(self, session_id: str) -> SessionRecord | None:
        """Push the expiry ``ttl_s`` from now; None if the session is already gone."""
        ...

    async def update_usage(self, session_id: str, usage: Usage) -> SessionRecord | None:
        """Store a usage snapshot of the session; None if the session is gone."""
        ...

    async def remove(self, session_id: str) -> bool:
        """Forget the session; False if it was not there."""
        ...

    async def list_by_account(self, account_id: str) -> list[SessionRecord]:
        """The account's live sessions, oldest first."""
        ...


def _check_register(session_id: str, account_id: str, owner: str, ttl_s: float) -> None:
    check_id("session_id", session_id)
    check_id("account_id", account_id)
    check_id("owner", owner)
    if not isinstance(ttl_s, int | float) or not 0 < ttl_s <= MAX_SESSION_TTL_S:
        raise InvalidInput(f"ttl_s must be in (0, {MAX_SESSION_TTL_S}] seconds, not {ttl_s!r}")


def _check_usage(session_id: str, usage: Usage) -> None:
    check_id("session_id", session_id)
    if not isinstance(usage, Usage) or usage.session_id != session_id:
        raise InvalidInput(f"usage snapshot is not the usage of session {session_id!r}")


def _session_exists(session_id: str, owner: str) -> InvalidInput:
    message = f"session {session_id!r} is already registered to {owner!r}"
    return InvalidInput(message, code="session_exists")


def _account_mismatch(session_id: str) -> InvalidInput:
    return InvalidInput(f"usage snapshot names another account than session {session_id!r}")


class MemorySessionRegistry:
    """A ``SessionRegistry`` in this process; ``clock`` returns seconds (inject it in tests)."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._records: dict[str, SessionRecord] = {}
        self._by_account: dict[str, set[str]] = {}
        self._expiries: list[tuple[float, str]] = []  # heap; entries of touched records go stale

    async def register(
        self,
        session_id: str,
        account_id: str,
        owner: str,
        ttl_s: float = DEFAULT_SESSION_TTL_S,
    ) -> SessionRecord:
        _check_register(session_id, account_id, owner, ttl_s)
        now = self._prune()
        existing = self._records.get(session_id)
        if existing is not None:
            raise _session_exists(session_id, existing.owner)
        record = SessionRecord(
            session_id=session_id,
            account_id=account_id,
            owner=owner,
            created_at=now,
            expires_at=now + ttl_s,
            ttl_s=ttl_s,
            usage=None,
        )
        self._by_account.setdefault(account_id, set()).add(session_id)
        return self._store(record)

    async def get(self, session_id: str) -> SessionRecord | None:
        check_id("session_id", session_id)
        self._prune()
        return self._records.get(session_id)

    async def touch(self, session_id: str) -> SessionRecord | None:
        check_id("session_id", session_id)
        now = self._prune()
        record = self._records.get(session_id)
        if record is None:
            return None
        return self._store(replace(record, expires_at=now + record.ttl_s))

    async def update_usage(self, session_id: str, usage: Usage) -> SessionRecord | None:
        _check_usage(session_id, usage)
        self._prune()
        record = self._records.get(session_id)
        if record is None:
            return None
        if usage.account_id != record.account_id:
            raise _account_mismatch(session_id)
        record = replace(record, usage=usage)
        self._records[session_id] = record
        return record

    async def remove(self, session_id: str) -> bool:
        check_id("session_id", session_id)
        self._prune()
        return self._forget(session_id)

    async def list_by_account(self, account_id: str) -> list[SessionRecord]:
        check_id("account_id", account_id)
        self._prune()
        records = [self._records[s] for s in self._by_account.get(account_id, ())]
        return sorted(records, key=lambda r: (r.created_at, r.session_id))

    def _store(self, record: SessionRecord) -> SessionRecord:
        self._records[record.session_id] = record
        heapq.heappush(self._expiries, (record.expires_at, record.session_id))
        return record

    def _forget(self, session_id: str) -> bool:
        record = self._records.pop(session_id, None)
        if record is None:
            return False
        sessions = self._by_account[record.account_id]
        sessions.discard(session_id)
        if not sessions:
            del self._by_account[record.account_id]
        return True

    def _prune(self) -> float:
        """Forget expired sessions; the current time."""
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            _, session_id = heapq.heappop(self._expiries)
            record = self._records.get(session_id)
            if record is not None and record.expires_at <= now:
                self._forget(session_id)
        return now


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS[1] the record; ARGV account, owner, ttl in ms.
_REGISTER = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', redis.call('HGET', KEYS[1], 'owner')}
end
redis.call('HSET', KEYS[1], 'account', ARGV[1], 'owner', ARGV[2], 'created', now,
  'expires', now + tonumber(ARGV[3]), 'ttl', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)
_TOUCH = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl'))
redis.call('HSET', KEYS[1], 'expires', now + ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)
# ARGV the snapshot's account, the snapshot as JSON.
_UPDATE_USAGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
if redis.call('HGET', KEYS[1], 'account') ~= ARGV[1] then return {'account_mismatch'} end
redis.call('HSET', KEYS[1], 'usage', ARGV[2])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
_REMOVE = """
local account = redis.call('HGET', KEYS[1], 'account')
redis.call('DEL', KEYS[1])
return account
"""


class RedisSessionRegistry:
    """A ``SessionRegistry`` in Redis; the server's clock decides expiry (key TTLs)."""

    def __init__(self, redis: StoreRedis, *, prefix: str = "voxgate:", owns_client: bool = False):
        if not decodes_responses(redis):
            raise InvalidInput("RedisSessionRegistry needs a client with decode_responses=True")
        if "{" in prefix or "}" in prefix:
            raise InvalidInput(f"key prefix {prefix!r} must not contain hash-tag braces")
        self._redis = redis
        self._prefix = prefix
        self._owns_client = owns_client
        self._register = redis.register_script(_REGISTER)
        self._touch = redis.register_script(_TOUCH)
        self._update_usage = redis.register_script(_UPDATE_USAGE)
        self._remove = redis.register_script(_REMOVE)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        max_connections: int = 16,
        prefix: str = "voxgate:",
        timeout_s: float = DEFAULT_STORE_TIMEOUT_S,
    ) -> RedisSessionRegistry:
        """A registry on its own client, closed by ``aclose``."""
        client = redis_client(
            url, max_connections=max_connections, blocking=True, timeout_s=timeout_s
        )
        return cls(client, prefix=prefix, owns_client=True)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    async def register(
        self,
        session_id: str,
        account_id: str,
        owner: str,
        ttl_s: float = DEFAULT_SESSION_TTL_S,
    ) -> SessionRecord:
        _check_register(session_id, account_id, owner, ttl_s)
        ttl_ms = max(1, round(ttl_s * 1000))
        reply = await self._register(
            keys=[self._record_key(session_id)], args=[account_id, owner, ttl_ms]
        )
        if reply[0] == "exists":
            raise _session_exists(session_id, reply[1])
        record = _record(session_id, reply[1])
        await self._index(record)
        return record

    async def get(self, session_id: str) -> SessionRecord | None:
        check_id("session_id", session_id)
        fields = await self._redis.hgetall(self._record_key(session_id))
        return _record(session_id, fields) if fields else None

    async def touch(self, session_id: str) -> SessionRecord | None:
        check_id("session_id", session_id)
        reply = await self._touch(keys=[self._record_key(session_id)])
        if reply[0] == "gone":
            return None
        record = _record(session_id, reply[1])
        await self._index(record)
        return record

    async def update_usage(self, session_id: str, usage: Usage) -> SessionRecord | None:
        _check_usage(session_id, usage)
        snapshot = json.dumps(asdict(usage), separators=(",", ":"))
        reply = await self._update_usage(
            keys=[self._record_key(session_id)], args=[usage.account_id, snapshot]
        )
        if reply[0] == "account_mismatch":
            raise _account_mismatch(session_id)
        return None if reply[0] == "gone" else _record(session_id, reply[1])

    async def remove(self, session_id: str) -> bool:
        check_id("session_id", session_id)
        account_id = await self._remove(keys=[self._record_key(session_id)])
        if account_id is None:
            return False
        await self._redis.zrem(self._index_key(account_id), session_id)
        return True

    async def list_by_account(self, account_id: str) -> list[SessionRecord]:
        check_id("account_id", account_id)
        index = self._index_key(account_id)
        seconds, micros = await self._redis.time()
        horizon = seconds * 1000 + micros // 1000 - INDEX_GRACE_MS
        await self._redis.zremrangebyscore(index, "-inf", horizon)
        session_ids = [str(s) for s in await self._redis.zrange(index, 0, -1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.hgetall(self._record_key(session_id))
            replies = await pipe.execute()
        records = [
            _record(s, fields) for s, fields in zip(session_ids, replies, strict=True) if fields
        ]
        live = [r for r in records if r.account_id == account_id]
        stale = set(session_ids) - {r.session_id for r in live}
        if stale:
            await self._redis.zrem(index, *stale)
        return sorted(live, key=lambda r: (r.created_at, r.session_id))

    def _record_key(self, session_id: str) -> str:
        return f"{self._prefix}registry:session:{{{session_id}}}"

    def _index_key(self, account_id: str) -> str:
        return f"{self._prefix}registry:account:{{{account_id}}}"

    async def _index(self, record: SessionRecord) -> None:
        """Score the session by its expiry; the index itself lives as long as its last entry."""
        index = self._index_key(record.account_id)
        expires_ms = round(record.expires_at * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(index, {record.session_id: expires_ms})
            pipe.pexpireat(index, expires_ms + INDEX_GRACE_MS, gt=True)
            pipe.pexpireat(index, expires_ms + INDEX_GRACE_MS, nx=True)
            await pipe.execute()


def _record(session_id: str, fields: Mapping[Any, Any] | list[Any]) -> SessionRecord:
    if isinstance(fields, list):  # HGETALL inside Lua answers a flat list
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    usage = fields.get("usage")
    return SessionRecord(
        session_id=session_id,
        account_id=fields["account"],
        owner=fields["owner"],
        created_at=int(fields["created"]) / 1000,
        expires_at=int(fields["expires"]) / 1000,
        ttl_s=int(fields["ttl"]) / 1000,
        usage=Usage(**json.loads(usage)) if usage else None,
    )
