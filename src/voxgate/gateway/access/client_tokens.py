"""Client tokens: short-lived, single-use credentials a browser holds instead of an API key.

The app's backend, which holds an API key, mints a token (``POST /v1/client_tokens``) and
hands it to its page; the page redeems it once, when it opens its session. A token is an
opaque ``vgct_<token_urlsafe(32)>``; what it allows stays on the server, in its claims:

    account_id, key_id   who pays, through which key (revoking the key kills its tokens)
    voice_id             the only voice the session may use; None = any
    max_credits          the most the session may spend; the ledger still checks the balance
    session_id           the only session id it may open; None = any
    issued_at, expires_at, token_id

Single use: the read and the "used" mark are one atomic step (a Lua script in Redis; no await
between them in memory), so of any number of concurrent redeems exactly one succeeds and the
others get ``token_used``. A page that reconnects needs a new token.

Expiry is decided by this process's clock against ``expires_at`` (both stores compare the
same numbers, so they agree to the microsecond). A store keeps a record ``retention_s`` past
its expiry, so a late or repeated redeem is told ``token_expired`` or ``token_used`` rather
than ``invalid_token``; then Redis drops it by its TTL, memory at its next call.

Codes of the ``AuthError`` raised by :meth:`ClientTokens.redeem`: ``invalid_token`` (malformed,
unknown, or forgotten), ``token_used`` (also for a used token that has since expired),
``token_expired``, ``revoked_api_key``, ``origin_not_allowed``.

A token is a bearer secret: never log one, log :func:`redact` of it (its token id). It is
stored by SHA-256 digest, for the reasons given for API keys in :mod:`voxgate.gateway.access.keys`.
In Redis (prefix default ``voxgate:``)::

    <prefix>client-token:<digest>   hash: the claims, and used_at once redeemed;
                                    expires (PX) retention_s after the token does
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from voxgate.errors import AuthError, InvalidInput
from voxgate.gateway.access.auth import OriginPolicy
from voxgate.gateway.access.keys import KeyRecord, KeyStore
from voxgate.sessions.ledger import Clock, check_amount, check_id
from voxgate.store import DEFAULT_TIMEOUT_S as DEFAULT_STORE_TIMEOUT_S
from voxgate.store import StoreRedis, decodes_responses, redis_client

log = logging.getLogger(__name__)

TOKEN_PREFIX = "vgct_"
TOKEN_ID_PREFIX = "ct_"
MAX_TOKEN_LENGTH = 128
DEFAULT_TTL_S = 60.0
MIN_TTL_S = 1.0
MAX_TTL_S = 3600.0
MAX_TOKEN_CREDITS = 1_000_000  # ~200 full-length upstream requests: hours of speech
DEFAULT_RETENTION_S = 600.0

Redemption = Literal["ok", "used", "expired", "unknown"]


@dataclass(frozen=True, kw_only=True)
class ClientTokenClaims:
    """What a client token allows (see the module docstring); nothing in it is secret."""

    token_id: str
    account_id: str
    key_id: str
    voice_id: str | None  # None: any voice
    max_credits: int
    session_id: str | None  # None: any session id
    issued_at: float  # seconds since the epoch
    expires_at: float


def token_digest(token: str) -> str:
    """The SHA-256 of a token, in hex: what the stores keep instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def redact(token: str | None) -> str:
    """A token as it may appear in logs and errors: its token id, never the secret."""
    if not isinstance(token, str) or not token:
        return "<no token>"
    return TOKEN_ID_PREFIX + token_digest(token)[:16]


class TokenStore(Protocol):
    """Client-token records by digest; ``consume`` is the atomic single-use step."""

    async def put(self, digest: str, claims: ClientTokenClaims, now: float) -> None:
        """Keep the claims until ``retention_s`` after ``claims.expires_at``."""
        ...

    async def consume(self, digest: str, now: float) -> tuple[Redemption, ClientTokenClaims | None]:
        """Mark the token used if it is unused and unexpired at ``now``; in one step.

        ``("ok", claims)`` for the one call that marked it; ``("used", claims)`` if it had
        been marked, ``("expired", claims)`` if it expired unused, ``("unknown", None)``.
        """
        ...


@dataclass(slots=True)
class _Entry:
    claims: ClientTokenClaims
    used: bool = False


