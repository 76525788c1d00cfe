"""A Vonage Voice API WebSocket attached to a live session, against a fake that acts as Vonage
does.

The fake (``tests/fakes/vonage_call.py``) plays the 640-byte PCM messages it is sent in real
time, answers a ``notify`` only once the audio before it has played, empties its buffer on
``clear``, and sends the caller's audio every 20 ms; what it played is what the caller heard.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.fakes.vonage_call import CALLER_FRAME, FRAME_BYTES, VonageCall
from tests.gateway_harness import Gateway
from tests.ledger_checks import account_of, assert_ledger_exact
from tests.telephony_agent import LONG, SHORT, invalid_messages, open_agent
from tests.telephony_agent import stream_url as telephony_stream_url
from voxgate.gateway.protocol import ENCODING_CODES

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(120)]

"Thanks for calling. Your table for four is booked for eight tonight."
" ".join(
    [
        "I can help you with that booking right away.",
        "We have a table by the window at seven, or one on the terrace at half past eight.",
        "The terrace is heated, and dogs are welcome there.",
        "Let me know which one you would like, and I will hold it for you.",
    ]
    * 3
)


def stream_url(gateway: Gateway) -> str:
    return telephony_stream_url(gateway, "vonage")


async def test_a_call_plays_the_turn_notifies_what_was_heard_and_takes_the_keys(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, token = await open_agent(http, gateway)
    call_uuid = str(uuid.uuid4())
    headers = {"session_id": agent.session_id, "token": token, "call_uuid": call_uuid}
    async with VonageCall.connect(http, stream_url(gateway), headers=headers) as call:
        attached = await agent.wait("telephony.attached")
        assert (attached["provider"], attached["call_id"]) == ("vonage", call_uuid)
        assert attached["stream_id"]
        await agent.say(SHORT)
        done = await agent.wait("context.done")
        spoken_ms = agent.spoken_ms()
        # Paced: when the turn is done on the session's side, the phone has nearly played it.
        assert call.played_ms() >= spoken_ms - 700
        await call.wait_for(lambda: call.played_ms() >= spoken_ms - 40, timeout=5)
        await call.dtmf("5")
        digit = await agent.wait("telephony.dtmf")
        assert (digit["digit"], digit["stream_id"]) == ("5", attached["stream_id"])
        assert not call.protocol_errors  # every message 640 bytes, every command Vonage's
        assert agent.audio_frames == 0  # the audio went to the call, not the socket
        pcm = call.played_pcm().astype(np.float32) / 32768
        assert float(np.sqrt(np.mean(pcm**2))) > 0.01
        # A notify after each chunk and at least every 500 ms, each answered once it played.
        assert len(call.notifies_echoed) >= int(spoken_ms / 500)
        echoed = [payload for payload, _ in call.notifies_echoed]
        assert call.notifies_received[: len(echoed)] == echoed
        assert not agent.caller_frames  # the session did not ask for the caller's audio
    detached = await agent.wait("telephony.detached")
    assert detached["reason"] in ("closed", "dropped")  # Vonage's hang-up is the close
    charged = done["usage"]["characters"]
    assert charged == sum(len(e["text"].strip()) for e in agent.of("chunk.ended"))
    await agent.close()
    account = await account_of(gateway.services, gateway.api_key)
    await assert_ledger_exact(gateway.services, {account: charged})


async def test_the_callers_audio_reaches_the_agent_as_16_khz_pcm(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, token = await open_agent(http, gateway, caller_audio=True)
    headers = {"session_id": agent.session_id, "token": token}
    async with VonageCall.connect(http, stream_url(gateway), headers=headers) as call:
        attached = await agent.wait("telephony.attached")
        await call.wait_for(lambda: len(agent.caller_frames) >= 25, timeout=10)
        frames = agent.caller_frames[:25]
        assert {f.encoding_code for f in frames} == {ENCODING_CODES["caller_pcm_s16le"]}
        assert {f.stream_id for f in frames} == {attached["stream_id"]}
        assert {f.payload for f in frames} == {CALLER_FRAME}  # as Vonage sent it, 20 ms each
        assert [f.seq for f in frames] == list(range(25))
        assert [f.timestamp for f in frames] == [320 * n for n in range(25)]  # 16 kHz samples
    await agent.close()


async def test_interrupt_clears_the_call_at_once_and_charges_what_the_caller_heard(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, token = await open_agent(http, gateway)
    headers = {"session_id": agent.session_id, "token": token}
    async with VonageCall.connect(
        http, stream_url(gateway), headers=headers, send_caller_audio=False
    ) as call:
        await agent.wait("telephony.attached")
        await agent.say(LONG, close=False)
        await call.wait_for(lambda: call.played_ms() > 2200, timeout=30)
        sent = asyncio.get_running_loop().time()
        await agent.ws.send_json({"type": "interrupt"})
        await call.wait_for(lambda: call.clears, timeout=2)
        assert call.clears[0] - sent < 0.1
        heard_ms = call.played_ms()
        interrupted = await agent.wait("interrupted")
        # heard is what the phone played: within the lead of what the fake played.
        assert abs(interrupted["played_ms"] - heard_ms) < 150
        assert LONG.startswith(interrupted["heard"])
        assert 0 < interrupted["usage"]["characters"] <= len(interrupted["heard"].strip())
        media_at_clear = call.received_media_messages
        await asyncio.sleep(0.5)
        assert call.received_media_messages == media_at_clear  # nothing of that turn after
        assert call.played_ms() == heard_ms
        # The notifies the clear dropped do not confuse the next turn.
        await agent.say(SHORT, "t2")
        done = await agent.wait("context.done")
        spoken_ms = agent.spoken_ms("t2")
        await call.wait_for(lambda: call.played_ms() >= heard_ms + spoken_ms - 40, timeout=10)
        assert not call.protocol_errors
    await agent.close()
    account = await account_of(gateway.services, gateway.api_key)
    charged = interrupted["usage"]["characters"] + done["usage"]["characters"]
    await assert_ledger_exact(gateway.services, {account: charged})


async def test_a_hang_up_mid_turn_detaches_and_charges_what_the_caller_heard(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, token = await open_agent(http, gateway)
    headers = {"session_id": agent.session_id, "token": token}
    async with VonageCall.connect(
        http, stream_url(gateway), headers=headers, send_caller_audio=False
    ) as call:
        await agent.wait("telephony.attached")
        await agent.say(LONG, close=False)
        await call.wait_for(lambda: call.played_ms() > 1500, timeout=30)
        await call.hang_up()
        heard_ms = call.played_ms()
    detached = await agent.wait("telephony.detached")
    assert detached["reason"] in ("closed", "dropped")
    interrupted = await agent.wait("interrupted")
    assert abs(interrupted["played_ms"] - heard_ms) < 150
    assert 0 < interrupted["usage"]["characters"] <= len(interrupted["heard"].strip())
    await agent.close()
    account = await account_of(gateway.services, gateway.api_key)
    await assert_ledger_exact(gateway.services, {account: interrupted["usage"]["characters"]})


@pytest.mark.parametrize(
    "case",
    ["wrong_token", "foreign_token", "no_session", "no_headers", "wrong_rate", "audio_first"],
)
async def test_a_bad_attach_is_closed_1008_before_any_media(
    http: aiohttp.ClientSession, gateway: Gateway, case: str
) -> None:
    agent, token = await open_agent(http, gateway)
    other, other_token = await open_agent(http, gateway)
    good = {"session_id": agent.session_id, "token": token}
    headers = {
        "wrong_token": {"session_id": agent.session_id, "token": "vgt_" + "x" * 40},
        "foreign_token": {"session_id": agent.session_id, "token": other_token},
        "no_session": {"session_id": "0" * 32, "token": token},
        "no_headers": {},
        "wrong_rate": good,
        "audio_first": good,
    }[case]
    expected = {
        "wrong_token": "invalid_token",
        "foreign_token": "token_scope",
        "no_session": "not_found",
        "no_headers": "unauthorized",
        "wrong_rate": "invalid_message",
        "audio_first": "invalid_message",
    }[case]
    rate = "audio/l16;rate=8000" if case == "wrong_rate" else "audio/l16;rate=16000"
    async with VonageCall.connect(
        http, stream_url(gateway), headers=headers, content_type=rate, greet=case != "audio_first"
    ) as call:
        if case == "audio_first":
            await call.send_raw(CALLER_FRAME)
        await call.wait_for(lambda: call.close_code is not None, timeout=5)
        assert (call.close_code, call.close_reason) == (1008, expected)
        assert call.received_media_messages == 0
    assert not agent.of("telephony.attached")
    if case in ("no_session", "wrong_rate", "audio_first"):  # the token was not spent
        async with VonageCall.connect(http, stream_url(gateway), headers=good):
            await agent.wait("telephony.attached")
    await agent.close()
    await other.close()


async def test_bad_messages_mid_call_are_dropped_and_the_call_goes_on(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, token = await open_agent(http, gateway)
    headers = {"session_id": agent.session_id, "token": token}
    before = await invalid_messages(http, gateway)
    async with VonageCall.connect(http, stream_url(gateway), headers=headers) as call:
        await agent.wait("telephony.attached")
        bad: list[dict[str, Any] | str | bytes] = [
            {"event": "websocket:hangup"},
            {"event": "websocket:notify", "payload": "vg1"},
            {"event": "websocket:dtmf", "digit": "55", "duration": 260},
            {"event": "websocket:connected", "content-type": "audio/l16;rate=16000"},
            "not json",
            "[1, 2]",
            bytes(FRAME_BYTES * 11),  # 220 ms in one message
            bytes(FRAME_BYTES + 1),  # half a sample
        ]
        for message in bad:
            await call.send_raw(message)
        await agent.say(SHORT)
        await agent.wait("context.done")
        spoken_ms = agent.spoken_ms()
        await call.wait_for(lambda: call.played_ms() >= spoken_ms - 40, timeout=10)
        await call.dtmf("#")
        assert (await agent.wait("telephony.dtmf"))["digit"] == "#"
        assert call.close_code is None
        assert not agent.of("telephony.detached")
    assert await invalid_messages(http, gateway) - before == len(bad)
    await agent.close()
