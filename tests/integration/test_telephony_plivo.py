"""A Plivo Audio Stream attached to a live session, against a fake that acts as Plivo does.

The fake (``tests/fakes/plivo_call.py``) plays what it is sent in real time, answers a
checkpoint with ``playedStream`` only once the audio before it has played, drops the pending
ones on ``clearAudio`` (answering ``clearedAudio``), and sends the caller's audio every 20 ms;
what it played is what the caller heard. The session and token travel in ``extraHeaders``.
"""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from tests.fakes.plivo_call import PlivoCall
from tests.gateway_harness import Gateway
from tests.ledger_checks import account_of, assert_ledger_exact
from tests.telephony_agent import LONG, SHORT, Agent, invalid_messages, open_agent
from tests.telephony_agent import stream_url as telephony_stream_url

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(120)]


def stream_url(gateway: Gateway) -> str:
    return telephony_stream_url(gateway, "plivo")


def extra_headers(agent: Agent, token: str) -> str:
    """The ``<Stream extraHeaders>`` of the call, as the docs' ``key=value;…`` example."""
    return f"sessionId={agent.session_id};token={token}"


async def test_a_call_plays_the_turn_checkpoints_what_was_heard_and_hears_the_caller(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, token = await open_agent(http, gateway, caller_audio=True)
    async with PlivoCall.connect(
        http, stream_url(gateway), extra_headers=extra_headers(agent, token)
    ) as call:
        attached = await agent.wait("telephony.attached")
        assert (attached["provider"], attached["stream_id"]) == ("plivo", call.stream_id)
        assert attached["call_id"] == call.call_id
        await agent.ws.send_json({"type": "text.append", "text": SHORT})
        await agent.ws.send_json({"type": "context.close"})
        done = await agent.wait("context.done")
        spoken_ms = agent.of("chunk.ended")[-1]["end_ms"]
        # Paced: when the turn is done on the session's side, the phone has nearly played it.
        assert call.played_ms() >= spoken_ms - 700
        await call.wait_for(lambda: call.played_ms() >= spoken_ms - 40, timeout=5)
        await call.dtmf("5")
        digit = await agent.wait("telephony.dtmf")
        assert (digit["digit"], digit["stream_id"]) == ("5", call.stream_id)
        assert not call.protocol_errors  # every playAudio in the stream's contentType
        assert not agent.audio_frames  # the audio went to the call, not the socket
        pcm = call.played_pcm().astype(np.float32) / 32768
        assert float(np.sqrt(np.mean(pcm**2))) > 0.01
        # A checkpoint after each chunk and at least every 500 ms, each answered once played.
        echoed = [name for name, _ in call.checkpoints_echoed]
        assert len(echoed) >= int(spoken_ms / 500)
        assert call.checkpoints_received[: len(echoed)] == echoed
        # The caller's audio reached the agent, 20 ms at a time.
        assert len(agent.caller_frames) >= 20
        assert {len(f.payload) for f in agent.caller_frames} == {160}
    detached = await agent.wait("telephony.detached")
    assert detached["reason"] == "closed"  # Plivo ends a stream by closing its socket
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
    async with PlivoCall.connect(
        http,
        stream_url(gateway),
        extra_headers=extra_headers(agent, token),
        send_caller_audio=False,
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
        media_at_clear = call.received_play_audio
        await asyncio.sleep(0.5)
        assert call.received_play_audio == media_at_clear  # nothing of that turn after
        assert call.played_ms() == heard_ms
        # The checkpoints the clear dropped are never answered; the next turn plays whole.
        await agent.ws.send_json({"type": "text.append", "text": SHORT, "context_id": "t2"})
        await agent.ws.send_json({"type": "context.close", "context_id": "t2"})
        done = await agent.wait("context.done")
        spoken_ms = [e for e in agent.of("chunk.ended") if e["context_id"] == "t2"][-1]["end_ms"]
        await call.wait_for(lambda: call.played_ms() >= heard_ms + spoken_ms - 40, timeout=10)
        assert any(at > call.clears[0] for _, at in call.checkpoints_echoed)
        assert not call.protocol_errors
    await agent.close()
    account = await account_of(gateway.services, gateway.api_key)
    charged = interrupted["usage"]["characters"] + done["usage"]["characters"]
    await assert_ledger_exact(gateway.services, {account: charged})


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_token", "invalid_token"),
        ("foreign_token", "token_scope"),
        ("no_session", "not_found"),
        ("no_extra_headers", "unauthorized"),
        ("linear_pcm", "invalid_message"),
    ],
)
async def test_a_bad_attach_is_closed_1008_before_any_media(
    http: aiohttp.ClientSession, gateway: Gateway, case: str, expected: str
) -> None:
    agent, token = await open_agent(http, gateway)
    other, other_token = await open_agent(http, gateway)
    headers = {
        "wrong_token": f"sessionId={agent.session_id};token=vgct_{'x' * 43}",
        "foreign_token": f"sessionId={agent.session_id};token={other_token}",
        "no_session": f"sessionId={'0' * 32};token={token}",
        "no_extra_headers": "",
        "linear_pcm": extra_headers(agent, token),
    }[case]
    content_type = "audio/x-l16;rate=8000" if case == "linear_pcm" else "audio/x-mulaw;rate=8000"
    async with PlivoCall.connect(
        http,
        stream_url(gateway),
        extra_headers=headers,
        content_type=content_type,
        send_caller_audio=False,
    ) as call:
        await call.wait_for(lambda: call.close_code is not None, timeout=5)
        assert (call.close_code, call.close_reason) == (1008, expected)
        assert call.received_play_audio == 0
    assert not agent.of("telephony.attached")
    if case in ("no_session", "linear_pcm"):  # the token was not spent on a refused stream
        async with PlivoCall.connect(
            http, stream_url(gateway), extra_headers=extra_headers(agent, token)
        ):
            await agent.wait("telephony.attached")
    await agent.close()
    await other.close()


