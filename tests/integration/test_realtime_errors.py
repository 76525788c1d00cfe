"""Bad input on the realtime socket: each answered with its documented code, nothing lost,
the server still up, and the ledger's books balanced afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import Target
from tests.gateway_harness import Gateway, Received, receive_until, running_gateway
from voxgate.sessions.ledger import audit

pytestmark = pytest.mark.engine_only


@pytest.fixture(params=["memory", "redis"])
async def gateway(request: pytest.FixtureRequest, target: Target) -> AsyncIterator[Gateway]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    async with running_gateway(
        target,
        redis_url=redis_url,
        max_contexts=2,
        max_message_bytes=65536,
        max_queued_audio_ms=500,
    ) as gw:
        yield gw
        # Every test leaves the books balanced and nothing held.
        assert await gw.services.settlements.flushed(timeout_s=5)
        assert await audit(gw.services.ledger) == []
        for account in await gw.services.ledger.accounts():
            assert (await gw.services.ledger.balance(account)).held == 0


async def open_socket(
    http: aiohttp.ClientSession, gateway: Gateway, **kwargs: object
) -> tuple[aiohttp.ClientWebSocketResponse, Received]:
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    ws = await http.ws_connect(gateway.ws_url, headers=headers, **kwargs)  # type: ignore[arg-type]
    return ws, await receive_until(ws, "session.created", Received())


async def error_for(
    ws: aiohttp.ClientWebSocketResponse, received: Received, payload: str | dict[str, object]
) -> dict[str, object]:
    count = len(received.of("error"))
    if isinstance(payload, str):
        await ws.send_str(payload)
    else:
        await ws.send_json(payload)
    await receive_until(ws, "error", received, count=count + 1)
    return received.of("error")[-1]


async def still_works(ws: aiohttp.ClientWebSocketResponse, received: Received) -> None:
    await ws.send_json({"type": "ping", "event_id": "alive"})
    await receive_until(ws, "pong", received)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("{not json", "invalid_json"),
        ({"type": "make.coffee"}, "unknown_type"),
        ({"text": "no type"}, "unknown_type"),
        ({"type": "text.append"}, "invalid_message"),
        ({"type": "text.append", "text": "x", "extra": 1}, "invalid_message"),
        ({"type": "text.append", "text": "x", "context_id": "bad id!"}, "invalid_message"),
        ({"type": "session.update", "speed": 9}, "invalid_message"),
        ({"type": "session.update", "segmenter": {"runway_ms": -1}}, "invalid_message"),
        ({"type": "session.update", "ref_audio": "%%% not base64 %%%"}, "invalid_base64"),
        (
            {
                "type": "session.update",
                "output_format": {"encoding": "mulaw", "sample_rate": 48000},
            },
            "invalid_output_format",
        ),
        ({"type": "text.flush", "context_id": "never"}, "unknown_context"),
        ({"type": "auth", "token": "vgct_whatever"}, "already_authenticated"),
    ],
)
async def test_bad_messages_get_typed_errors_and_the_socket_lives_on(
    http: aiohttp.ClientSession, gateway: Gateway, payload: str | dict[str, object], code: str
) -> None:
    ws, received = await open_socket(http, gateway)
    error = await error_for(ws, received, payload)
    assert error["code"] == code
    assert error["fatal"] is False
    assert error["message"]
    await still_works(ws, received)
    await ws.close()


async def test_error_echoes_the_event_id(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    ws, received = await open_socket(http, gateway)
    error = await error_for(
        ws, received, {"type": "text.flush", "context_id": "x", "event_id": "e-42"}
    )
    assert error["event_id"] == "e-42"
    await ws.close()


async def test_a_seq_past_the_documented_range_is_refused(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws, received = await open_socket(http, gateway)
    for seq in (2**70, 2**53, -1):
        error = await error_for(ws, received, {"type": "text.append", "text": "x", "seq": seq})
        assert (error["code"], error["fatal"]) == ("invalid_message", False)
    assert received.of("text.ack") == []  # none of that text was taken
    largest = 2**53 - 1  # docs/protocol.md: 0 to 2⁵³ − 1
    await ws.send_json({"type": "text.append", "text": "Still here.", "seq": largest})
    await receive_until(ws, "text.ack", received)
    assert received.of("text.ack")[0]["seq"] == largest
    await ws.send_json({"type": "context.close"})
    await receive_until(ws, "context.done", received)
    assert received.of("context.done")[0]["usage"]["characters"] == len("Still here.")
    await ws.close()


async def test_interrupting_when_nothing_plays_is_an_error(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws, received = await open_socket(http, gateway)
    error = await error_for(ws, received, {"type": "interrupt", "event_id": "i0"})
    assert error["code"] == "unknown_context"  # no text yet: no session to interrupt
    await ws.send_json({"type": "text.append", "text": "Short."})
    await ws.send_json({"type": "context.close"})
    await receive_until(ws, "context.done", received)
    error = await error_for(ws, received, {"type": "interrupt", "event_id": "i1"})
    assert (error["code"], error["fatal"], error["event_id"]) == (
        "nothing_to_interrupt",
        False,
        "i1",
    )
    await still_works(ws, received)
    await ws.close()


async def test_oversize_message_closes_with_1009(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws, _received = await open_socket(http, gateway)
    await ws.send_json({"type": "text.append", "text": "x" * 70_000})
    async with asyncio.timeout(10):
        while (msg := await ws.receive()).type is not aiohttp.WSMsgType.CLOSE:
            pass
    assert msg.data == 1009
    ws2, received2 = await open_socket(http, gateway)  # the server is still up
    await still_works(ws2, received2)
    await ws2.close()


async def test_text_after_close_is_refused(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    ws, received = await open_socket(http, gateway)
    await ws.send_json({"type": "text.append", "text": "Hello there."})
    await ws.send_json({"type": "context.close"})
    error = await error_for(ws, received, {"type": "text.append", "text": "Too late."})
    assert error["code"] == "context_closed"
    await receive_until(ws, "context.done", received)
    assert "".join(m["text"] for m in received.of("chunk.ended")) == "Hello there."
    await ws.close()


async def test_too_many_contexts(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    ws, received = await open_socket(http, gateway)
    await ws.send_json({"type": "text.append", "text": "One.", "context_id": "a"})
    await ws.send_json({"type": "text.append", "text": "Two.", "context_id": "b"})
    error = await error_for(
        ws, received, {"type": "text.append", "text": "Three.", "context_id": "c"}
    )
    assert error["code"] == "too_many_contexts"
    await ws.close()


async def test_session_update_after_text_is_refused(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws, received = await open_socket(http, gateway)
    await ws.send_json({"type": "text.append", "text": "Started."})
    error = await error_for(ws, received, {"type": "session.update", "speed": 2})
    assert error["code"] == "session_already_started"
    await ws.close()


async def test_insufficient_credit(
    http: aiohttp.ClientSession, target: Target, redis_url: str
) -> None:
    async with running_gateway(target, api_keys=("vg_poor_key_0123456789:10",)) as gw:
        ws, received = await open_socket(http, gw)
        await ws.send_json({"type": "text.append", "text": "This costs more than ten credits."})
        await ws.send_json({"type": "context.close"})
        await receive_until(ws, "context.done", received)
        failed = received.of("chunk.failed")
        assert [f["code"] for f in failed] == ["insufficient_credits"]
        assert not received.frames
        assert received.of("context.done")[0]["usage"]["characters"] == 0
        await ws.close()


async def test_an_unknown_voice_fails_its_chunks_by_name(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws, received = await open_socket(http, gateway)
    unknown = "00000000-0000-0000-0000-000000000000"
    await ws.send_json({"type": "session.update", "voice_id": unknown})
    await receive_until(ws, "session.updated", received)
    await ws.send_json({"type": "text.append", "text": "Nobody speaks this."})
    await ws.send_json({"type": "context.close"})
    await receive_until(ws, "context.done", received)
    failed = received.of("chunk.failed")
    assert [f["code"] for f in failed] == ["voice_not_found"]  # the upstream's 404, named
    assert received.of("context.done")[0]["usage"]["characters"] == 0
    await still_works(ws, received)
    await ws.close()


async def test_rate_limited_text_is_refused_not_lost(
    http: aiohttp.ClientSession, target: Target
) -> None:
    async with running_gateway(target, text_chars_per_second=10, text_burst_chars=40) as gw:
        ws, received = await open_socket(http, gw)
        await ws.send_json({"type": "text.append", "text": "A" * 30, "seq": 1})
        error = await error_for(ws, received, {"type": "text.append", "text": "B" * 30, "seq": 2})
        assert error["code"] == "rate_limited"
        assert [a["seq"] for a in received.of("text.ack")] == [1]  # 2 was not accepted
        await ws.close()


async def test_wrong_key_is_refused_before_the_upgrade(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await http.ws_connect(gateway.ws_url, headers={"Authorization": "Bearer vg_nope_123456"})
    assert caught.value.status == 401


async def test_foreign_origin_is_refused(http: aiohttp.ClientSession, target: Target) -> None:
    async with running_gateway(target, allowed_origins=("https://app.example.com",)) as gw:
        headers = {"Authorization": f"Bearer {gw.api_key}", "Origin": "https://evil.example"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(gw.ws_url, headers=headers)
        assert caught.value.status == 401
        ok = await http.ws_connect(
            gw.ws_url, headers={**headers, "Origin": "https://app.example.com"}
        )
        await receive_until(ok, "session.created", Received())
        await ok.close()


async def test_client_tokens_single_use_and_expiry(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    mint = await http.post(
        f"{gateway.url}/v1/client_tokens",
        json={"max_credits": 500},
        headers={"Authorization": f"Bearer {gateway.api_key}"},
    )
    assert mint.status == 200
    token = (await mint.json())["data"]["token"]
    # In the first message:
    ws = await http.ws_connect(gateway.ws_url)
    await ws.send_json({"type": "auth", "token": token})
    await receive_until(ws, "session.created", Received())
    await ws.close()
    # Reused, as a subprotocol this time: refused before the upgrade.
    with pytest.raises(aiohttp.WSServerHandshakeError) as reused:
        await http.ws_connect(gateway.ws_url, protocols=("voxgate.v1", f"voxgate.token.{token}"))
    assert reused.value.status == 401
    # A token through the subprotocol, never the URL:
    fresh = (
        await (
            await http.post(
                f"{gateway.url}/v1/client_tokens",
                json={"ttl_s": 1},
                headers={"Authorization": f"Bearer {gateway.api_key}"},
            )
        ).json()
    )["data"]["token"]
    ws = await http.ws_connect(gateway.ws_url, protocols=("voxgate.v1", f"voxgate.token.{fresh}"))
    assert ws.protocol == "voxgate.v1"
    await receive_until(ws, "session.created", Received())
    await ws.close()
    expiring = (
        await (
            await http.post(
                f"{gateway.url}/v1/client_tokens",
                json={"ttl_s": 1},
                headers={"Authorization": f"Bearer {gateway.api_key}"},
            )
        ).json()
    )["data"]["token"]
    await asyncio.sleep(1.2)
    ws = await http.ws_connect(gateway.ws_url)
    await ws.send_json({"type": "auth", "token": expiring})
    closing = await receive_until(ws, "error", Received())
    assert closing.of("error")[0]["code"] == "token_expired"
    assert closing.of("error")[0]["fatal"] is True


async def test_authentication_deadline(http: aiohttp.ClientSession, target: Target) -> None:
    async with running_gateway(target, auth_timeout_s=0.3) as gw:
        ws = await http.ws_connect(gw.ws_url)
        received = await receive_until(ws, "error", Received())
        assert received.of("error")[0]["code"] == "auth_timeout"
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1008


async def test_too_many_sessions_per_key(http: aiohttp.ClientSession, target: Target) -> None:
    async with running_gateway(target) as gw:
        record = await gw.services.keys.authenticate(gw.api_key)
        sockets = []
        for _ in range(record.max_sessions):
            ws, _ = await open_socket(http, gw)
            sockets.append(ws)
        extra = await http.ws_connect(gw.ws_url, headers={"Authorization": f"Bearer {gw.api_key}"})
        received = await receive_until(extra, "error", Received())
        assert received.of("error")[0]["code"] == "too_many_sessions"
        for ws in sockets:
            await ws.close()


async def test_a_client_that_stops_reading_is_closed_and_refunded(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws, _received = await open_socket(http, gateway)
    text = " ".join(["A long answer that the client will never read."] * 60)
    await ws.send_json(
        {"type": "session.update", "output_format": {"encoding": "pcm_s16le", "sample_rate": 48000}}
    )
    await ws.send_json({"type": "text.append", "text": text})
    await ws.send_json({"type": "context.close"})
    # Stop reading. The gateway must give up on us within seconds, not minutes: the stall
    # limit, then the grace it leaves the close frame (SLOW_READER_GRACE_S).
    async with asyncio.timeout(25):
        while gateway.services.connections:
            await asyncio.sleep(0.1)
    account = (await gateway.services.keys.authenticate(gateway.api_key)).account_id
    assert await gateway.services.settlements.flushed(timeout_s=5)  # its last refunds
    balance = await gateway.services.ledger.balance(account)
    assert balance.held == 0
    assert balance.committed < len(text)  # the undelivered rest was refunded
    # Reading now, the client finds the 1013 close after what had been sent.
    async with asyncio.timeout(10):
        while (await ws.receive()).type not in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            pass
