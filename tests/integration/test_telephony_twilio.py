"""A Twilio Media Stream attached to a live session, against a fake that acts as Twilio does.

The fake (``tests/fakes/twilio_call.py``) plays what it is sent in real time, echoes a mark
only once the audio before it has played and every pending mark on ``clear``, and sends the
caller's audio every 20 ms; what it played is what the caller heard.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import numpy as np
import pytest

from tests.conftest import Target
from tests.fakes.twilio_call import TwilioCall
from tests.gateway_harness import Gateway, running_gateway
from tests.ledger_checks import account_of, assert_ledger_exact
from tests.telephony_agent import LONG, SHORT, open_agent
from tests.telephony_agent import stream_url as telephony_stream_url

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
AUTH_TOKEN = "twilio-auth-token-for-tests"


def stream_url(gateway: Gateway) -> str:
    return telephony_stream_url(gateway, "twilio")


async def test_a_call_plays_the_turn_marks_what_was_heard_and_hears_the_caller(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, token = await open_agent(http, gateway, caller_audio=True)
    params = {"session_id": agent.session_id, "token": token}
    async with TwilioCall.connect(http, stream_url(gateway), custom_parameters=params) as call:
        attached = await agent.wait("telephony.attached")
        assert (attached["provider"], attached["stream_id"]) == ("twilio", call.stream_sid)
        assert attached["call_id"] == call.call_sid
        await agent.ws.send_json({"type": "text.append", "text": SHORT})
        await agent.ws.send_json({"type": "context.close"})
        done = await agent.wait("context.done")
        spoken_ms = agent.of("chunk.ended")[-1]["end_ms"]
        # Paced: when the turn is done on the session's side, the phone has nearly played it.
        assert call.played_ms() >= spoken_ms - 700
        await call.wait_for(lambda: call.played_ms() >= spoken_ms - 40, timeout=5)
        await call.dtmf("5")
        digit = await agent.wait("telephony.dtmf")
        assert (digit["digit"], digit["stream_id"]) == ("5", call.stream_sid)
        assert not call.protocol_errors
        assert not agent.audio_frames  # the audio went to the call, not the socket
        pcm = call.played_pcm().astype(np.float32) / 32768
        assert float(np.sqrt(np.mean(pcm**2))) > 0.01
        # A mark after each chunk and at least every 500 ms, each echoed once it played.
        assert len(call.marks_echoed) >= int(spoken_ms / 500)
        assert call.marks_received[: len(call.marks_echoed)] == [n for n, _ in call.marks_echoed]
        # The caller's audio reached the agent, 20 ms at a time.
        assert len(agent.caller_frames) >= 20
        assert {len(f.payload) for f in agent.caller_frames} == {160}
    detached = await agent.wait("telephony.detached")
    assert detached["reason"] == "stop"
    charged = done["usage"]["characters"]
    assert charged == sum(len(e["text"].strip()) for e in agent.of("chunk.ended"))
    await agent.close()
    account = await account_of(gateway.services, gateway.api_key)
    balance = await gateway.services.ledger.balance(account)
    await assert_ledger_exact(gateway.services, {account: balance.committed})
    assert balance.committed == charged


async def test_interrupt_clears_the_call_at_once_and_charges_what_the_caller_heard(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, token = await open_agent(http, gateway)
    params = {"session_id": agent.session_id, "token": token}
    async with TwilioCall.connect(
        http, stream_url(gateway), custom_parameters=params, send_caller_audio=False
    ) as call:
        await agent.wait("telephony.attached")
        await agent.ws.send_json({"type": "text.append", "text": LONG})
        await agent.ws.send_json({"type": "text.flush"})
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
        # The marks echoed by the clear do not confuse the next turn.
        await agent.ws.send_json({"type": "text.append", "text": SHORT, "context_id": "t2"})
        await agent.ws.send_json({"type": "context.close", "context_id": "t2"})
        done = await agent.wait("context.done")
        spoken_ms = [e for e in agent.of("chunk.ended") if e["context_id"] == "t2"][-1]["end_ms"]
        await call.wait_for(lambda: call.played_ms() >= heard_ms + spoken_ms - 40, timeout=10)
        assert not call.protocol_errors
    await agent.close()
    account = await account_of(gateway.services, gateway.api_key)
    charged = interrupted["usage"]["characters"] + done["usage"]["characters"]
    await assert_ledger_exact(gateway.services, {account: charged})


@pytest.mark.parametrize("case", ["wrong_token", "foreign_token", "no_session", "no_parameters"])
async def test_a_bad_attach_is_closed_1008_before_any_media(
    http: aiohttp.ClientSession, gateway: Gateway, case: str
) -> None:
    agent, token = await open_agent(http, gateway)
    other, other_token = await open_agent(http, gateway)
    params = {
        "wrong_token": {"session_id": agent.session_id, "token": "vgt_" + "x" * 40},
        "foreign_token": {"session_id": agent.session_id, "token": other_token},
        "no_session": {"session_id": "0" * 32, "token": token},
        "no_parameters": {},
    }[case]
    expected = {
        "wrong_token": "invalid_token",
        "foreign_token": "token_scope",
        "no_session": "not_found",
        "no_parameters": "unauthorized",
    }[case]
    async with TwilioCall.connect(http, stream_url(gateway), custom_parameters=params) as call:
        await call.wait_for(lambda: call.close_code is not None, timeout=5)
        assert (call.close_code, call.close_reason) == (1008, expected)
        assert call.received_media_messages == 0
    assert not agent.of("telephony.attached")
    if case == "no_session":  # the token was not spent on a session that is not here
        async with TwilioCall.connect(
            http,
            stream_url(gateway),
            custom_parameters={"session_id": agent.session_id, "token": token},
        ):
            await agent.wait("telephony.attached")
    await agent.close()
    await other.close()


async def test_bad_messages_mid_call_are_dropped_and_the_call_goes_on(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, token = await open_agent(http, gateway)
    params = {"session_id": agent.session_id, "token": token}
    async with TwilioCall.connect(http, stream_url(gateway), custom_parameters=params) as call:
        await agent.wait("telephony.attached")
        await call.send_raw({"event": "hangup", "streamSid": call.stream_sid})
        await call.send_raw({"event": "mark", "streamSid": "MZ" + "0" * 32, "mark": {"name": "x"}})
        await call.send_raw(
            {"event": "media", "streamSid": call.stream_sid, "media": {"payload": "A" * 9000}}
        )
        await call.send_raw("not json")
        await agent.ws.send_json({"type": "text.append", "text": SHORT})
        await agent.ws.send_json({"type": "context.close"})
        await agent.wait("context.done")
        spoken_ms = agent.of("chunk.ended")[-1]["end_ms"]
        await call.wait_for(lambda: call.played_ms() >= spoken_ms - 40, timeout=10)
        assert call.close_code is None
    scraped = await (await http.get(f"{gateway.url}/metrics")).text()
    counted = re.search(r'^voxgate_errors_total\{code="invalid_message"\} (\S+)$', scraped, re.M)
    assert counted is not None
    assert float(counted.group(1)) >= 4
    await agent.close()


async def test_the_twilio_signature_is_checked_when_an_auth_token_is_set(
    http: aiohttp.ClientSession, target: Target
) -> None:
    async with running_gateway(target, twilio_auth_token=AUTH_TOKEN) as gateway:
        agent, token = await open_agent(http, gateway)
        params = {"session_id": agent.session_id, "token": token}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with TwilioCall.connect(
                http, stream_url(gateway), custom_parameters=params, auth_token="another-token"
            ):
                pass
        assert refused.value.status == 403
        async with TwilioCall.connect(
            http, stream_url(gateway), custom_parameters=params, auth_token=AUTH_TOKEN
        ):
            await agent.wait("telephony.attached")
        await agent.close()
