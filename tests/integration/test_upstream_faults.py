"""The client's typed errors, against an upstream that misbehaves on request; and what a
realtime client of the gateway observes when that upstream stalls mid-stream."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.fakes.faulty_upstream import ATTEMPTS, create_faulty_app
from tests.gateway_harness import Gateway, Received, receive_until
from voxgate.config import Settings
from voxgate.errors import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStreamError,
    UpstreamTimeout,
)
from voxgate.gateway.app import create_gateway_app
from voxgate.gateway.services import Services
from voxgate.sessions.ledger import audit
from voxgate.upstream import SpeechRequest, Upstream, UpstreamConfig

VOICE = "82c99ee6-f932-423f-a4a3-d403c8914b8d"
IDLE_S = 0.5
DELTA_BYTES = 960  # one delta of the faulty upstream: 20 ms of 24 kHz s16le
KEY = "vg_test_key_0123456789abcdef"

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def faulty_server(aiohttp_server: ServerFactory) -> TestServer:
    return await aiohttp_server(create_faulty_app())


def faulty_config(
    server: TestServer, *, first_byte_timeout: float = 15.0, total_timeout: float = 120.0
) -> UpstreamConfig:
    return UpstreamConfig(
        base_url=str(server.make_url("/api/tts")),
        api_key="k" * 12,
        first_byte_timeout=first_byte_timeout,
        idle_timeout=IDLE_S,
        total_timeout=total_timeout,
    )


@pytest.fixture
async def faulty(faulty_server: TestServer) -> AsyncIterator[Upstream]:
    config = faulty_config(faulty_server, first_byte_timeout=1.0, total_timeout=2.0)
    async with Upstream(config) as client:
        yield client


@pytest.fixture
def attempts(faulty_server: TestServer) -> Counter[str]:
    return faulty_server.app[ATTEMPTS]


@pytest.fixture
async def gateway(
    faulty_server: TestServer, aiohttp_server: ServerFactory
) -> AsyncIterator[Gateway]:
    """The gateway in front of the faulty upstream, its idle timeout short enough to wait for."""
    settings = Settings(upstream=faulty_config(faulty_server), api_keys=(f"{KEY}:1000",))
    services = await Services.start(settings)
    server = await aiohttp_server(create_gateway_app(services))
    try:
        yield Gateway(str(server.make_url("")).rstrip("/"), services, KEY)
        assert await audit(services.ledger) == []
    finally:
        await server.close()
        await services.aclose()


async def open_socket(
    http: aiohttp.ClientSession, gateway: Gateway
) -> tuple[aiohttp.ClientWebSocketResponse, Received]:
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    ws = await http.ws_connect(gateway.ws_url, headers=headers)
    return ws, await receive_until(ws, "session.created", Received())


async def balance(gateway: Gateway) -> tuple[int, int]:
    """(committed, held) credits of the test key's account."""
    account = (await gateway.services.keys.authenticate(gateway.api_key)).account_id
    # Settlements are written after the event that made them.
    assert await gateway.services.settlements.flushed(timeout_s=5)
    result = await gateway.services.ledger.balance(account)
    return result.committed, result.held


def speech(fault: str) -> SpeechRequest:
    return SpeechRequest(input=fault, voice_id=VOICE)


async def collect(client: Upstream, fault: str) -> bytes:
    return b"".join([chunk.data async for chunk in client.stream(speech(fault))])


async def test_a_good_stream_yields_pcm(faulty: Upstream) -> None:
    assert len(await collect(faulty, "ok")) == 2 * 960


async def test_odd_byte_counts_become_whole_samples(faulty: Upstream) -> None:
    pcm = await collect(faulty, "odd-bytes")
    assert len(pcm) % 2 == 0
    assert pcm.startswith(b"\1\2\3\0")


async def test_stream_without_done_is_a_retryable_failure(faulty: Upstream) -> None:
    with pytest.raises(UpstreamStreamError, match=r"without speech\.audio\.done") as caught:
        await collect(faulty, "truncated")
    assert caught.value.retryable


@pytest.mark.parametrize("fault", ["malformed-json", "bad-base64"])
async def test_malformed_event_is_not_retryable(faulty: Upstream, fault: str) -> None:
    with pytest.raises(UpstreamStreamError) as caught:
        await collect(faulty, fault)
    assert not caught.value.retryable


async def test_error_event_mid_stream(faulty: Upstream) -> None:
    with pytest.raises(UpstreamError, match="gpu on fire") as caught:
        await collect(faulty, "error-event")
    assert caught.value.upstream_code == 500


@pytest.mark.parametrize(
    ("fault", "status", "retryable", "retry_after"),
    [
        ("busy", 503, True, 7.0),
        ("rate-limited", 429, True, 0.0),
        ("bad-request", 400, False, None),
        ("html", 502, True, None),
    ],
)
async def test_http_errors_are_typed(
    faulty: Upstream, fault: str, status: int, retryable: bool, retry_after: float | None
) -> None:
    for call in (lambda: faulty.generate(speech(fault)), lambda: collect(faulty, fault)):
        with pytest.raises(UpstreamError) as caught:
            await call()
        assert caught.value.status == status
        assert caught.value.retryable is retryable
        assert caught.value.retry_after == retry_after


