"""API keys: who may use the gateway, and which credit account pays for it.

A generated key is ``vg_live_<token_urlsafe(32)>``: 256 random bits. Stores keep only its
SHA-256 digest; the plain key is shown once, to whoever created it, and never again.

Why a plain SHA-256 and not bcrypt or argon2: a slow, salted hash protects secrets of low
entropy (passwords) against guessing after a leak of the stored hashes. Against 256 random
bits no guessing ever finishes, slow hash or not. An unsalted digest is also what lets
``authenticate`` find the record with one lookup, where a salted one would first need to know
whose salt to use, and would cost tens of milliseconds of CPU per connection. Keys chosen by
the operator (``--api-key``) are only as strong as the operator makes them: use long random
strings there too.

Why no constant-time comparison is needed: no presented secret is ever compared with a stored
one byte by byte. ``authenticate`` hashes what it is given and looks the digest up (a dict or
a Redis key). Whatever timing that lookup leaks is about the digest of the caller's own guess;
learning that a guess's digest resembles a stored one does not help to build a key with that
digest (SHA-256 is preimage resistant). ``hmac.compare_digest`` would only matter if a secret
were checked against a stored copy of itself, which this design avoids.

A record carries a ``key_id``: ``vk_`` and the first 16 hex digits of the digest. It names the
key in listings, logs and ``voxgate keys revoke``, is stable for a given key, and gives away
nothing about the key. The key's credits live in the :class:`Ledger` under ``account_id``;
several keys may share an account. Funding is idempotent: a key's credits are added with the
ledger op id ``key:<key_id>``, so registering the same key twice never pays twice.

Stores: :class:`MemoryKeyStore` (one process) and :class:`RedisKeyStore`, one contract. In
Redis (prefix default ``voxgate:``)::

    <prefix>apikey:<digest>   hash: key_id account_id name created_at max_sessions
                              [revoked_at, once revoked]
    <prefix>apikeys           hash: key_id -> digest; the listing, and lookup by key id

The index entry is written before the record: a crash in between leaves an entry without a
record (skipped when listing), never a key that works but cannot be listed or revoked. Each
record changes by a one-key script, so the layout also works on Redis Cluster.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from voxgate.errors import AuthError, InvalidInput
from voxgate.sessions.ledger import Clock, Ledger, check_amount, check_id
from voxgate.store import DEFAULT_TIMEOUT_S as DEFAULT_STORE_TIMEOUT_S
from voxgate.store import StoreRedis, decodes_responses, redis_client

KEY_PREFIX = "vg_live_"
KEY_ID_PREFIX = "vk_"
DEFAULT_MAX_SESSIONS = 10
MAX_SESSIONS_LIMIT = 10_000
MIN_KEY_LENGTH = 8
MAX_KEY_LENGTH = 256
MAX_NAME_LENGTH = 100


@dataclass(frozen=True, kw_only=True)
class KeyRecord:
    """What a store knows about one API key; nothing in it is secret."""

    key_id: str
    account_id: str  # the ledger account that pays for this key's sessions
    name: str
    created_at: float  # seconds since the epoch
    max_sessions: int  # concurrent sessions allowed on this key
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def generate_key(prefix: str = KEY_PREFIX) -> str:
    """A new random API key: ``prefix`` and 256 random bits, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def key_digest(plain_key: str) -> str:
    """The SHA-256 of a key, in hex: what the stores keep instead of the key."""
    # surrogatepass: a header decoded with surrogateescape must hash, not raise.
    return hashlib.sha256(plain_key.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore(Protocol):
    """API keys by digest, each tied to a ledger account; see the module docstring."""

    @property
    def ledger(self) -> Ledger:
        """The ledger holding the credits of this store's keys."""
        ...

    async def create(
        self,
        account_id: str | None,
        name: str,
        credits: int = 0,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> tuple[str, KeyRecord]:
        """Generate a key, fund its account; (plain key, record). The plain key is not kept.

        ``account_id=None`` opens a new account for the key. ``credits`` go to the account:
        the opening balance of a new account, a top-up of an existing one.
        """
        ...

    async def add(
        self,
        plain_key: str,
        *,
        name: str,
        account_id: str | None = None,
        credits: int = 0,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> KeyRecord:
        """Register a key chosen elsewhere, as ``create`` does; a known key is returned as it
        is (not re-funded, not un-revoked), so configuration can be applied at every start."""
        ...

    async def authenticate(self, plain_key: str) -> KeyRecord:
        """The key's record; ``AuthError`` with code ``invalid_api_key`` or
        ``revoked_api_key``."""
        ...

    async def get(self, key_id: str) -> KeyRecord | None:
        """The record with this key id, revoked or not; None if there is none."""
        ...

    async def revoke(self, key_id: str) -> KeyRecord:
        """Refuse the key from now on; idempotent (the first ``revoked_at`` stays).

        ``InvalidInput(code="unknown_key")`` if no key has this id.
        """
        ...

    async def list(self) -> builtins.list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        ...


class _KeyStoreBase(ABC):
    """The contract once; subclasses only store and find records."""

    def __init__(self, ledger: Ledger, *, clock: Clock = time.time) -> None:
        self._ledger = ledger
        self._clock = clock

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    async def create(
        self,
        account_id: str | None,
        name: str,
        credits: int = 0,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> tuple[str, KeyRecord]:
        plain_key = generate_key()
        record = await self.add(
            plain_key, name=name, account_id=account_id, credits=credits, max_sessions=max_sessions
        )
        return plain_key, record

    async def add(
        self,
        plain_key: str,
        *,
        name: str,
        account_id: str | None = None,
        credits: int = 0,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> KeyRecord:
        _check_plain_key(plain_key)
        digest = key_digest(plain_key)
        key_id = KEY_ID_PREFIX + digest[:16]
        if account_id is None:
            account_id = "acct_" + digest[:16]
        _check_new_key(account_id, name, credits, max_sessions)
        existing = await self._load(digest)
        if existing is not None:
            return existing
        # Fund before the key exists: a key that works but whose account is missing would
        # fail every session; an account without its key is harmless and funded only once.
        await self._fund(account_id, credits, f"key:{key_id}")
        record = KeyRecord(
            key_id=key_id,
            account_id=account_id,
            name=name,
            created_at=self._clock(),
            max_sessions=max_sessions,
        )
        return await self._insert(digest, record)

    async def authenticate(self, plain_key: str) -> KeyRecord:
        if not isinstance(plain_key, str) or not 0 < len(plain_key) <= MAX_KEY_LENGTH:
            raise AuthError("invalid API key", code="invalid_api_key")
        record = await self._load(key_digest(plain_key))
        if record is None:
            raise AuthError("invalid API key", code="invalid_api_key")
        if record.revoked:
            raise AuthError(f"API key {record.key_id} was revoked", code="revoked_api_key")
        return record

    async def get(self, key_id: str) -> KeyRecord | None:
        if not _is_key_id(key_id):
            return None
        digest = await self._digest_of(key_id)
        return None if digest is None else await self._load(digest)

    async def revoke(self, key_id: str) -> KeyRecord:
        digest = await self._digest_of(key_id) if _is_key_id(key_id) else None
        record = None if digest is None else await self._mark_revoked(digest, self._clock())
        if record is None:
            raise InvalidInput(f"no API key has the id {key_id!r}", code="unknown_key")
        return record

    async def list(self) -> builtins.list[KeyRecord]:
        return sorted(await self._all(), key=lambda r: (r.created_at, r.key_id))

    async def _fund(self, account_id: str, credits: int, op_id: str) -> None:
        # Open with 0 and credit under the key's op id, so two workers adding the same key
        # at once fund it once (create_account alone could not tell a retry from a race).
        try:
            await self._ledger.create_account(account_id, 0)
        except InvalidInput as error:
            if error.code != "account_exists":
                raise
        if credits > 0:
            await self._ledger.credit(account_id, credits, op_id)

    @abstractmethod
    async def _load(self, digest: str) -> KeyRecord | None: ...

    @abstractmethod
    async def _insert(self, digest: str, record: KeyRecord) -> KeyRecord:
        """Store ``record`` unless the digest is known; the record stored either way."""

    @abstractmethod
    async def _digest_of(self, key_id: str) -> str | None: ...

    @abstractmethod
    async def _all(self) -> builtins.list[KeyRecord]: ...

    @abstractmethod
    async def _mark_revoked(self, digest: str, at: float) -> KeyRecord | None: ...


class MemoryKeyStore(_KeyStoreBase):
    """A ``KeyStore`` in this process (``voxgate serve`` without Redis, and tests)."""

    def __init__(self, ledger: Ledger, *, clock: Clock = time.time) -> None:
        super().__init__(ledger, clock=clock)
        self._records: dict[str, KeyRecord] = {}  # digest -> record
        self._digests: dict[str, str] = {}  # key_id -> digest

    async def _load(self, digest: str) -> KeyRecord | None:
        return self._records.get(digest)

    async def _insert(self, digest: str, record: KeyRecord) -> KeyRecord:
        self._digests.setdefault(record.key_id, digest)
        return self._records.setdefault(digest, record)

    async def _digest_of(self, key_id: str) -> str | None:
        return self._digests.get(key_id)

    async def _all(self) -> builtins.list[KeyRecord]:
        return builtins.list(self._records.values())

    async def _mark_revoked(self, digest: str, at: float) -> KeyRecord | None:
        record = self._records.get(digest)
        if record is not None and not record.revoked:
            record = self._records[digest] = replace(record, revoked_at=at)
        return record


# KEYS[1] the record; ARGV its fields and values. Returns the stored record.
_ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return redis.call('HGETALL', KEYS[1])
"""
# KEYS[1] the record; ARGV[1] the revocation time. HSETNX keeps the first revocation.
_REVOKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('HSETNX', KEYS[1], 'revoked_at', ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""


class RedisKeyStore(_KeyStoreBase):
    """A ``KeyStore`` in Redis, shared by every worker and by ``voxgate keys``.

    The client must decode responses (``from_url`` makes one).
    """

    def __init__(
        self,
        redis: StoreRedis,
        ledger: Ledger,
        *,
        prefix: str = "voxgate:",
        clock: Clock = time.time,
        owns_client: bool = False,
    ) -> None:
        super().__init__(ledger, clock=clock)
        if not decodes_responses(redis):
            raise InvalidInput("RedisKeyStore needs a client made with decode_responses=True")
        self._redis = redis
        self._prefix = prefix
        self._owns_client = owns_client
        self._add = redis.register_script(_ADD)
        self._revoke = redis.register_script(_REVOKE)

    @classmethod
    def from_url(
        cls,
        url: str,
        ledger: Ledger,
        *,
        prefix: str = "voxgate:",
        max_connections: int = 16,
        timeout_s: float = DEFAULT_STORE_TIMEOUT_S,
    ) -> RedisKeyStore:
        """A store on its own client, closed by ``aclose``."""
        # Blocking: a burst of connections waits for a Redis connection rather than failing.
        client = redis_client(
            url, max_connections=max_connections, blocking=True, timeout_s=timeout_s
        )
        return cls(client, ledger, prefix=prefix, owns_client=True)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    async def _load(self, digest: str) -> KeyRecord | None:
        fields = await self._redis.hgetall(self._record_key(digest))
        return _record(fields) if fields else None

    async def _insert(self, digest: str, record: KeyRecord) -> KeyRecord:
        await self._redis.hset(self._index_key, record.key_id, digest)
        reply = await self._add(keys=[self._record_key(digest)], args=_fields(record))
        return _record(reply)

    async def _digest_of(self, key_id: str) -> str | None:
        digest = await self._redis.hget(self._index_key, key_id)
        return None if digest is None else str(digest)

    async def _all(self) -> builtins.list[KeyRecord]:
        digests = [str(d) for d in (await self._redis.hgetall(self._index_key)).values()]
        async with self._redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.hgetall(self._record_key(digest))
            replies = await pipe.execute()
        return [_record(fields) for fields in replies if fields]

    async def _mark_revoked(self, digest: str, at: float) -> KeyRecord | None:
        reply = await self._revoke(keys=[self._record_key(digest)], args=[repr(at)])
        return _record(reply) if reply else None

    @property
    def _index_key(self) -> str:
        return f"{self._prefix}apikeys"

    def _record_key(self, digest: str) -> str:
        return f"{self._prefix}apikey:{digest}"


def _fields(record: KeyRecord) -> builtins.list[str]:
    # repr() of a float reads back to the same float, so records round-trip exactly.
    return [
        *("key_id", record.key_id, "account_id", record.account_id, "name", record.name),
        *("created_at", repr(record.created_at), "max_sessions", str(record.max_sessions)),
    ]


def _record(fields: Mapping[Any, Any] | builtins.list[Any]) -> KeyRecord:
    if isinstance(fields, builtins.list):  # HGETALL inside Lua answers a flat list
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    revoked_at = fields.get("revoked_at")
    return KeyRecord(
        key_id=fields["key_id"],
        account_id=fields["account_id"],
        name=fields["name"],
        created_at=float(fields["created_at"]),
        max_sessions=int(fields["max_sessions"]),
        revoked_at=None if revoked_at is None else float(revoked_at),
    )


def _is_key_id(value: object) -> bool:
    return isinstance(value, str) and value.startswith(KEY_ID_PREFIX) and len(value) == 19


def _check_plain_key(plain_key: str) -> None:
    # The messages never quote the key: they end up in logs and on terminals.
    if not isinstance(plain_key, str) or not MIN_KEY_LENGTH <= len(plain_key) <= MAX_KEY_LENGTH:
        raise InvalidInput(f"an API key must be {MIN_KEY_LENGTH} to {MAX_KEY_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() or c in ",:" for c in plain_key):
        raise InvalidInput("an API key must not contain spaces, controls, ',' or ':'")


def _check_new_key(account_id: str, name: str, credits: int, max_sessions: int) -> None:
    check_id("account_id", account_id)
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
        raise InvalidInput(f"a key name must be 1 to {MAX_NAME_LENGTH} characters")
    if not name.isprintable():
        raise InvalidInput("a key name must not contain control characters")
    check_amount("credits", credits, 0)
    check_amount("max_sessions", max_sessions, 1)
    if max_sessions > MAX_SESSIONS_LIMIT:
        raise InvalidInput(f"max_sessions must be at most {MAX_SESSIONS_LIMIT}")
