"""The session registry contract, run against both stores, on the real clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import store_url_for
from voxgate.errors import InvalidInput
from voxgate.sessions.ledger import Usage
from voxgate.sessions.ledger_memory import MemoryLedger
from voxgate.sessions.registry import (
    MemorySessionRegistry,
    RedisSessionRegistry,
    SessionRegistry,
)
from voxgate.store import redis_client


@pytest.fixture(params=["memory", "redis", "cluster"])
async def registry(request: pytest.FixtureRequest) -> AsyncIterator[SessionRegistry]:
    if request.param == "memory":
        yield MemorySessionRegistry()
        return
    registry = RedisSessionRegistry.from_url(store_url_for(request, str(request.param)))
    yield registry
    await registry.aclose()


async def usage_of(session_id: str, account_id: str = "acme") -> Usage:
    ledger = MemoryLedger()
    await ledger.create_account(account_id, 100)
    await ledger.reserve(account_id, session_id, 40, "op1")
    await ledger.reserve(account_id, session_id, 10, "op2")
    await ledger.commit("op1", 30)
    return await ledger.session_usage(session_id)


async def test_register_then_get(registry: SessionRegistry) -> None:
    before = time.time()
    record = await registry.register("s1", "acme", "worker-1@10.0.0.5:8080", ttl_s=30)
    assert (record.session_id, record.account_id) == ("s1", "acme")
    assert record.owner == "worker-1@10.0.0.5:8080"
    assert before - 0.05 <= record.created_at <= time.time() + 0.05
    assert record.expires_at == pytest.approx(record.created_at + 30)
    assert (record.ttl_s, record.usage) == (30, None)
    assert await registry.get("s1") == record
    assert await registry.get("s2") is None


async def test_a_live_session_cannot_be_registered_twice(registry: SessionRegistry) -> None:
    await registry.register("s1", "acme", "worker-1")
    with pytest.raises(InvalidInput) as caught:
        await registry.register("s1", "globex", "worker-2")
    assert caught.value.code == "session_exists"
    assert "worker-1" in caught.value.message
    assert await registry.remove("s1")
    assert (await registry.register("s1", "globex", "worker-2")).owner == "worker-2"


async def test_expired_sessions_disappear(registry: SessionRegistry) -> None:
    await registry.register("s1", "acme", "worker-1", ttl_s=0.2)
    await registry.register("s2", "acme", "worker-1", ttl_s=30)
    await asyncio.sleep(0.35)
    assert await registry.get("s1") is None
    assert [r.session_id for r in await registry.list_by_account("acme")] == ["s2"]
    assert await registry.touch("s1") is None
    assert await registry.update_usage("s1", await usage_of("s1")) is None
    assert not await registry.remove("s1")
    assert (await registry.register("s1", "acme", "worker-2")).owner == "worker-2"


async def test_touch_pushes_the_expiry(registry: SessionRegistry) -> None:
    first = await registry.register("s1", "acme", "worker-1", ttl_s=0.5)
    await asyncio.sleep(0.3)
    touched = await registry.touch("s1")
    assert touched is not None
    assert touched.expires_at >= first.expires_at + 0.25
    assert touched.created_at == first.created_at
    await asyncio.sleep(0.3)  # 0.6 s after registering: alive only thanks to the touch
    assert await registry.get("s1") is not None
    await asyncio.sleep(0.5)
    assert await registry.get("s1") is None


async def test_usage_snapshot_is_stored_without_extending(registry: SessionRegistry) -> None:
    record = await registry.register("s1", "acme", "worker-1")
    usage = await usage_of("s1")
    updated = await registry.update_usage("s1", usage)
    assert updated is not None
    assert updated.usage == usage
    assert (updated.usage.committed, updated.usage.held) == (30, 10)
    assert updated.expires_at == record.expires_at
    assert (await registry.get("s1")) == updated
    with pytest.raises(InvalidInput):
        await registry.update_usage("s1", await usage_of("s2"))  # another session's usage
    with pytest.raises(InvalidInput):
        await registry.update_usage("s1", await usage_of("s1", "globex"))


async def test_list_by_account(registry: SessionRegistry) -> None:
    for session_id, account_id in (("a", "acme"), ("b", "globex"), ("c", "acme"), ("d", "acme")):
        await registry.register(session_id, account_id, "worker-1")
    await registry.remove("c")
    listed = await registry.list_by_account("acme")
    assert [r.session_id for r in listed] == ["a", "d"]
    assert all(r.account_id == "acme" for r in listed)
    assert await registry.list_by_account("initech") == []


@pytest.mark.parametrize(
    ("session_id", "account_id", "owner", "ttl_s"),
    [("", "acme", "w", 1.0), ("s{1}", "acme", "w", 1.0), ("s1", "a b", "w", 1.0),
     ("s1", "acme", "", 1.0), ("s1", "acme", "w", 0.0), ("s1", "acme", "w", 1e9)],
)  # fmt: skip
async def test_bad_registrations_are_invalid_input(
    registry: SessionRegistry, session_id: str, account_id: str, owner: str, ttl_s: Any
) -> None:
    with pytest.raises(InvalidInput):
        await registry.register(session_id, account_id, owner, ttl_s)


async def test_redis_workers_see_each_others_sessions(shared_redis_url: str) -> None:
    worker_a = RedisSessionRegistry.from_url(shared_redis_url, prefix="vg-test:")
    worker_b = RedisSessionRegistry.from_url(shared_redis_url, prefix="vg-test:")
    record = await worker_a.register("s1", "acme", "worker-a")
    await worker_a.register("s2", "acme", "worker-a", ttl_s=0.2)
    assert await worker_b.get("s1") == record
    await asyncio.sleep(0.35)
    assert [r.session_id for r in await worker_b.list_by_account("acme")] == ["s1"]
    client = redis_client(shared_redis_url, max_connections=4)
    keys = sorted([k async for k in client.scan_iter()])
    assert keys == ["vg-test:registry:account:{acme}", "vg-test:registry:session:{s1}"]
    assert await client.zrange(keys[0], 0, -1) == ["s1"]  # the expired entry was pruned
    assert await client.pttl(keys[0]) > 0  # the index expires with its last session
    await client.aclose()
    await worker_a.aclose()
    await worker_b.aclose()
