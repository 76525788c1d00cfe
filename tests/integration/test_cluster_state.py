"""What the nodes share in Redis: leases, session owners, key slots, lost sessions, tickets.

Each test runs on one redis-server and on a three-master Redis Cluster, with two nodes' views
of the store (two clients), as two gateway processes would have.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from voxgate.errors import LimitExceeded
from voxgate.gateway.access.principal import Principal
from voxgate.gateway.access.session_slots import (
    MemorySessionSlots,
    RedisSessionSlots,
    SessionSlots,
)
from voxgate.gateway.cluster.reaper import reap_node
from voxgate.gateway.cluster.state import RedisClusterState, SessionOwner
from voxgate.sessions.ledger import audit
from voxgate.sessions.ledger_redis import RedisLedger
from voxgate.store import StoreClient, redis_client


@pytest.fixture
async def clients(shared_redis_url: str) -> AsyncIterator[tuple[StoreClient, StoreClient]]:
    a = redis_client(shared_redis_url, max_connections=4)
    b = redis_client(shared_redis_url, max_connections=4)
    yield a, b
    await a.aclose()
    await b.aclose()


def owner(session_id: str, node_id: str, key_id: str = "k1") -> SessionOwner:
    return SessionOwner(session_id=session_id, node_id=node_id, account_id="acme", key_id=key_id)


async def test_a_node_whose_lease_lapses_is_claimed_once_and_learns_it_was_reaped(
    clients: tuple[StoreClient, StoreClient],
) -> None:
    a, b = RedisClusterState(clients[0]), RedisClusterState(clients[1])
    await a.join("node-a", "http://10.0.0.1:8080", lease_s=0.5)
    await b.join("node-b", "http://10.0.0.2:8080", lease_s=30)
    assert await b.node_url("node-a") == "http://10.0.0.1:8080"
    assert await b.lapsed() == []
    assert not await b.claim("node-a", "node-b", 30), "a live node cannot be claimed"

    await asyncio.sleep(0.7)
    assert await b.lapsed() == ["node-a"]
    claims = await asyncio.gather(b.claim("node-a", "node-b", 30), a.claim("node-a", "x", 30))
    assert sorted(claims) == [False, True], "one claimant only"
    assert await b.lapsed() == [], "a claimed node is not offered again while being reaped"
    # The node comes back (it was only paused): its renewal says it was taken for dead.
    assert not await a.renew("node-a", 0.5)
    await b.forget("node-a")
    assert await b.node_url("node-a") is None
    assert not await a.renew("node-a", 0.5)
    await a.join("node-a", "http://10.0.0.1:8080", lease_s=5)  # and joins again
    assert await a.renew("node-a", 5)


async def test_a_reaper_that_dies_mid_way_is_followed_by_another(
    clients: tuple[StoreClient, StoreClient],
) -> None:
    a = RedisClusterState(clients[0])
    await a.join("node-a", "http://a", lease_s=0.2)
    await asyncio.sleep(0.3)
    assert await a.claim("node-a", "reaper-1", hold_s=0.3)
    await asyncio.sleep(0.4)  # reaper-1 never finished
    assert await a.lapsed() == ["node-a"]
    assert await a.claim("node-a", "reaper-2", hold_s=30)


async def test_session_owners_are_recorded_refreshed_and_removed(
    clients: tuple[StoreClient, StoreClient],
) -> None:
    a, b = RedisClusterState(clients[0]), RedisClusterState(clients[1])
    assert await a.own(owner("s1", "node-a"), ttl_s=30) is None
    assert await a.own(owner("s2", "node-a"), ttl_s=0.3) is None
    assert await b.own(owner("s1", "node-b"), ttl_s=30) == "node-a", "never taken over"
    assert await a.own(owner("s1", "node-a"), ttl_s=30) is None, "its own again: refreshed"
    assert await b.owner("s1") == owner("s1", "node-a")
    assert await b.sessions_of("node-a") == ["s1", "s2"]
    await a.refresh([owner("s2", "node-a")], ttl_s=30)
    await asyncio.sleep(0.4)
    assert await b.owner("s2") is not None, "a refreshed record outlives its first TTL"
    await a.disown("s1", "node-a")
    assert await b.owner("s1") is None
    assert await b.sessions_of("node-a") == ["s2"]


async def test_key_slots_hold_across_nodes_and_lapse_when_not_refreshed(
    clients: tuple[StoreClient, StoreClient],
) -> None:
    a = RedisSessionSlots(clients[0], ttl_s=0.5)
    b = RedisSessionSlots(clients[1], ttl_s=0.5)
    assert await a.acquire("k1", "s1", 2) == 1
    assert await b.acquire("k1", "s2", 2) == 2
    assert await b.acquire("k1", "s2", 2) == 2, "taking one's own slot again is no new slot"
    with pytest.raises(LimitExceeded) as refused:
        await a.acquire("k1", "s3", 2)
    assert refused.value.code == "too_many_sessions"
    assert await a.acquire("k2", "s3", 2) == 1, "another key has slots of its own"
    await b.release("k1", "s2")
    assert await a.acquire("k1", "s3", 2) == 2
    # s1's node keeps it alive, s3's node died: only s3's slot lapses.
    for _ in range(3):
        await asyncio.sleep(0.25)
        await a.refresh("k1", ["s1"])
    assert await b.acquire("k1", "s4", 2) == 2


async def test_reaping_refunds_the_dead_nodes_holds_frees_its_slots_and_marks_it_lost(
    clients: tuple[StoreClient, StoreClient],
) -> None:
    store = RedisClusterState(clients[1])
    slots = RedisSessionSlots(clients[1], ttl_s=60)
    ledger = RedisLedger(clients[1])
    await ledger.create_account("acme", 1000)
    for session_id in ("s1", "s2"):
        await slots.acquire("k1", session_id, 10)
        await store.own(owner(session_id, "node-dead"), ttl_s=60)
    await ledger.reserve("acme", "s1", 120, "op-1")
    await ledger.reserve("acme", "s1", 80, "op-2")
    await ledger.reserve("acme", "s2", 50, "op-3")
    await ledger.commit("op-2")  # delivered and settled before the node died
    await store.own(owner("s3", "node-alive"), ttl_s=60)
    await ledger.reserve("acme", "s3", 30, "op-4")

    assert await reap_node("node-dead", store, slots, ledger) == (2, 170)
    balance = await ledger.balance("acme")
    assert (balance.held, balance.available) == (30, 1000 - 80 - 30)
    assert await store.is_lost("s1")
    assert await store.is_lost("s2")
    assert not await store.is_lost("s3")
    assert await store.owner("s1") is None
    assert await store.owner("s3") is not None
    assert await store.sessions_of("node-dead") == []
    assert await slots.acquire("k1", "s9", 1) == 1, "the dead node's slots are free"
    assert await reap_node("node-dead", store, slots, ledger) == (0, 0), "idempotent"
    assert await audit(ledger) == []


async def test_a_ticket_carries_its_principal_once(
    clients: tuple[StoreClient, StoreClient],
) -> None:
    a, b = RedisClusterState(clients[0]), RedisClusterState(clients[1])
    principal = Principal("acme", "k1", 4, voice_id="v", max_credits=50, via_token=True)
    await a.issue_ticket("t1", principal)
    await a.issue_ticket("t2", None)
    assert await b.redeem_ticket("t1") == (True, principal)
    assert await b.redeem_ticket("t1") == (False, None), "spent"
    assert await b.redeem_ticket("t2") == (True, None)
    assert await b.redeem_ticket("never-issued") == (False, None)


@pytest.mark.parametrize("slots", ["redis", "memory"])
async def test_a_key_has_waiting_sessions_until_their_wait_ends_or_lapses(
    clients: tuple[StoreClient, StoreClient], slots: str
) -> None:
    if slots == "redis":
        a: SessionSlots = RedisSessionSlots(clients[0], ttl_s=30)
        b: SessionSlots = RedisSessionSlots(clients[1], ttl_s=30)
    else:
        a = b = MemorySessionSlots()
    assert not await b.has_waiting("k1")
    await a.wait("k1", "s1", for_s=0.4)
    await a.wait("k1", "s2", for_s=30)
    assert await b.has_waiting("k1"), "seen from another node"
    assert not await b.has_waiting("k2"), "another key's"
    await b.done_waiting("k1", "s2")
    assert await b.has_waiting("k1"), "s1 still waits"
    await asyncio.sleep(0.6)
    assert not await b.has_waiting("k1"), "s1's wait lapsed: its grace ended"