async def test_a_message_before_start_is_closed_1008(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    media = {"event": "media", "streamId": "b77e037d-4119-44b5-902d-25826b654539"}
    async with http.ws_connect(stream_url(gateway)) as ws:
        await ws.send_json({**media, "media": {"track": "inbound", "payload": "//8="}})
        closed = await ws.receive(timeout=5)
        assert (closed.type, closed.data, closed.extra) == (
            aiohttp.WSMsgType.CLOSE,
            1008,
            "invalid_message",
        )


@pytest.mark.parametrize(
    "written",
    ["sessionId={session};token={token}", "session_id={session},token={token}"],
    ids=["semicolons", "commas"],
)
async def test_extra_headers_attach_as_either_documented_form(
    http: aiohttp.ClientSession, gateway: Gateway, written: str
) -> None:
    agent, token = await open_agent(http, gateway)
    headers = written.format(session=agent.session_id, token=token)
    async with PlivoCall.connect(
        http, stream_url(gateway), extra_headers=headers, send_caller_audio=False
    ) as call:
        attached = await agent.wait("telephony.attached")
        assert attached["stream_id"] == call.stream_id
    await agent.close()


async def test_bad_messages_mid_call_are_dropped_and_the_call_goes_on(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, token = await open_agent(http, gateway)
    async with PlivoCall.connect(
        http, stream_url(gateway), extra_headers=extra_headers(agent, token)
    ) as call:
        await agent.wait("telephony.attached")
        counted_before = await invalid_messages(http, gateway)
        other_stream = "87654321-4321-4321-4321-cba987654321"
        bad: list[dict[str, object] | str | bytes] = [
            {"event": "hangup", "streamId": call.stream_id},
            {"event": "playedStream", "streamId": other_stream, "name": "vg1"},
            {"event": "media", "streamId": call.stream_id, "media": {"payload": "A" * 9000}},
            {"event": "media", "streamId": call.stream_id, "media": {"payload": "not base64!"}},
            {"event": "dtmf", "streamId": call.stream_id, "dtmf": {"digit": "55"}},
            {"event": "start", "start": {"streamId": other_stream}},
            "not json",
            b"\x00\x01",
        ]
        for message in bad:
            await call.send_raw(message)
        await agent.ws.send_json({"type": "text.append", "text": SHORT})
        await agent.ws.send_json({"type": "context.close"})
        await agent.wait("context.done")
        spoken_ms = agent.of("chunk.ended")[-1]["end_ms"]
        await call.wait_for(lambda: call.played_ms() >= spoken_ms - 40, timeout=10)
        assert call.close_code is None
        assert not agent.of("telephony.dtmf")
        assert await invalid_messages(http, gateway) - counted_before == len(bad)
    await agent.close()


async def test_a_stop_message_ends_the_call(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    agent, token = await open_agent(http, gateway)
    async with PlivoCall.connect(
        http, stream_url(gateway), extra_headers=extra_headers(agent, token)
    ) as call:
        await agent.wait("telephony.attached")
        await call.send_raw({"event": "stop", "streamId": call.stream_id, "reason": "hangup"})
        detached = await agent.wait("telephony.detached")
        assert detached["reason"] == "stop"
        await call.wait_for(lambda: call.close_code is not None, timeout=5)
        assert call.close_code == 1000
    await agent.close()
