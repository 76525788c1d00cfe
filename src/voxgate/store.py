"""The Redis connection every store uses, and what an outage of Redis means to a caller.

The ledger, the key store, the client tokens and the session registry each open a pool with
:func:`redis_client`. Its commands time out after ``timeout_s`` (a store that is down or
paused answers a handshake or a chunk's reserve within that time, instead of hanging it),
and a command that finds its pooled connection closed by a Redis restart reconnects once at
once. Whatever still fails to reach Redis (refused, reset, timed out, no free connection)
comes out as :class:`StoreUnavailable`: code ``store_unavailable``, retryable, answered by
the gateway as HTTP 503 with ``Retry-After`` or as an ``error`` event. Errors Redis itself
answers (a bad script, a wrong type) are bugs and stay ``RedisError``.

A timed-out command may still run once Redis comes back: every write the gateway makes is a
script that is idempotent by its operation id, so the caller's retry or void is safe.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from voxgate.errors import StoreUnavailable

DEFAULT_TIMEOUT_S = 1.0
RETRY_AFTER_S = 1

_OUTAGE = (RedisConnectionError, RedisTimeoutError)


def unavailable(error: Exception) -> StoreUnavailable:
    return StoreUnavailable(
        f"the credit and key store cannot be reached ({type(error).__name__}); retry shortly",
        retry_after_s=RETRY_AFTER_S,
    )


class StorePipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return await super().execute(raise_on_error)
        except _OUTAGE as error:
            raise unavailable(error) from error


class StoreClient(Redis):
    """A Redis client whose outage errors are ``StoreUnavailable``."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except _OUTAGE as error:
            raise unavailable(error) from error

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> StorePipeline:
        return StorePipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


def redis_client(
    url: str,
    *,
    max_connections: int,
    blocking: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> StoreClient:
    """A client of its own pool, decoding responses, with the timeouts described above.

    ``blocking``: a burst waits (up to ``timeout_s``) for a free connection instead of
    opening more than ``max_connections``.
    """
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "decode_responses": True,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        # Only a connection error is retried, and only once: a timeout means Redis is
        # paused or overloaded, and waiting longer is what the caller must not do.
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    pool: ConnectionPool = (
        BlockingConnectionPool.from_url(url, timeout=timeout_s, **options)
        if blocking
        else ConnectionPool.from_url(url, **options)
    )
    return StoreClient(connection_pool=pool)
