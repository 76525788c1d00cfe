"""The store through real Sentinels: the master found by name, and failovers.

After a failover between calls the ledger goes on on the new master; a failover under a live
turn should leave it exact, as after the store faults of ``test_store_faults`` (settlements
caught up, nothing held, what was committed is what the session reported), but may not yet:
see the mark on that test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import SentinelServers, Target
from tests.gateway_harness import receive_until, running_gateway
from tests.integration.test_ledger import assert_consistent
from tests.integration.test_store_faults import KEY, assert_turn_accounted, speak
from tests.ledger_checks import account_of, assert_ledger_exact
from voxgate.errors import StoreUnavailable
from voxgate.sessions.ledger_redis import RedisLedger
from voxgate.store import StoreClient, redis_client

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_the_client_talks_to_the_master_sentinel_names(
    sentinel_servers: SentinelServers,
) -> None:
    client = redis_client(sentinel_servers.url, max_connections=4, blocking=True)
    assert isinstance(client, StoreClient)
    assert (await client.info("server"))["tcp_port"] == sentinel_servers.master.port
    await client.aclose()


async def test_the_ledger_follows_a_failover(sentinel_servers: SentinelServers) -> None:
    ledger = RedisLedger.from_url(sentinel_servers.url)
    await ledger.create_account("acme", 100)
    await ledger.reserve("acme", "s1", 30, "op1")
    await ledger.reserve("acme", "s1", 20, "op2")
    new_master = await asyncio.to_thread(sentinel_servers.failover)
    assert new_master == sentinel_servers.replica.port
    for _ in range(50):  # the first command after the switch may find the old master
        try:
            outcome = await ledger.commit("op1", 25)
            break
        except StoreUnavailable:
            await asyncio.sleep(0.1)
    assert (outcome.applied, outcome.charged) == (True, 25)
    assert await ledger.release_session("s1", account_id="acme") == 20
    balance = await ledger.balance("acme")
    assert (balance.committed, balance.held, balance.available) == (25, 0, 75)
    await assert_consistent(ledger)
    await ledger.aclose()


@pytest.mark.engine_only
@pytest.mark.xfail(
    reason="SENTINEL FAILOVER promotes the replica before it demotes the old master: a"
    " settlement that old master acknowledged in between is lost with it (docs/redis.md);"
    " exact needs writes acknowledged by the replica (WAIT), not built yet",
    strict=False,
)
async def test_a_failover_mid_turn_leaves_the_ledger_exact(
    target: Target,
    http: aiohttp.ClientSession,
    sentinel_servers: SentinelServers,
) -> None:
    async with running_gateway(
        target, redis_url=sentinel_servers.url, api_keys=(f"{KEY}:100000",)
    ) as gateway:
        ws, received = await speak(http, gateway)
        await receive_until(ws, "chunk.ended", received, timeout=30)
        await asyncio.to_thread(sentinel_servers.failover)
        await receive_until(ws, "context.done", received, timeout=60)
        charged = assert_turn_accounted(received)
        assert charged > 0
        await ws.close()
        account = await account_of(gateway.services, KEY)
        await assert_ledger_exact(gateway.services, {account: charged})
