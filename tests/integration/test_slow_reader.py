"""A client that stops reading: its audio stops, it is charged what its socket took, 1013.

The client is a plain TCP socket with a 4 KB receive buffer that the test simply stops
reading, as a stuck process would, with fast pacing: the gateway writes until the socket's
buffers are full, and the write that then stays blocked for ``max_queued_audio_ms`` is the
stall. The gateway keeps its credits and the ledger in a real redis-server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.conftest import Target
from tests.gateway_harness import Gateway, running_gateway
from tests.ledger_checks import account_of, assert_ledger_exact
from tests.raw_websocket import Frames, RawWebSocket
from voxgate.gateway.protocol import unpack_audio_frame

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(120)]

ANSWER = " ".join(
    [
        "Thanks for waiting, I have your booking in front of me now.",
        "The flight leaves at nine in the morning from gate twelve.",
        "You can check in online from tomorrow, and your seat is by the window.",
        "Your bag allowance is one case of up to twenty three kilos.",
        "If you want to change the date, the fee is waived this week.",
    ]
    * 8
)  # ~2,500 characters, nearly three minutes of speech: more than the socket buffers hold


@pytest.fixture
async def gateway(target: Target, redis_url: str) -> AsyncIterator[Gateway]:
    async with running_gateway(target, redis_url=redis_url, max_queued_audio_ms=1000) as gw:
        yield gw


async def start_turn(gateway: Gateway, pacing: str) -> RawWebSocket:
    host, port = gateway.url.removeprefix("http://").split(":")
    client = RawWebSocket(host, int(port))
    status = await asyncio.to_thread(
        client.handshake, "/v1/realtime", {"Authorization": f"Bearer {gateway.api_key}"}
    )
    assert " 101 " in status, status
    fmt = {"encoding": "pcm_s16le", "sample_rate": 24000}
    client.send_json({"type": "session.update", "pacing": pacing, "output_format": fmt})
    client.send_json({"type": "text.append", "text": ANSWER})
    client.send_json({"type": "context.close"})
    return client


async def test_a_reader_that_stops_and_reads_again_sees_what_it_was_charged_then_1013(
    gateway: Gateway,
) -> None:
    client = await start_turn(gateway, "fast")
    await asyncio.sleep(6)  # reads nothing
    stopped_reading_for = time.monotonic()
    frames = await asyncio.to_thread(client.read_until_close, Frames(), 15)
    client.close()
    assert time.monotonic() - stopped_reading_for < 15
    assert (frames.close_code, frames.close_reason) == (1013, "slow_reader")
    # Audio, then what the turn came to, then the error: nothing after the close.
    assert frames.order[-2:] == ["interrupted", "error"]
    error = frames.texts[-1]
    assert (error["code"], error["fatal"]) == ("slow_reader", True)
    interrupted = frames.texts[-2]
    audio_ms = sum(len(unpack_audio_frame(b)[4]) for b in frames.binaries) / 48
    assert audio_ms > 200  # it had started playing before the client stopped
    # What the socket took is what the client read, and that is what counts as heard.
    assert abs(interrupted["played_ms"] - audio_ms) < 1
    heard, charged = interrupted["heard"], interrupted["usage"]["characters"]
    assert ANSWER.startswith(heard)
    assert heard + interrupted["unheard"] == ANSWER
    assert 0 < charged <= len(heard.strip())
    assert interrupted["unheard"].strip()  # the turn stopped short
    await wait_until_no_session(gateway)
    account = await account_of(gateway.services, gateway.api_key)
    await assert_ledger_exact(gateway.services, {account: charged})


async def test_a_reader_that_never_comes_back_is_dropped_after_the_grace(
    gateway: Gateway,
) -> None:
    client = await start_turn(gateway, "fast")
    # The stall limit (1 s), then the grace (5 s) for the close to get through.
    await wait_until_no_session(gateway, timeout=15)
    client.close()
    account = await account_of(gateway.services, gateway.api_key)
    balance = await gateway.services.ledger.balance(account)
    await assert_ledger_exact(gateway.services, {account: balance.committed})
    assert 0 < balance.committed < len(ANSWER)


async def test_a_barge_in_while_a_write_waits_on_the_socket_counts_that_write_as_heard(
    gateway: Gateway,
) -> None:
    """The frame the gateway is writing when the client barges in reaches it before
    ``interrupted``: it is part of ``played_ms``, and of what is charged."""
    client = await start_turn(gateway, "fast")
    async with asyncio.timeout(10):  # reads nothing until the gateway's writes wait
        while not gateway.services.connections:
            await asyncio.sleep(0.01)
        (conn,) = gateway.services.connections
        while conn.transport is None or conn.transport.get_write_buffer_size() == 0:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # well inside the 1 s stall limit
    assert conn.transport.get_write_buffer_size() > 0  # a write is waiting on the client
    client.send_json({"type": "interrupt"})
    client.grow_buffer()
    frames = await asyncio.to_thread(client.read_until, "interrupted", Frames(), 10)
    assert frames.order[-1] == "interrupted"
    assert "error" not in frames.order
    interrupted = frames.texts[-1]
    audio_ms = sum(len(unpack_audio_frame(b)[4]) for b in frames.binaries) / 48
    assert audio_ms > 200
    # Everything the client got before ``interrupted`` counts as delivered, to the sample.
    assert abs(interrupted["played_ms"] - audio_ms) < 1
    heard, charged = interrupted["heard"], interrupted["usage"]["characters"]
    assert interrupted["usage"]["audio_ms"] == pytest.approx(audio_ms, abs=1)
    assert heard + interrupted["unheard"] == ANSWER
    assert 0 < charged <= len(heard.strip())
    client.send_close()
    frames = await asyncio.to_thread(client.read_until_close, frames, 10)
    client.close()
    assert frames.close_code == 1000
    assert frames.order[-1] == "interrupted"  # nothing of the turn after it
    await wait_until_no_session(gateway)
    account = await account_of(gateway.services, gateway.api_key)
    await assert_ledger_exact(gateway.services, {account: charged})


async def wait_until_no_session(gateway: Gateway, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while gateway.services.live_sessions or gateway.services.connections:
            await asyncio.sleep(0.05)
