"""The store through real Sentinels: the master found by name, and failovers.

After a failover between calls the ledger goes on on the new master. A ledger write counts
once the replica holds it (``WAIT``): one it did not acknowledge is ``StoreUnavailable``,
and its retry by op_id applies it once. So a failover under a live turn, ordered
(``SENTINEL FAILOVER``) or forced (the master killed -9), leaves the ledger exact, as after
the store faults of ``test_store_faults``: settlements caught up, nothing held, what was
committed is what the session reported.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import aiohttp
import pytest

from tests.conftest import RedisProcess, SentinelServers, Target
from tests.gateway_harness import receive_until, running_gateway
from tests.integration.test_ledger import assert_consistent
from tests.integration.test_store_faults import KEY, assert_turn_accounted, speak
from tests.ledger_checks import account_of, assert_ledger_exact
from voxgate.errors import StoreUnavailable
from voxgate.sessions.ledger import ReservationState
from voxgate.sessions.ledger_redis import RedisLedger
from voxgate.store import StoreClient, redis_client

pytestmark = pytest.mark.timeout(120)

T = TypeVar("T")


async def retried(call: Callable[[], Awaitable[T]], timeout_s: float = 10.0) -> T:
    """The call, sent again while the store is unavailable, as settlements are."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                return await call()
            except StoreUnavailable:
                await asyncio.sleep(0.1)


@contextmanager
def stopped(server: RedisProcess) -> Iterator[None]:
    """SIGSTOP: the server keeps its connections and answers nothing until SIGCONT."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


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
    # The first command after the switch may find the old master; a commit applied whose
    # acknowledgement came too late is sent again and replays.
    outcome = await retried(lambda: ledger.commit("op1", 25))
    assert (outcome.state, outcome.charged) == (ReservationState.COMMITTED, 25)
    assert await retried(lambda: ledger.release_session("s1", account_id="acme")) == 20
    balance = await ledger.balance("acme")
    assert (balance.committed, balance.held, balance.available) == (25, 0, 75)
    await assert_consistent(ledger)
    await ledger.aclose()


@pytest.mark.engine_only
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


async def test_a_write_the_replica_did_not_acknowledge_is_unavailable_and_retried_once(
    sentinel_servers: SentinelServers,
) -> None:
    ledger = RedisLedger.from_url(sentinel_servers.url)
    await ledger.create_account("acme", 100)
    with stopped(sentinel_servers.replica), pytest.raises(StoreUnavailable, match="0 of 1"):
        await ledger.reserve("acme", "s1", 30, "op1")
    # The master applied it; the same op_id again is a replay, held once.
    again = await ledger.reserve("acme", "s1", 30, "op1")
    assert not again.created
    assert (await ledger.balance("acme")).held == 30
    with stopped(sentinel_servers.replica):
        with pytest.raises(StoreUnavailable):
            await ledger.commit("op1", 10)
        # A replay the replica has not acknowledged either is no answer yet.
        with pytest.raises(StoreUnavailable):
            await ledger.commit("op1", 10)
    outcome = await ledger.commit("op1", 10)
    assert (outcome.applied, outcome.charged) == (False, 10)
    balance = await ledger.balance("acme")
    assert (balance.committed, balance.held, balance.available) == (10, 0, 90)
    await assert_consistent(ledger)
    await ledger.aclose()


async def test_replica_acks_0_takes_writes_no_replica_has(
    sentinel_servers: SentinelServers,
) -> None:
    ledger = RedisLedger.from_url(sentinel_servers.url + "?replica_acks=0")
    await ledger.create_account("acme", 100)
    with stopped(sentinel_servers.replica):
        assert (await ledger.reserve("acme", "s1", 30, "op1")).created
    await ledger.aclose()


async def test_a_master_with_min_replicas_to_write_refusing_a_write_is_unavailable(
    sentinel_servers: SentinelServers,
) -> None:
    ledger = RedisLedger.from_url(sentinel_servers.url)
    await ledger.create_account("acme", 100)
    client = redis_client(sentinel_servers.url, max_connections=2)
    await client.config_set("min-replicas-to-write", 1)
    await client.config_set("min-replicas-max-lag", 1)
    with stopped(sentinel_servers.replica):
        await asyncio.sleep(2.5)  # the replica's last acknowledgement is older than the lag
        with pytest.raises(StoreUnavailable, match="ResponseError"):
            await ledger.reserve("acme", "s1", 30, "op1")
        with pytest.raises(StoreUnavailable):
            await client.set("voxgate:probe", "1")
    # Until the replica, running again, has acknowledged. The refused reserve changed
    # nothing: this one holds.
    assert (await retried(lambda: ledger.reserve("acme", "s1", 30, "op1"))).created
    await client.aclose()
    await ledger.aclose()


async def test_a_master_killed_leaves_every_acknowledged_write_and_waits_for_a_replica(
    sentinel_servers: SentinelServers,
) -> None:
    ledger = RedisLedger.from_url(sentinel_servers.url)
    await ledger.create_account("acme", 100)
    await ledger.reserve("acme", "s1", 30, "op1")
    await ledger.commit("op1", 25)
    await ledger.reserve("acme", "s1", 20, "op2")
    killed = await asyncio.to_thread(sentinel_servers.kill_master)
    # The new master has no replica yet: it takes no ledger write, however often asked.
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            await ledger.refund("op2")
    await asyncio.to_thread(sentinel_servers.rejoin, killed)
    refunded = await retried(lambda: ledger.refund("op2"))
    assert (refunded.state, refunded.released) == (ReservationState.REFUNDED, 20)
    balance = await ledger.balance("acme")
    assert (balance.committed, balance.held, balance.available) == (25, 0, 75)
    await assert_consistent(ledger)
    await ledger.aclose()


@pytest.mark.engine_only
async def test_a_master_killed_mid_turn_leaves_the_ledger_exact(
    target: Target,
    http: aiohttp.ClientSession,
    sentinel_servers: SentinelServers,
) -> None:
    async with running_gateway(
        target, redis_url=sentinel_servers.url, api_keys=(f"{KEY}:100000",)
    ) as gateway:
        ws, received = await speak(http, gateway)
        await receive_until(ws, "chunk.ended", received, timeout=30)
        killed = await asyncio.to_thread(sentinel_servers.kill_master)
        await asyncio.to_thread(sentinel_servers.rejoin, killed)
        await receive_until(ws, "context.done", received, timeout=60)
        charged = assert_turn_accounted(received)
        assert charged > 0
        await ws.close()
        account = await account_of(gateway.services, KEY)
        await assert_ledger_exact(gateway.services, {account: charged})