class MemoryTokenStore:
    """A ``TokenStore`` in this process; forgotten records are swept at each call."""

    def __init__(self, *, retention_s: float = DEFAULT_RETENTION_S) -> None:
        self._retention_s = retention_s
        self._entries: dict[str, _Entry] = {}
        self._forget_at: list[tuple[float, str]] = []  # heap of (time, digest)

    async def put(self, digest: str, claims: ClientTokenClaims, now: float) -> None:
        self._sweep(now)
        self._entries[digest] = _Entry(claims)
        heapq.heappush(self._forget_at, (claims.expires_at + self._retention_s, digest))

    async def consume(self, digest: str, now: float) -> tuple[Redemption, ClientTokenClaims | None]:
        # No await in here: the check and the mark cannot interleave with another consume.
        self._sweep(now)
        entry = self._entries.get(digest)
        if entry is None:
            return "unknown", None
        if entry.used:
            return "used", entry.claims
        if now >= entry.claims.expires_at:
            return "expired", entry.claims
        entry.used = True
        return "ok", entry.claims

    def _sweep(self, now: float) -> None:
        while self._forget_at and self._forget_at[0][0] <= now:
            _, digest = heapq.heappop(self._forget_at)
            self._entries.pop(digest, None)


# KEYS[1] the token's record; ARGV[1] now, in seconds. Read and mark in one step.
_CONSUME = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {'unknown'} end
if redis.call('HEXISTS', KEYS[1], 'used_at') == 1 then return {'used', fields} end
if tonumber(redis.call('HGET', KEYS[1], 'expires_at')) <= tonumber(ARGV[1]) then
  return {'expired', fields}
