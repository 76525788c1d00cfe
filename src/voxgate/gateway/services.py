"""Everything a gateway process shares between its connections, started and stopped once.

With nothing configured: the embedded engine (in a thread of its own, so its work never
sits on the gateway's event loop), in-process stores, and one dev key. ``VOXGATE_REDIS_URL``
moves keys, credits, tokens and the cluster's records to Redis; ``VOXTRAL_API_KEY`` points
the upstream at the real Voxtral API.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from voxgate.codecs.opus_packets import OpusRun
from voxgate.config import Settings
from voxgate.errors import AuthError, StoreUnavailable
from voxgate.gateway.access.auth import OriginPolicy, bearer_token, dev_key, keys_from_specs
from voxgate.gateway.access.client_tokens import (
    ClientTokenClaims,
    ClientTokens,
    MemoryTokenStore,
    RedisTokenStore,
    TokenStore,
)
from voxgate.gateway.access.keys import KeyRecord, KeyStore, MemoryKeyStore, RedisKeyStore
from voxgate.gateway.access.principal import Principal
from voxgate.gateway.access.session_slots import RedisSessionSlots
from voxgate.gateway.cluster.cluster import SESSION_TTL_S, Cluster, new_node_id, node_url
from voxgate.gateway.cluster.reaper import reap_node
from voxgate.gateway.cluster.state import RedisClusterState
from voxgate.gateway.metrics import Metrics
from voxgate.gateway.workers import WorkerInfo
from voxgate.sessions.ledger import Ledger
from voxgate.sessions.ledger_memory import MemoryLedger
from voxgate.sessions.ledger_redis import RedisLedger
from voxgate.sessions.settlements import Settlements
from voxgate.store import redis_client
from voxgate.upstream import SpeechRequest, Upstream
from voxgate.upstream.engine.background import BackgroundEngine
from voxgate.upstream.pcm import PcmChunk
from voxgate.upstream.voice_languages import VoiceLanguages

_Audio = TypeVar("_Audio", PcmChunk, OpusRun)

log = logging.getLogger(__name__)

# At shutdown, how long settlements still queued (the store away) may take to reach it.
SETTLEMENT_DRAIN_S = 5.0
KEY_SETUP_RETRY_S = 1.0


@dataclass
class InstrumentedUpstream:
    """The upstream client, timed: first-byte latency and outcomes go to the metrics."""

    upstream: Upstream
    metrics: Metrics

    def stream(self, request: SpeechRequest) -> AsyncIterator[PcmChunk]:
        return self._timed(self.upstream.stream(request))

    def stream_opus(self, request: SpeechRequest) -> AsyncIterator[OpusRun]:
        return self._timed(self.upstream.stream_opus(request))

    async def _timed(self, audio: AsyncIterator[_Audio]) -> AsyncIterator[_Audio]:
        started = time.monotonic()
        first = True
        outcome = "error"
        try:
            async for piece in audio:
                if first:
                    self.metrics.upstream_first_byte.observe(time.monotonic() - started)
                    first = False
                yield piece
            outcome = "ok"
        except GeneratorExit:
            outcome = "cancelled"
            raise
        finally:
            self.metrics.upstream_requests.labels(outcome).inc()


@dataclass
class Services:
    settings: Settings
    upstream_client: Upstream
    upstream: InstrumentedUpstream
    ledger: Ledger
    keys: KeyStore
    tokens: ClientTokens
    origins: OriginPolicy
    metrics: Metrics
    settlements: Settlements
    cluster: Cluster
    engine: BackgroundEngine | None = None
    dev_api_key: str | None = None
    draining: bool = False
    connections: set[Any] = field(default_factory=set)
    live_sessions: dict[str, Any] = field(default_factory=dict)  # session id -> connection
    worker: WorkerInfo | None = None
    _closers: list[Any] = field(default_factory=list)
    _key_setup: asyncio.Task[None] | None = None
    _voice_languages: VoiceLanguages | None = None

    @property
    def voice_languages(self) -> VoiceLanguages:
        """Saved voices' languages, from the upstream's list (kept a few minutes)."""
        if self._voice_languages is None:
            self._voice_languages = VoiceLanguages(self.upstream_client)
        return self._voice_languages

    @classmethod
    async def start(cls, settings: Settings, *, worker: WorkerInfo | None = None) -> Services:
        engine: BackgroundEngine | None = None
        upstream_config = settings.upstream
        if settings.uses_embedded_engine:
            engine = BackgroundEngine()
            engine.__enter__()
            # Everything configured for the upstream holds for the engine, but where it is.
            upstream_config = dataclasses.replace(
                settings.upstream, base_url=engine.base_url, api_key=engine.api_key
            )
        metrics = Metrics()
        upstream = Upstream(upstream_config)
        closers: list[Any] = [upstream.aclose]
        ledger: Ledger
        token_store: TokenStore
        keys: KeyStore
        node_id = new_node_id()
        cluster = Cluster(
            node_id,
            worker.node_url(settings)
            if worker
            else node_url(settings.host, settings.port, settings.node_url),
            lease_s=settings.node_lease_s,
        )
        if settings.redis_url:
            url, timeout_s = settings.redis_url, settings.redis_timeout_s
            redis_ledger = RedisLedger.from_url(url, timeout_s=timeout_s)
            redis_tokens = RedisTokenStore.from_url(url, timeout_s=timeout_s)
            redis_keys = RedisKeyStore.from_url(url, ledger=redis_ledger, timeout_s=timeout_s)
            cluster_client = redis_client(
                url, max_connections=16, blocking=True, timeout_s=timeout_s
            )
            cluster.state = RedisClusterState(cluster_client)
            cluster.slots = RedisSessionSlots(cluster_client, ttl_s=SESSION_TTL_S)
            closers += [
                cluster_client.aclose,
                redis_keys.aclose,
                redis_tokens.aclose,
                redis_ledger.aclose,
            ]
            ledger, token_store, keys = redis_ledger, redis_tokens, redis_keys
        else:
            ledger = MemoryLedger()
            token_store = MemoryTokenStore()
            keys = MemoryKeyStore(ledger)
        origins = OriginPolicy(tuple(settings.allowed_origins))
        services = cls(
            settings=settings,
            upstream_client=upstream,
            upstream=InstrumentedUpstream(upstream, metrics),
            ledger=ledger,
            keys=keys,
            tokens=ClientTokens(token_store, keys=keys, origins=origins),
            origins=origins,
            metrics=metrics,
            settlements=Settlements(ledger),
            cluster=cluster,
            engine=engine,
            worker=worker,
            _closers=closers,
        )
        metrics.settlement_sampler = services.settlements.stats
        if cluster.state is not None:
            state, slots = cluster.state, cluster.slots

            async def reap(dead: str) -> None:
                sessions, _ = await reap_node(dead, state, slots, ledger)
                metrics.nodes_reaped.inc()
                metrics.sessions_reaped.inc(sessions)

            cluster.reap = reap

            async def lose_sessions() -> None:
                await asyncio.gather(
                    *(c.lose() for c in list(services.connections)), return_exceptions=True
                )

            cluster.on_lapsed = lose_sessions
        cluster.on_forward = lambda kind: metrics.forwarded.labels(kind).inc()
        await cluster.start()
        closers.insert(0, cluster.aclose)
        try:
            await services._configure_keys()
        except StoreUnavailable as exc:
            # Up without the store: /healthz answers, the rest is 503 store_unavailable.
            log.warning("store unavailable at startup (%s); keys configured once it is up", exc)
            services._key_setup = asyncio.get_running_loop().create_task(
                services._configure_keys_when_store_returns()
            )
        return services

    async def _configure_keys_when_store_returns(self) -> None:
        while True:
            await asyncio.sleep(KEY_SETUP_RETRY_S)
            try:
                await self._configure_keys()
            except StoreUnavailable:
                continue
            log.info("store reachable: keys configured")
            return

    async def _configure_keys(self) -> None:
        limit = self.settings.max_sessions_per_key
        if self.settings.api_keys:
            await keys_from_specs(self.settings.api_keys, self.keys, max_sessions=limit)
        elif not self.settings.redis_url:
            self.dev_api_key, _ = await dev_key(self.keys, max_sessions=limit)

    def new_session_id(self) -> str:
        return uuid.uuid4().hex

    async def aclose(self) -> None:
        if self._key_setup is not None:
            self._key_setup.cancel()
        # Settlements first: the ledger they go to closes with the others.
        await self.settlements.aclose(SETTLEMENT_DRAIN_S)
        for close in self._closers:
            with contextlib.suppress(Exception):
                await close()
        if self.engine is not None:
            self.engine.__exit__(None, None, None)

    # -- authentication ---------------------------------------------------------------

    async def authenticate_bearer(self, authorization: str | None) -> Principal:
        record = await self.keys.authenticate(bearer_token(authorization))
        return _principal(record)

    async def authenticate_key(self, plain_key: str) -> KeyRecord:
        return await self.keys.authenticate(plain_key)

    async def redeem_token(self, token: str, origin: str | None) -> Principal:
        claims = await self.tokens.redeem(token, origin=origin)
        key = await self.keys.get(claims.key_id)
        if key is None or key.revoked:
            raise AuthError("the key this token was minted from is gone", code="revoked_api_key")
        return _from_claims(claims, key)

    @contextlib.asynccontextmanager
    async def session_slot(self, principal: Principal, session_id: str) -> AsyncIterator[None]:
        """A live session: counted against its key's limit (cluster-wide) and owned here."""
        async with self.cluster.session(principal, session_id):
            self.metrics.sessions_active.inc()
            try:
                yield
            finally:
                self.metrics.sessions_active.dec()

    async def ready(self) -> dict[str, str]:
        """What /readyz reports: each dependency, "ok" or why not."""
        checks = {"store": "ok", "upstream": "ok"}
        try:
            await self.cluster.ping()  # one round trip to Redis, if used
        except Exception as exc:
            checks["store"] = _reason(exc)
        try:
            await self.upstream_client.list_voices(page=1, limit=1)
        except Exception as exc:
            checks["upstream"] = _reason(exc)
        if self.draining:
            checks["draining"] = "yes"
        return checks


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _principal(record: KeyRecord) -> Principal:
    return Principal(
        account_id=record.account_id, key_id=record.key_id, max_sessions=record.max_sessions
    )


def _from_claims(claims: ClientTokenClaims, key: KeyRecord) -> Principal:
    # A browser's session counts against the key it was minted from.
    return Principal(
        account_id=claims.account_id,
        key_id=claims.key_id,
        max_sessions=key.max_sessions,
        voice_id=claims.voice_id,
        max_credits=claims.max_credits,
        session_id=claims.session_id,
        via_token=True,
    )
