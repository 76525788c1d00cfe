"""A session that ended is freed at once, by reference counting, with nothing left in cycles.

A process that plays WebRTC freezes what is alive into CPython's permanent generation (the
media collector, see ``gateway/webrtc/collector.py``): anything a session leaves in a
reference cycle is then kept, with the audio its buffers hold, until the next sweep, and
sweeps count WebRTC peers only. So an ended socket session must leave no cycle at all. The
tests run with the collector off and look, by weak references, at what is still alive.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import pytest

from tests.conftest import Target
from tests.fakes.twilio_call import TwilioCall
from tests.gateway_harness import Gateway, Received, receive_until, running_gateway
from tests.integration.test_resume import Listener as ResumeListener
from tests.integration.test_resume import drop_mid_turn, read_until, resume
from tests.integration.test_whep import Listener, offer_to_session, wait_for
from tests.telephony_agent import open_agent, stream_url

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(60)]

TURN = "Thanks for calling. Your table is booked for eight, and the terrace is heated."


@pytest.fixture
async def gateway(target: Target) -> AsyncIterator[Gateway]:
    async with running_gateway(target) as gw:
        yield gw


@contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def left_in_cycles() -> collections.Counter[str]:
    """The gateway's objects that only the collector could free, by type (and frees them)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = collections.Counter(
            type(o).__qualname__
            for o in gc.garbage
            if (type(o).__module__ or "").startswith("voxgate")
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return found


async def gone(gateway: Gateway) -> None:
    async with asyncio.timeout(10):
        while gateway.services.live_sessions or gateway.services.connections:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # the handler's own frame lets go last


def assert_all_freed(refs: list[weakref.ref[Any]]) -> None:
    """The parts are gone, and nothing of the gateway (nor of the in-process engine that
    spoke the turn) waits in a cycle."""
    alive = [type(ref()).__name__ for ref in refs if ref() is not None]
    assert not alive, (alive, left_in_cycles())
    assert not left_in_cycles()


def weak_parts(conn: Any) -> list[weakref.ref[Any]]:
    parts = [conn, conn.session, conn.outbound, conn.playback, conn.reader, conn.sender]
    return [weakref.ref(part) for part in parts]


async def open_turn(
    http: aiohttp.ClientSession, gateway: Gateway, text: str, *, close: bool
) -> tuple[aiohttp.ClientWebSocketResponse, Received, str]:
    """A socket, its session's id, and a turn of ``text`` sent on it."""
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    ws = await http.ws_connect(gateway.ws_url, headers=headers)
    received = await receive_until(ws, "session.created", Received())
    await ws.send_json({"type": "text.append", "text": text})
    if close:
        await ws.send_json({"type": "context.close"})
    return ws, received, received.of("session.created")[0]["session_id"]


async def test_a_session_that_played_a_turn_and_closed_is_freed_at_once(
    gateway: Gateway,
) -> None:
    with collector_off():
        async with aiohttp.ClientSession() as http:
            ws, received, session_id = await open_turn(http, gateway, TURN, close=True)
            await receive_until(ws, "context.done", received)
            refs = weak_parts(gateway.services.live_sessions[session_id])
            await ws.close()
        await gone(gateway)
        assert_all_freed(refs)


async def test_a_session_interrupted_mid_turn_and_dropped_is_freed_at_once(
    target: Target,
) -> None:
    """Barge-in, then the socket drops without a close frame (no resume allowed)."""
    async with running_gateway(target, resume_grace_s=0.0) as gateway:
        with collector_off():
            async with aiohttp.ClientSession() as http:
                ws, received, session_id = await open_turn(http, gateway, TURN * 4, close=False)
                await receive_until(ws, "chunk.started", received)
                await ws.send_json({"type": "interrupt"})
                await receive_until(ws, "interrupted", received)
                refs = weak_parts(gateway.services.live_sessions[session_id])
                connection = ws._response.connection
                assert connection is not None
                assert connection.transport is not None
                connection.transport.abort()
            await gone(gateway)
            assert_all_freed(refs)


async def test_a_webrtc_session_leaves_only_aiortc_s_own_cycles(gateway: Gateway) -> None:
    """A session played over WHEP, then the peer hung up and the socket closed: the
    gateway's side, its track included, is freed at once; what stays for the media
    collector's sweep is aiortc's own (its transports and their state)."""
    with collector_off():
        async with aiohttp.ClientSession() as http:
            ws, received, session_id = await open_turn(http, gateway, TURN, close=False)
            listener = Listener()
            answer = await offer_to_session(http, gateway, session_id, listener)
            assert answer.status == 201, await answer.text()
            await listener.answer(await answer.text())
            await wait_for(lambda: listener.pc.connectionState == "connected")
            await ws.send_json({"type": "context.close"})
            await receive_until(ws, "context.done", received, timeout=30)
            conn = gateway.services.live_sessions[session_id]
            refs = [*weak_parts(conn), weakref.ref(conn.webrtc)]
            del conn
            await listener.close()
            await ws.close()
        await gone(gateway)
        assert_all_freed(refs)


async def test_a_session_that_spoke_to_a_phone_call_is_freed_at_once(gateway: Gateway) -> None:
    """A Twilio call attached, a turn played to it, the caller hung up, the agent closed."""
    with collector_off():
        async with aiohttp.ClientSession() as http:
            agent, token = await open_agent(http, gateway)
            params = {"session_id": agent.session_id, "token": token}
            url = stream_url(gateway, "twilio")
            async with TwilioCall.connect(
                http, url, custom_parameters=params, send_caller_audio=False
            ):
                await agent.wait("telephony.attached")
                await agent.say(TURN)
                await agent.wait("context.done")
                conn = gateway.services.live_sessions[agent.session_id]
                leg = conn.playback.call
                assert leg is not None
                refs = [*weak_parts(conn), weakref.ref(leg)]
                del conn, leg
            await agent.wait("telephony.detached")
            await agent.close()
        await gone(gateway)
        assert_all_freed(refs)


async def test_a_session_resumed_on_a_new_socket_is_freed_at_once(gateway: Gateway) -> None:
    """The socket dropped mid-turn, a new one resumed the session, the turn ended there:
    both connections, the session's and the one that carried the new socket, are freed."""
    with collector_off():
        async with aiohttp.ClientSession() as http:
            listener = ResumeListener()
            created = await drop_mid_turn(http, gateway, listener, after_ms=300)
            conn = gateway.services.live_sessions[created["session_id"]]
            refs = weak_parts(conn)
            del conn
            ws, resumed = await resume(http, gateway, listener, created)
            assert resumed["type"] == "session.resumed"
            (carrier,) = [
                c for c in gateway.services.connections if c.session_id != created["session_id"]
            ]
            refs.append(weakref.ref(carrier))
            del carrier
            done = await read_until(ws, listener, lambda e: e and e["type"] == "context.done")
            assert done is not None
            await ws.close()
        await gone(gateway)
        assert_all_freed(refs)