end
redis.call('HSET', KEYS[1], 'used_at', ARGV[1])
return {'ok', fields}
"""


class RedisTokenStore:
    """A ``TokenStore`` in Redis, shared by every worker.

    The client must decode responses (``from_url`` makes one).
    """

    def __init__(
        self,
        redis: StoreRedis,
        *,
        prefix: str = "voxgate:",
        retention_s: float = DEFAULT_RETENTION_S,
        owns_client: bool = False,
    ) -> None:
        if not decodes_responses(redis):
            raise InvalidInput("RedisTokenStore needs a client made with decode_responses=True")
        self._redis = redis
        self._prefix = prefix
        self._retention_s = retention_s
        self._owns_client = owns_client
        self._consume = redis.register_script(_CONSUME)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "voxgate:",
        retention_s: float = DEFAULT_RETENTION_S,
        timeout_s: float = DEFAULT_STORE_TIMEOUT_S,
    ) -> RedisTokenStore:
        """A store on its own client, closed by ``aclose``."""
        # Blocking: a burst of redeems waits for a connection rather than failing.
        client = redis_client(url, max_connections=16, blocking=True, timeout_s=timeout_s)
        return cls(client, prefix=prefix, retention_s=retention_s, owns_client=True)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    async def put(self, digest: str, claims: ClientTokenClaims, now: float) -> None:
        keep_ms = max(1, math.ceil((claims.expires_at + self._retention_s - now) * 1000))
        # One transaction, so a record never exists without its TTL.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(digest), items=_fields(claims))
            pipe.pexpire(self._key(digest), keep_ms)
            await pipe.execute()

    async def consume(self, digest: str, now: float) -> tuple[Redemption, ClientTokenClaims | None]:
        reply = await self._consume(keys=[self._key(digest)], args=[repr(now)])
        if reply[0] == "unknown":
            return "unknown", None
        outcome: Redemption = reply[0]
        return outcome, _claims(reply[1])

    def _key(self, digest: str) -> str:
        return f"{self._prefix}client-token:{digest}"


def _fields(claims: ClientTokenClaims) -> list[str]:
    """Field, value, field, value...; a None claim is left out."""
    # repr() of a float reads back to the same float, in Python and in Lua's tonumber.
    fields = [
        *("token_id", claims.token_id, "account_id", claims.account_id),
        *("key_id", claims.key_id, "max_credits", str(claims.max_credits)),
        *("issued_at", repr(claims.issued_at), "expires_at", repr(claims.expires_at)),
    ]
    if claims.voice_id is not None:
        fields += ["voice_id", claims.voice_id]
    if claims.session_id is not None:
        fields += ["session_id", claims.session_id]
    return fields


def _claims(fields: Mapping[Any, Any] | list[Any]) -> ClientTokenClaims:
    if isinstance(fields, list):  # HGETALL inside Lua answers a flat list
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    return ClientTokenClaims(
        token_id=fields["token_id"],
        account_id=fields["account_id"],
        key_id=fields["key_id"],
        voice_id=fields.get("voice_id"),
        max_credits=int(fields["max_credits"]),
        session_id=fields.get("session_id"),
        issued_at=float(fields["issued_at"]),
        expires_at=float(fields["expires_at"]),
    )


class ClientTokens:
    """Mints and redeems client tokens over a ``TokenStore``.

    ``keys``: when given, a token stops working as soon as its API key is revoked (one lookup
    per redeem). ``origins``: when given, ``redeem`` checks the browser's ``Origin`` before
    touching the token, so a refused origin does not burn it. ``min_ttl_s`` exists for tests.
    """

    def __init__(
        self,
        store: TokenStore,
        *,
        keys: KeyStore | None = None,
        origins: OriginPolicy | None = None,
        clock: Clock = time.time,
        min_ttl_s: float = MIN_TTL_S,
        max_ttl_s: float = MAX_TTL_S,
    ) -> None:
        if not 0 < min_ttl_s <= max_ttl_s:
            raise InvalidInput(f"need 0 < min_ttl_s <= max_ttl_s, not {min_ttl_s}, {max_ttl_s}")
        self._store = store
        self._keys = keys
        self._origins = origins
        self._clock = clock
        self._min_ttl_s = min_ttl_s
        self._max_ttl_s = max_ttl_s

    async def mint(
        self,
        key: KeyRecord,
        *,
        voice_id: str | None = None,
        max_credits: int,
        ttl_s: float = DEFAULT_TTL_S,
        session_id: str | None = None,
    ) -> tuple[str, ClientTokenClaims]:
        """A new token for ``key``'s account, and its claims; the token is not kept.

        ``InvalidInput`` for a ttl outside [1 s, 1 h] or ``max_credits`` outside
        [1, 1,000,000]; ``AuthError(code="revoked_api_key")`` for a revoked key.
        """
        if key.revoked:
            raise AuthError(f"API key {key.key_id} was revoked", code="revoked_api_key")
        self._check_scope(voice_id, max_credits, ttl_s, session_id)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = token_digest(token)
        now = self._clock()
        claims = ClientTokenClaims(
            token_id=TOKEN_ID_PREFIX + digest[:16],
            account_id=key.account_id,
            key_id=key.key_id,
            voice_id=voice_id,
            max_credits=max_credits,
            session_id=session_id,
            issued_at=now,
            expires_at=now + ttl_s,
        )
        await self._store.put(digest, claims, now)
        log.debug("minted client token %s for key %s", claims.token_id, key.key_id)
        return token, claims

    async def redeem(self, token: str, *, origin: str | None = None) -> ClientTokenClaims:
        """The token's claims, once: the token cannot be redeemed again.

        ``origin`` is the request's ``Origin`` header (None when absent). Raises ``AuthError``
        with one of the codes listed in the module docstring.
        """
        if self._origins is not None:
            self._origins.check(origin)
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
            raise AuthError("not a client token", code="invalid_token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("not a client token", code="invalid_token")
        outcome, claims = await self._store.consume(token_digest(token), self._clock())
        if outcome == "unknown" or claims is None:
            raise AuthError("unknown or long-expired client token", code="invalid_token")
        if outcome == "used":
            # A replay is worth a trace: the token leaked, or a client retried blindly.
            log.warning("client token %s of key %s presented again", claims.token_id, claims.key_id)
            raise AuthError(f"client token {claims.token_id} was already used", code="token_used")
        if outcome == "expired":
            raise AuthError(f"client token {claims.token_id} has expired", code="token_expired")
        if self._keys is not None:
            await self._check_key(claims)
        return claims

    async def _check_key(self, claims: ClientTokenClaims) -> None:
        assert self._keys is not None
        key = await self._keys.get(claims.key_id)
        if key is None or key.revoked:
            message = f"API key {claims.key_id} of client token {claims.token_id} was revoked"
            raise AuthError(message, code="revoked_api_key")

    def _check_scope(
        self, voice_id: str | None, max_credits: int, ttl_s: float, session_id: str | None
    ) -> None:
        ttl_ok = isinstance(ttl_s, int | float) and not isinstance(ttl_s, bool)
        if (
            not ttl_ok
            or not math.isfinite(ttl_s)
            or not (self._min_ttl_s <= ttl_s <= self._max_ttl_s)
        ):
            raise InvalidInput(
                f"ttl_s must be {self._min_ttl_s:g} to {self._max_ttl_s:g} seconds, not {ttl_s!r}"
            )
        check_amount("max_credits", max_credits, 1)
        if max_credits > MAX_TOKEN_CREDITS:
            raise InvalidInput(f"max_credits must be at most {MAX_TOKEN_CREDITS:,}")
        if voice_id is not None:
            check_id("voice_id", voice_id)
        if session_id is not None:
            check_id("session_id", session_id)
