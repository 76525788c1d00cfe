"""The store on a real three-master Redis Cluster: slots, a gateway turn, a slot migrated live.

The contract suites of every store run on the cluster too (``test_ledger``, ``test_auth``,
``test_release_session``, ``test_cluster_state``); this module checks what only a cluster has.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import redis

from tests.conftest import RedisClusterServers, Target
from tests.gateway_harness import receive_until, running_gateway
from tests.integration.test_ledger import FakeClock, assert_consistent
from tests.integration.test_store_faults import KEY, assert_turn_accounted, speak
from tests.ledger_checks import account_of, assert_ledger_exact
from voxgate.errors import StoreUnavailable
from voxgate.sessions.ledger_redis import RedisLedger
from voxgate.store import StoreClusterClient, redis_client

pytestmark = pytest.mark.timeout(120)


def node_of(cluster: RedisClusterServers, port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True, socket_timeout=5)


def slot_owner(cluster: RedisClusterServers, slot: int) -> int:
    """The port of the master serving ``slot``."""
    with node_of(cluster, cluster.nodes[0].port) as client:
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
    raise AssertionError(f"slot {slot} has no master")


async def test_redis_client_of_a_cluster_url_is_a_cluster_client(redis_cluster_url: str) -> None:
    client = redis_client(redis_cluster_url, max_connections=4)
    assert isinstance(client, StoreClusterClient)
    assert len(client.get_primaries() or await _primaries(client)) == 3
    await client.aclose()


async def _primaries(client: StoreClusterClient) -> list[object]:
    await client.initialize()
    return list(client.get_primaries())


async def test_every_key_of_an_account_is_in_the_accounts_slot(
    redis_cluster_servers: RedisClusterServers, redis_cluster_url: str
) -> None:
    clock = FakeClock()
    ledger = RedisLedger.from_url(redis_cluster_url, clock=clock)
    await ledger.create_account("acme", 1000)
    await ledger.credit("acme", 10, "topup")
    for i in range(12):
        await ledger.reserve("acme", f"s{i % 4}", 5, f"op{i}", ttl_s=1 + i % 2)
    await ledger.commit("op0")
    await ledger.refund("op1", account_id="acme")
    await ledger.release_session("s3", account_id="acme")
    clock.advance(1.5)  # the holds of ttl 1 s expire in the next call's sweep
    assert await ledger.reclaim_expired() > 0
    await ledger.sync_indexes()
    await assert_consistent(ledger)
    client = redis_client(redis_cluster_url, max_connections=4)
    keys = [k async for k in client.scan_iter(match="voxgate:ledger:{acme}:*")]
    assert len(keys) > 10
    slots = {await client.cluster_keyslot(k) for k in keys}
    assert slots == {await client.cluster_keyslot("{acme}")}
    owner = slot_owner(redis_cluster_servers, slots.pop())
    with node_of(redis_cluster_servers, owner) as node:
        assert all(node.exists(k) for k in keys)  # served by one master, not split
    await client.aclose()
    await ledger.aclose()


async def test_accounts_on_every_master_are_listed_and_reclaimed(redis_cluster_url: str) -> None:
    clock = FakeClock()
    ledger = RedisLedger.from_url(redis_cluster_url, clock=clock)
    client = redis_client(redis_cluster_url, max_connections=4)
    accounts = [f"acct{i}" for i in range(12)]
    owners = {await client.cluster_keyslot(f"{{{a}}}") // 5462 for a in accounts}
    assert len(owners) == 3  # the accounts are spread over the three masters
    for account in accounts:
        await ledger.create_account(account, 10)
        await ledger.reserve(account, f"{account}-s", 10, f"{account}-op", ttl_s=1)
    assert await ledger.accounts() == sorted(accounts)
    clock.advance(1)
    assert await ledger.reclaim_expired() == len(accounts)
    await assert_consistent(ledger)
    await client.aclose()
    await ledger.aclose()


@pytest.mark.engine_only
async def test_a_turn_on_the_cluster_is_metered_exactly(
    target: Target,
    http: aiohttp.ClientSession,
    redis_cluster_url: str,
) -> None:
    async with running_gateway(
        target, redis_url=redis_cluster_url, api_keys=(f"{KEY}:100000",)
    ) as gateway:
        ws, received = await speak(http, gateway)
        await receive_until(ws, "context.done", received, timeout=60)
        charged = assert_turn_accounted(received)
        assert charged > 100
        assert not received.of("chunk.failed")
        await ws.close()
        account = await account_of(gateway.services, KEY)
        await assert_ledger_exact(gateway.services, {account: charged})


def migrate_slot(cluster: RedisClusterServers, slot: int, pause_s: float) -> int:
    """Move ``slot`` to another master key by key, as ``redis-cli --cluster reshard`` does,
    pausing between keys so that the ledger works on a slot half moved; the new owner."""
    source = slot_owner(cluster, slot)
    target = next(n.port for n in cluster.nodes if n.port != source)
    clients = {n.port: node_of(cluster, n.port) for n in cluster.nodes}
    ids = {port: c.execute_command("CLUSTER", "MYID") for port, c in clients.items()}
    try:
        clients[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        clients[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        while keys := clients[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1):
            clients[source].execute_command(
                "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys
            )
            time.sleep(pause_s)
        for client in clients.values():
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    finally:
        for client in clients.values():
            client.close()
    return target


async def test_a_slot_migrated_under_load_keeps_the_ledger_exact(
    redis_cluster_servers: RedisClusterServers, redis_cluster_url: str
) -> None:
    """While the account's slot moves, its scripts are refused (TRYAGAIN: their keys are on two
    masters) as ``StoreUnavailable``, never run on half the keys; retried, they all land."""
    ledger = RedisLedger.from_url(redis_cluster_url)
    await ledger.create_account("acme", 100_000)
    for i in range(40):  # enough keys that the migration takes a while
        await ledger.reserve("acme", f"s{i % 5}", 1, f"warm{i}")
        await ledger.commit(f"warm{i}")
    refused = 0
    committed = 40

    async def retried(call: object) -> object:
        nonlocal refused
        for _ in range(200):
            try:
                return await call()  # type: ignore[operator]
            except StoreUnavailable:
                refused += 1
                await asyncio.sleep(0.02)
        raise AssertionError("the slot never became available again")

    async def turns() -> None:
        nonlocal committed
        for i in range(60):
            op = f"op{i}"
            await retried(lambda op=op, i=i: ledger.reserve("acme", f"s{i % 5}", 3, op))
            outcome = await retried(lambda op=op: ledger.commit(op, 2))
            committed += 2 * bool(outcome.applied)  # type: ignore[attr-defined]
            await asyncio.sleep(0.005)

    client = redis_client(redis_cluster_url, max_connections=4)
    slot = await client.cluster_keyslot("{acme}")
    await client.aclose()
    work = asyncio.create_task(turns())
    new_owner = await asyncio.to_thread(migrate_slot, redis_cluster_servers, slot, 0.01)
    await work
    assert slot_owner(redis_cluster_servers, slot) == new_owner
    balance = await ledger.balance("acme")
    assert (balance.committed, balance.held, balance.commits) == (committed, 0, 100)
    await assert_consistent(ledger)
    await ledger.aclose()