async def test_envelope_with_nonzero_code_is_an_error(faulty: Upstream) -> None:
    with pytest.raises(UpstreamError, match="quota") as caught:
        await faulty.generate(speech("envelope-error"))
    assert caught.value.upstream_code == 1234
    assert caught.value.status == 200


async def test_response_without_envelope_is_an_error(faulty: Upstream) -> None:
    with pytest.raises(UpstreamError, match="envelope"):
        await faulty.generate(speech("no-envelope"))


async def test_redirects_are_refused(faulty: Upstream) -> None:
    with pytest.raises(UpstreamError, match="redirect") as caught:
        await faulty.generate(speech("redirect"))
    assert caught.value.status == 302
    assert not caught.value.retryable


async def test_first_byte_deadline(faulty: Upstream) -> None:
    with pytest.raises(UpstreamTimeout, match="first-byte"):
        await collect(faulty, "slow-first-byte")


async def test_total_deadline_bounds_a_trickling_stream(faulty: Upstream) -> None:
    # 40 deltas 0.1 s apart never trip a per-read timeout, only the 2 s total deadline.
    with pytest.raises(UpstreamTimeout, match="total"):
        await collect(faulty, "trickle")


async def test_the_total_deadline_does_not_count_while_the_caller_is_not_reading(
    faulty: Upstream,
) -> None:
    # 20 deltas over 0.4 s, read by a caller whose listener falls behind for longer than
    # the 2 s total: the stream waits in flow control, and the upstream was quick.
    received = []
    async for chunk in faulty.stream(speech("brisk")):
        received.append(chunk.data)
        if len(received) == 2:
            await asyncio.sleep(2.3)
    assert len(b"".join(received)) == 20 * DELTA_BYTES


async def test_a_stream_that_stalls_fails_after_the_idle_timeout(faulty: Upstream) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="stalled after 60 ms of audio") as caught:
        await collect(faulty, "stall")
    assert caught.value.retryable
    assert IDLE_S <= time.monotonic() - started < IDLE_S + 0.3  # not the 2 s total deadline


async def test_unreachable_upstream_is_retryable() -> None:
    config = UpstreamConfig(base_url="http://127.0.0.1:9/api/tts", connect_timeout=1.0)
    async with Upstream(config) as client:
        with pytest.raises(UpstreamConnectionError) as caught:
            await client.generate(speech("ok"))
    assert caught.value.retryable
    assert caught.value.status == 0


# -- the gateway, in front of an upstream that stalls -------------------------------------


async def test_a_stall_before_any_audio_was_delivered_is_retried_in_full(
    http: aiohttp.ClientSession, gateway: Gateway, attempts: Counter[str]
) -> None:
    ws, received = await open_socket(http, gateway)
    # "stall" is fetched while "trickle" is still playing, so none of it has been delivered.
    await ws.send_json({"type": "text.append", "text": "trickle"})
    await ws.send_json({"type": "text.flush"})
    await ws.send_json({"type": "text.append", "text": "stall"})
    await ws.send_json({"type": "context.close"})
    await receive_until(ws, "context.done", received)
    assert attempts["stall"] == 2
    assert not received.of("chunk.failed")
    ended = received.of("chunk.ended")
    assert [m["text"].strip() for m in ended] == ["trickle", "stall"]
    assert ended[1]["end_ms"] - ended[1]["start_ms"] == pytest.approx(8 * 20)  # the retry's
    assert len(received.audio()) == (40 + 8) * DELTA_BYTES
    assert received.of("context.done")[0]["usage"]["characters"] == len("trickle" + "stall")
    assert await balance(gateway) == (len("trickle" + "stall"), 0)  # charged once
    await ws.close()


async def test_a_stall_after_audio_was_delivered_fails_the_chunk_and_refunds_it(
    http: aiohttp.ClientSession, gateway: Gateway, attempts: Counter[str]
) -> None:
    ws, received = await open_socket(http, gateway)
    await ws.send_json({"type": "text.append", "text": "stall"})
    await ws.send_json({"type": "context.close"})
    await receive_until(ws, "chunk.started", received)
    stalled_at = time.monotonic()  # its three deltas come at once, then nothing
    await receive_until(ws, "chunk.failed", received)
    waited = time.monotonic() - stalled_at
    await receive_until(ws, "context.done", received)
    failed = received.of("chunk.failed")[0]
    assert failed["code"] == "upstream_timeout"
    assert failed["partial"] is True
    assert "stalled after 60 ms of audio" in failed["message"]
    assert IDLE_S - 0.05 <= waited < IDLE_S + 0.5
    assert attempts["stall"] == 1  # the listener heard some of it: a retry would repeat it
    assert len(received.audio()) == 3 * DELTA_BYTES
    usage = received.of("context.done")[0]["usage"]
    assert usage["characters"] == 0
    assert usage["audio_ms"] == pytest.approx(60)
    assert await balance(gateway) == (0, 0)  # a failed chunk is refunded
    await ws.close()
