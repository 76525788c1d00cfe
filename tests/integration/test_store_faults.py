"""The store fails under a live gateway: a real redis-server killed -9, paused, or not there.

After every case the ledger is exact: the settlements caught up within 5 s of Redis being
back, nothing is held, every account obeys credited − available = committed + held, and
what was committed is what the sessions reported to their clients.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import aiohttp
import pytest
import redis

from tests.conftest import Target
from tests.gateway_harness import Gateway, Received, receive_until, running_gateway
from tests.integration.conftest import RedisServer
from tests.ledger_checks import account_of, assert_ledger_exact

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(180)]

ANSWER = (
    "Your parcel left the warehouse this morning. It is on the van now. "
    "The driver expects to reach your street after lunch. "
    "You will get a text about an hour before. "
    "If nobody is home, it goes to the shop on the corner. "
    "You can collect it there until Friday evening."
)
KEY = "vg_fault_key_0123456789abcdef"


async def speak(
    http: aiohttp.ClientSession, gateway: Gateway
) -> tuple[aiohttp.ClientWebSocketResponse, Received]:
    """A realtime turn under way: the whole answer sent, the turn closed."""
    ws = await http.ws_connect(gateway.ws_url, headers={"Authorization": f"Bearer {KEY}"})
    received = await receive_until(ws, "session.created", Received())
    fmt = {"encoding": "pcm_s16le", "sample_rate": 24000}
    await ws.send_json({"type": "session.update", "pacing": "realtime", "output_format": fmt})
    await ws.send_json({"type": "text.append", "text": ANSWER})
    await ws.send_json({"type": "context.close"})
    return ws, received


async def caught_up_within(gateway: Gateway, seconds: float) -> float:
    started = time.monotonic()
    assert await gateway.services.settlements.flushed(timeout_s=seconds)
    return time.monotonic() - started


def assert_turn_accounted(received: Received) -> int:
    """Every chunk ended or failed, and the charge is the text of the chunks that ended."""
    done = received.of("context.done")[0]
    ended = received.of("chunk.ended")
    failed = received.of("chunk.failed")
    assert len(ended) + len(failed) == len(received.of("chunk.started")) + sum(
        not f["partial"] for f in failed
    )
    assert done["usage"]["characters"] == sum(len(e["text"].strip()) for e in ended)
    for failure in failed:
        assert failure["code"] == "store_unavailable", failure
    characters: int = done["usage"]["characters"]
    return characters


async def test_redis_killed_and_restarted_mid_turn(
    target: Target, http: aiohttp.ClientSession, restartable_redis: RedisServer
) -> None:
    async with running_gateway(
        target, redis_url=restartable_redis.url, api_keys=(f"{KEY}:100000",)
    ) as gateway:
        ws, received = await speak(http, gateway)
        await receive_until(ws, "chunk.ended", received, timeout=30)
        restartable_redis.kill()
        await asyncio.sleep(1.5)
        restartable_redis.start()
        caught_up_s = await caught_up_within(gateway, 5.0)
        await receive_until(ws, "context.done", received, timeout=60)
        charged = assert_turn_accounted(received)
        assert charged > 0
        # The outage was met: a chunk failed to reserve, or a settlement had to wait.
        stats = gateway.services.settlements.stats()
        assert received.of("chunk.failed") or stats.retries > 0, stats
        await ws.send_json({"type": "usage.get"})
        usage = (await receive_until(ws, "usage", received)).of("usage")[0]
        assert usage["session_characters"] == charged
        await ws.close()
        account = await account_of(gateway.services, KEY)
        await assert_ledger_exact(gateway.services, {account: charged})
        assert caught_up_s < 5.0


async def test_redis_paused_mid_turn(
    target: Target, http: aiohttp.ClientSession, restartable_redis: RedisServer
) -> None:
    async with running_gateway(
        target, redis_url=restartable_redis.url, api_keys=(f"{KEY}:100000",)
    ) as gateway:
        ws, received = await speak(http, gateway)
        await receive_until(ws, "chunk.ended", received, timeout=30)
        admin = redis.Redis.from_url(restartable_redis.url)
        admin.execute_command("CLIENT", "PAUSE", 3000, "ALL")
        admin.close()
        # While paused, the session's own figures answer at once; the balance cannot.
        await ws.send_json({"type": "usage.get"})
        asked = time.monotonic()
        during = (await receive_until(ws, "usage", received, timeout=5)).of("usage")[0]
        assert time.monotonic() - asked < 2.0
        assert during["balance_available"] is None
        await receive_until(ws, "context.done", received, timeout=60)
        charged = assert_turn_accounted(received)
        stats = gateway.services.settlements.stats()
        assert received.of("chunk.failed") or stats.retries > 0, stats
        await ws.close()
        account = await account_of(gateway.services, KEY)
        await assert_ledger_exact(gateway.services, {account: charged})


async def test_store_down_at_startup_answers_503_and_recovers(
    target: Target,
    http: aiohttp.ClientSession,
    stopped_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with running_gateway(
        target, redis_url=stopped_redis.url, api_keys=(f"{KEY}:100000",)
    ) as gateway:
        auth = {"Authorization": f"Bearer {KEY}"}
        assert (await http.get(f"{gateway.url}/healthz")).status == 200
        assert (await http.get(f"{gateway.url}/readyz")).status == 503
        refused = [
            await http.get(gateway.ws_url.replace("ws", "http", 1), headers=auth),
            await http.post(f"{gateway.url}/v1/client_tokens", headers=auth, json={}),
            await http.get(f"{gateway.url}/api/tts/voices/mine", headers=auth),
            await http.post(
                f"{gateway.url}/v1/sessions/nope/whep",
                headers={**auth, "Content-Type": "application/sdp"},
                data="v=0\r\n",
            ),
        ]
        for response in refused:
            assert response.status == 503, await response.text()
            assert response.headers["Retry-After"] == "1"
            body = await response.json()
            assert (body["code"], body["error"]) == (503, "store_unavailable")
        with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
            await http.ws_connect(gateway.ws_url, headers=auth)
        assert handshake.value.status == 503
        scraped = await (await http.get(f"{gateway.url}/metrics")).text()
        counted = re.search(
            r'^voxgate_store_unavailable_total\{where="http"\} (\S+)$', scraped, re.M
        )
        assert counted is not None
        assert float(counted.group(1)) >= 5
        # An expected outage is a warning, never a traceback.
        assert not [r for r in caplog.records if r.exc_info], [
            r.getMessage() for r in caplog.records
        ]

        stopped_redis.start()
        async with asyncio.timeout(10):
            while (await http.get(f"{gateway.url}/readyz")).status != 200:
                await asyncio.sleep(0.2)
        async with asyncio.timeout(10):  # the keys are configured once the store is up
            while True:
                try:
                    ws, received = await speak(http, gateway)
                    break
                except aiohttp.WSServerHandshakeError:
                    await asyncio.sleep(0.2)
        await receive_until(ws, "context.done", received, timeout=60)
        charged = assert_turn_accounted(received)
        assert not received.of("chunk.failed")
        assert "".join(e["text"] for e in received.of("chunk.ended")) == ANSWER
        await ws.close()
        account = await account_of(gateway.services, KEY)
        await assert_ledger_exact(gateway.services, {account: charged})


async def test_a_reserve_that_cannot_reach_the_store_fails_its_chunk_fast(
    target: Target, http: aiohttp.ClientSession, restartable_redis: RedisServer
) -> None:
    async with running_gateway(
        target, redis_url=restartable_redis.url, api_keys=(f"{KEY}:100000",)
    ) as gateway:
        ws, received = await speak(http, gateway)
        await receive_until(ws, "chunk.ended", received, timeout=30)
        restartable_redis.kill()
        # The store stays away: every chunk not yet reserved fails as retryable, none hangs.
        await ws.send_json({"type": "text.append", "text": "One more thing.", "context_id": "t2"})
        await ws.send_json({"type": "context.close", "context_id": "t2"})
        sent = time.monotonic()
        failed = await receive_until(ws, "context.done", received, count=2, timeout=60)
        t2 = [f for f in failed.of("chunk.failed") if f["context_id"] == "t2"]
        assert [f["code"] for f in t2] == ["store_unavailable"]
        assert time.monotonic() - sent < 60
        await ws.send_json({"type": "usage.get"})
        usage = (await receive_until(ws, "usage", received)).of("usage")[0]
        assert usage["session_pending"] > 0  # settled here, not yet in the store
        assert usage["balance_available"] is None
        charged = sum(d["usage"]["characters"] for d in received.of("context.done"))
        await ws.close()
        restartable_redis.start()
        account = await account_of(gateway.services, KEY)
        await assert_ledger_exact(gateway.services, {account: charged})
