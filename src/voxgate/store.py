"""The Redis connection every store uses, and what an outage of Redis means to a caller.

The ledger, the key store, the client tokens and the cluster's records each open a client
with :func:`redis_client`, on whichever topology ``VOXGATE_REDIS_URL`` names::

    redis://[user:password@]host:6379/0             one server (rediss:// for TLS, unix://)
    redis+sentinel://[user:password@]s1:26379,s2:26379/<service>/0
                                                    the master Sentinel names for <service>
    redis+cluster://[user:password@]n1:7000,n2:7001 a Redis Cluster, from any of its nodes

(``rediss+sentinel://`` and ``rediss+cluster://`` speak TLS; a Sentinel URL may add
``?sentinel_password=…`` when the sentinels have a password of their own, and
``?replica_acks=N``, below.) The same URL serves ``voxgate serve`` and ``voxgate keys``.

Its commands time out after ``timeout_s`` (a store that is down or paused answers a
handshake or a chunk's reserve within that time, instead of hanging it), and a command that
finds its pooled connection closed by a Redis restart reconnects once at once. Behind
Sentinel that reconnection asks the sentinels for the master first, so a failover is one
failed command at most; a write that reaches a master demoted to replica is such a failure
too. On a cluster, MOVED and ASK redirections are followed by redis-py, and a cluster that
is down, has a slot without a master, or answers TRYAGAIN (a script's keys are split by a
slot migration in progress) is an outage like a server that is down.

Whatever still fails to reach Redis (refused, reset, timed out, no free connection, cluster
down, or a write refused ``NOREPLICAS`` by a master with ``min-replicas-to-write`` and too
few replicas) comes out as :class:`StoreUnavailable`: code ``store_unavailable``, retryable,
answered by the gateway as HTTP 503 with ``Retry-After`` or as an ``error`` event. Errors
Redis itself answers (a bad script, a wrong type) are bugs and stay ``RedisError``.

A timed-out command may still run once Redis comes back: every write the gateway makes is a
script that is idempotent by its operation id, so the caller's retry or void is safe.

Writes that must outlive a failover (the ledger's) go through :func:`run_write`. Behind
Sentinel it sends the script and ``WAIT <replica_acks> <ms>`` together, on one connection:
the answer counts only once that many replicas hold everything the connection wrote, and a
write no replica acknowledged in time is ``StoreUnavailable`` too. Redis replicates
asynchronously, and ``SENTINEL FAILOVER`` promotes the replica before it demotes the old
master: a write acknowledged without ``WAIT`` can be lost with the old master. A demoted or
isolated master has no replica to acknowledge, so its writes fail this way and are retried
where Sentinel now points; the scripts are idempotent, so the retry applies once or
replays. ``replica_acks`` is 1 unless the URL says otherwise (``?replica_acks=0`` takes
writes a failover may lose, as before). One server and a cluster do not wait: a write stays
one round trip there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from voxgate.errors import StoreUnavailable

DEFAULT_TIMEOUT_S = 1.0
RETRY_AFTER_S = 1
SENTINEL_PORT = 26379
REDIS_PORT = 6379
SENTINEL_REPLICA_ACKS = 1
MAX_REPLICA_ACKS = 16

# RedisClusterException: no node of the cluster could be reached to learn its slots, or a
# slot has no node (SlotNotCoveredError); ClusterError: CLUSTERDOWN, MASTERDOWN, or
# redirections that did not settle ("TTL exhausted") while a slot moves; TryAgainError: a
# slot being migrated holds some of a script's keys, not all, for now.
_OUTAGE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,
    TryAgainError,
    RedisClusterException,
)

Topology = Literal["server", "sentinel", "cluster"]


def refused_for_replicas(error: Exception) -> bool:
    """NOREPLICAS: a master with ``min-replicas-to-write`` that has lost its replicas (as an
    old master has, once Sentinel promoted its replica) refuses writes; an outage too."""
    if not isinstance(error, ResponseError):
        return False
    code = getattr(error, "status_code", None)
    return code == "NOREPLICAS" or str(error).startswith("NOREPLICAS")


def unavailable(error: Exception) -> StoreUnavailable:
    return StoreUnavailable(
        f"the credit and key store cannot be reached ({type(error).__name__}); retry shortly",
        retry_after_s=RETRY_AFTER_S,
    )


@contextmanager
def outages_unavailable() -> Iterator[None]:
    """Outage errors (above) raised in the block come out as ``StoreUnavailable``."""
    try:
        yield
    except _OUTAGE as error:
        raise unavailable(error) from error
    except ResponseError as error:
        if refused_for_replicas(error):
            raise unavailable(error) from error
        raise


class StorePipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        with outages_unavailable():
            return await super().execute(raise_on_error)


class StoreClient(Redis):
    """A Redis client (one server, or Sentinel's master) whose outage errors are
    ``StoreUnavailable``.

    ``replica_acks``: how many replicas :func:`run_write` waits for (0: none), for at most
    ``replica_wait_ms``.
    """

    replica_acks = 0
    replica_wait_ms = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        with outages_unavailable():
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> StorePipeline:
        return StorePipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class StoreClusterPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        with outages_unavailable():
            return await super().execute(raise_on_error, allow_redirections)


class StoreClusterClient(RedisCluster):
    """A Redis Cluster client whose outage errors are ``StoreUnavailable``.

    A command goes to the master of its first key's slot (EVALSHA too: every script of the
    stores declares keys of one slot). ``in_flight`` bounds the commands waiting at once,
    as a blocking pool bounds them on one server.
    """

    def __init__(self, *args: Any, in_flight: int | None = None, wait_s: float = 0, **kw: Any):
        super().__init__(*args, **kw)
        self._in_flight = None if in_flight is None else asyncio.Semaphore(in_flight)
        self._wait_s = wait_s

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._in_flight is None:
            return await self._execute(*args, **options)
        try:
            async with asyncio.timeout(self._wait_s):
                await self._in_flight.acquire()
        except TimeoutError as error:  # no command finished within wait_s
            raise unavailable(error) from error
        try:
            return await self._execute(*args, **options)
        finally:
            self._in_flight.release()

    async def _execute(self, *args: Any, **options: Any) -> Any:
        with outages_unavailable():
            return await super().execute_command(*args, **options)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        """Non-transactional pipelines may span slots (redis-py splits them by node); a
        transactional one must keep to one slot."""
        if shard_hint:
            raise RedisClusterException("shard_hint is not supported in cluster mode")
        # redis-py's own pipeline() makes one just so; its typing marks an attribute abstract
        return StoreClusterPipeline(self, transaction)  # type: ignore[abstract]


StoreRedis: TypeAlias = Redis | RedisCluster
"""What every store is given: one server or Sentinel's master (a ``Redis``), or a cluster;
:func:`redis_client` makes either."""


async def run_write(
    client: StoreRedis, script: AsyncScript, keys: list[str], args: list[Any]
) -> Any:
    """Run a script that writes: its answer, once the replicas the client asks for hold what
    it wrote (the module docstring); ``StoreUnavailable`` if they did not within the time."""
    acks = client.replica_acks if isinstance(client, StoreClient) else 0
    if not acks:
        return await script(keys=keys, args=args)
    assert isinstance(client, StoreClient)
    reply, replicas = await _script_then_wait(client, script, keys, args)
    if isinstance(reply, NoScriptError):  # a master new by a failover: the WAIT did no harm
        await client.script_load(script.script)
        reply, replicas = await _script_then_wait(client, script, keys, args)
    for answer in (reply, replicas):
        if isinstance(answer, Exception):
            raise unavailable(answer) if refused_for_replicas(answer) else answer
    if int(replicas) < acks:
        raise StoreUnavailable(
            f"the store's master had {replicas} of {acks} replicas acknowledge a write within"
            f" {client.replica_wait_ms} ms (failing over?); retry shortly",
            retry_after_s=RETRY_AFTER_S,
        )
    return reply


async def _script_then_wait(
    client: StoreClient, script: AsyncScript, keys: list[str], args: list[Any]
) -> list[Any]:
    """EVALSHA and WAIT in one round trip, on one connection: errors are answered, not
    raised (except an outage's)."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", client.replica_acks, client.replica_wait_ms)
        return await pipe.execute(raise_on_error=False)


@dataclass(frozen=True, kw_only=True)
class StoreAddress:
    """Where the store is, as a ``VOXGATE_REDIS_URL`` says (see the module docstring)."""

    topology: Topology
    url: str  # as given; for "server", what redis-py parses
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels, or cluster nodes to start from
    service: str = ""  # Sentinel's name of the master
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    replica_acks: int | None = None  # replicas a ledger write waits for; None: Sentinel's 1
    tls: bool = False

    def where(self) -> str:
        """Hosts and ports only: a Redis URL may carry a password."""
        if self.topology == "server":
            parts = urlsplit(self.url)
            if not parts.hostname:
                return parts.scheme + ":…"
            return f"{parts.hostname}:{parts.port or REDIS_PORT}"
        hosts = ",".join(f"{host}:{port}" for host, port in self.nodes)
        return f"{self.topology} {hosts}" + (f" ({self.service})" if self.service else "")


_SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": ("server", False),
    "rediss": ("server", True),
    "unix": ("server", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}


def parse_store_url(url: str) -> StoreAddress:
    """The topology and addresses of a store URL; ``ValueError`` naming what is wrong."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in _SCHEMES or not rest:
        forms = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ValueError(f"a Redis URL starts with one of {forms}")
    topology, tls = _SCHEMES[scheme.lower()]
    if topology == "server":
        return StoreAddress(topology="server", url=url, tls=tls)
    # urlsplit cannot take "h1:1,h2:2" as a netloc port; split by hand.
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    if "?" in netloc:
        netloc, _, query = netloc.partition("?")
    userinfo, _, hosts = netloc.rpartition("@")
    username, password = _credentials(userinfo)
    default_port = SENTINEL_PORT if topology == "sentinel" else REDIS_PORT
    nodes = tuple(_host_port(h, default_port) for h in hosts.split(",") if h)
    if not nodes:
        raise ValueError(f"a {scheme}:// URL names at least one host:port")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    segments = [unquote(s) for s in path.split("/") if s]
    if topology == "cluster":
        _refuse_options(options, set(), scheme)
        if segments not in ([], ["0"]):
            raise ValueError("a Redis Cluster has database 0 only: redis+cluster://h1:p1,h2:p2")
        return StoreAddress(
            topology="cluster", url=url, nodes=nodes, username=username, password=password, tls=tls
        )
    _refuse_options(options, {"sentinel_username", "sentinel_password", "replica_acks"}, scheme)
    if not 1 <= len(segments) <= 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise ValueError("a Sentinel URL ends with /<service name>[/<db>]")
    acks = options.get("replica_acks")
    if acks is not None and (not acks.isdigit() or int(acks) > MAX_REPLICA_ACKS):
        raise ValueError(f"replica_acks is a number of replicas, 0 to {MAX_REPLICA_ACKS}")
    return StoreAddress(
        topology="sentinel",
        url=url,
        nodes=nodes,
        service=segments[0],
        db=int(segments[1]) if len(segments) == 2 else 0,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
        replica_acks=None if acks is None else int(acks),
        tls=tls,
    )


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    host, colon, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not colon:
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not a host:port")
    return host, int(port)


def _refuse_options(options: dict[str, str], allowed: set[str], scheme: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"{scheme}:// URLs take no option {', '.join(unknown)}")


def redis_client(
    url: str,
    *,
    max_connections: int,
    blocking: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> StoreRedis:
    """A client of its own pool, decoding responses, with the timeouts described above.

    ``blocking``: a burst waits (up to ``timeout_s``) for a free connection instead of
    opening more than ``max_connections`` (on a cluster: ``max_connections`` a node, and as
    many commands in flight at once).
    """
    address = parse_store_url(url)
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
    }
    # Only a connection error is retried, and only once: a timeout means Redis is paused or
    # overloaded, and waiting longer is what the caller must not do.
    retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    if address.topology == "cluster":
        return _cluster_client(address, options, retry, max_connections, blocking, timeout_s)
    options["max_connections"] = max_connections
    options["retry"] = retry
    if address.topology == "sentinel":
        return _sentinel_client(address, options, blocking, timeout_s)
    pool: ConnectionPool = (
        BlockingConnectionPool.from_url(url, timeout=timeout_s, **options)
        if blocking
        else ConnectionPool.from_url(url, **options)
    )
    return StoreClient(connection_pool=pool)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's master, with connections waited for as ``BlockingConnectionPool`` does."""


def _sentinel_client(
    address: StoreAddress, options: dict[str, Any], blocking: bool, timeout_s: float
) -> StoreClient:
    sentinel_options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "decode_responses": True,
    }
    if address.sentinel_password is not None:
        sentinel_options["password"] = address.sentinel_password
        sentinel_options["username"] = address.sentinel_username
    if address.tls:
        sentinel_options["ssl"] = True
        options["ssl"] = True
    sentinel = Sentinel(list(address.nodes), sentinel_kwargs=sentinel_options)
    pool_class = _BlockingSentinelPool if blocking else SentinelConnectionPool
    if blocking:
        options["timeout"] = timeout_s
    client = sentinel.master_for(
        address.service,
        redis_class=StoreClient,
        connection_pool_class=pool_class,
        db=address.db,
        username=address.username,
        password=address.password,
        **options,
    )
    assert isinstance(client, StoreClient)
    acks = address.replica_acks
    client.replica_acks = SENTINEL_REPLICA_ACKS if acks is None else acks
    # Half the command timeout: the WAIT answers (failed) before the socket gives up on it.
    client.replica_wait_ms = max(1, int(timeout_s * 500))
    return client


def _cluster_client(
    address: StoreAddress,
    options: dict[str, Any],
    retry: Retry,
    max_connections: int,
    blocking: bool,
    timeout_s: float,
) -> StoreClusterClient:
    return StoreClusterClient(
        startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
        username=address.username,
        password=address.password,
        ssl=address.tls,
        max_connections=max_connections,
        # One more attempt after a refresh of the slots: a failover or a moved slot.
        retry=retry,
        in_flight=max_connections if blocking else None,
        wait_s=timeout_s,
        **options,
    )


def decodes_responses(client: StoreRedis) -> bool:
    """Whether the client answers ``str`` (every store needs it)."""
    return bool(client.get_encoder().decode_responses)
