"""A socket that drops mid-turn, and the session continued on a new one (``session.resume``).

The drop is real: the client aborts its TCP transport while audio flows (no close frame),
and what sat in the sockets' buffers is lost with it. The new socket says the seq of the
last frame it got; the test checks, frame by frame, that the audio goes on from the next
one (no gap, no repeat, timestamps continuous), that the turn completes and that what was
heard and charged is exact, on a real redis-server ledger.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.conftest import Target
from tests.fakes.twilio_call import TwilioCall
from tests.gateway_harness import Gateway, running_gateway
from tests.integration.test_whep import Listener as WebrtcListener
from tests.integration.test_whep import offer_to_session, wait_for
from tests.ledger_checks import account_of, assert_ledger_exact
from tests.telephony_agent import stream_url
from voxgate.gateway.protocol import unpack_audio_frame

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(120)]

TEXT = " ".join(
    [
        "Your parcel left the depot this morning and is on the van now.",
        "The driver expects to reach your street between two and four.",
        "If nobody is home, it goes to the locker by the station.",
    ]
)  # about ten seconds of speech
OTHER_KEY = "vg_other_key_0123456789abcdef"
FRAME_SAMPLES = 480  # realtime pacing sends 24 kHz PCM in 20 ms frames


@pytest.fixture
async def gateway(target: Target, redis_url: str) -> AsyncIterator[Gateway]:
    keys = ("vg_test_key_0123456789abcdef:1000000", f"{OTHER_KEY}:1000")
    async with running_gateway(target, redis_url=redis_url, api_keys=keys) as gw:
        yield gw


@dataclass
class Frame:
    context_id: str
    seq: int
    timestamp: int
    payload: bytes


TURN_EVENTS = {"chunk.started", "chunk.ended", "chunk.failed", "context.done", "interrupted"}


def is_turn_event(event: dict[str, Any]) -> bool:
    """What the synthesis produces, in one order with the audio: what a resume sends again."""
    return event["type"] in TURN_EVENTS or (event["type"] == "error" and event["context_id"])


@dataclass
class Listener:
    """A client as an app writes one: it keeps what it received across its sockets, and
    after a resume skips the turn events it already had (those after its last frame)."""

    frames: list[Frame] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    since_last_frame: int = 0  # turn events received after the last frame, on this socket
    to_skip: int = 0

    def take(self, msg: aiohttp.WSMessage) -> dict[str, Any] | None:
        if msg.type is aiohttp.WSMsgType.BINARY:
            _, context_id, seq, timestamp, payload = unpack_audio_frame(msg.data)
            self.frames.append(Frame(context_id, seq, timestamp, payload))
            self.since_last_frame = 0
            return None
        assert msg.type is aiohttp.WSMsgType.TEXT, f"socket ended: {msg.type} {msg.data!r}"
        event: dict[str, Any] = json.loads(msg.data)
        if event["type"] == "session.resumed":
            self.to_skip, self.since_last_frame = self.since_last_frame, 0
            assert event["replayed"] >= self.to_skip
            return event
        if is_turn_event(event):
            if self.to_skip:
                self.to_skip -= 1  # sent again: it had come before the drop
                return None
            self.since_last_frame += 1
        self.events.append(event)
        return event

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def last_seq(self) -> int | None:
        return self.frames[-1].seq if self.frames else None

    def audio_ms(self, context_id: str = "default") -> float:
        return sum(len(f.payload) for f in self.frames if f.context_id == context_id) / 48


async def connect(
    http: aiohttp.ClientSession, gateway: Gateway, key: str | None = None
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key or gateway.api_key}"}
    ws = await http.ws_connect(gateway.ws_url, headers=headers)
    created = json.loads((await ws.receive(timeout=10)).data)
    assert created["type"] == "session.created"
    return ws, created


async def keep_reading(ws: aiohttp.ClientWebSocketResponse, listener: Listener) -> None:
    while (msg := await ws.receive()).type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
        listener.take(msg)


async def read_until(
    ws: aiohttp.ClientWebSocketResponse, listener: Listener, done: Any, timeout: float = 30
) -> dict[str, Any] | None:
    """Read until ``done(event)`` is true for an event (or, for audio, ``done(None)``)."""
    async with asyncio.timeout(timeout):
        while True:
            event = listener.take(await ws.receive())
            if done(event):
                return event


def drop(ws: aiohttp.ClientWebSocketResponse) -> None:
    """The network goes: the TCP connection ends under the socket, no close frame."""
    ws._writer.transport.abort()


async def start_turn(
    ws: aiohttp.ClientWebSocketResponse, text: str = TEXT, context_id: str = "default"
) -> None:
    fmt = {"encoding": "pcm_s16le", "sample_rate": 24000}
    await ws.send_json({"type": "session.update", "pacing": "realtime", "output_format": fmt})
    await ws.send_json({"type": "text.append", "text": text, "context_id": context_id})
    await ws.send_json({"type": "context.close", "context_id": context_id})


async def resume(
    http: aiohttp.ClientSession,
    gateway: Gateway,
    listener: Listener,
    created: dict[str, Any],
    **overrides: Any,
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """A new socket, and the first answer to its session.resume."""
    ws, fresh = await connect(http, gateway, overrides.pop("key", None))
    assert fresh["session_id"] != created["session_id"]
    message = {
        "type": "session.resume",
        "session_id": created["session_id"],
        "resume_token": created["resume_token"],
        "last_seq": listener.last_seq,
        **overrides,
    }
    await ws.send_json(message)
    answer = await read_until(ws, listener, lambda e: e is not None)
    assert answer is not None
    return ws, answer


async def drop_mid_turn(
    http: aiohttp.ClientSession, gateway: Gateway, listener: Listener, after_ms: float
) -> dict[str, Any]:
    ws, created = await connect(http, gateway)
    await start_turn(ws)
    await read_until(ws, listener, lambda _: listener.audio_ms() >= after_ms)
    drop(ws)
    return created


def assert_contiguous(frames: list[Frame]) -> None:
    seqs = [f.seq for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a frame lost or repeated"
    for before, after in itertools.pairwise(frames):
        assert after.timestamp == before.timestamp + len(before.payload) // 2


async def wait_until_no_session(gateway: Gateway, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while gateway.services.live_sessions or gateway.services.connections:
            await asyncio.sleep(0.05)


def metric(scraped: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", scraped, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_dropped_socket_resumes_after_its_last_frame_with_nothing_lost_or_repeated(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    listener = Listener()
    created = await drop_mid_turn(http, gateway, listener, after_ms=1500)
    had = len(listener.frames)
    await asyncio.sleep(0.5)  # the phone finds a network again
    ws, resumed = await resume(http, gateway, listener, created)
    assert resumed["type"] == "session.resumed"
    assert resumed["session_id"] == created["session_id"]
    assert resumed["last_seq"] == listener.last_seq
    assert resumed["next_seq"] == listener.last_seq + 1
    assert resumed["config"]["pacing"] == "realtime"
    done = await read_until(ws, listener, lambda e: e is not None and e["type"] == "context.done")
    assert done is not None
    assert len(listener.frames) > had
    assert listener.frames[had].seq == listener.frames[had - 1].seq + 1
    assert_contiguous(listener.frames)
    # Every chunk once, and the whole turn delivered and charged.
    chunks = [e["chunk_index"] for e in listener.of("chunk.ended")]
    assert chunks == list(range(len(chunks)))
    assert [e["chunk_index"] for e in listener.of("chunk.started")] == chunks
    assert abs(done["usage"]["audio_ms"] - listener.audio_ms()) < 1
    assert listener.of("chunk.ended")[-1]["end_ms"] == pytest.approx(listener.audio_ms(), abs=1)
    charged = done["usage"]["characters"]
    assert charged == sum(len(e["text"].strip()) for e in listener.of("chunk.ended"))
    assert "".join(e["text"] for e in listener.of("chunk.ended")) == TEXT
    await ws.close()
    await wait_until_no_session(gateway)
    account = await account_of(gateway.services, gateway.api_key)
    await assert_ledger_exact(gateway.services, {account: charged})
    scraped = (gateway.services.metrics.render())[0].decode()
    assert metric(scraped, "voxgate_session_resumes_total") == 1
    assert metric(scraped, "voxgate_sessions_detached_total") == 1


async def test_a_barge_in_after_resume_reports_what_was_heard_on_both_sockets(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    listener = Listener()
    created = await drop_mid_turn(http, gateway, listener, after_ms=1000)
    ws, resumed = await resume(http, gateway, listener, created)
    assert resumed["type"] == "session.resumed"
    await read_until(ws, listener, lambda _: listener.audio_ms() >= 2500)
    await ws.send_json({"type": "interrupt"})
    interrupted = await read_until(
        ws, listener, lambda e: e is not None and e["type"] == "interrupted"
    )
    assert interrupted is not None
    assert_contiguous(listener.frames)
    # Heard is every frame the client received, on the old socket and the new one.
    assert abs(interrupted["played_ms"] - listener.audio_ms()) < 1
    assert interrupted["heard"] + interrupted["unheard"] == TEXT
    assert TEXT.startswith(interrupted["heard"])
    assert interrupted["unheard"].strip()
    charged = interrupted["usage"]["characters"]
    assert 0 < charged <= len(interrupted["heard"].strip())
    await ws.close()
    await wait_until_no_session(gateway)
    account = await account_of(gateway.services, gateway.api_key)
    await assert_ledger_exact(gateway.services, {account: charged})


async def test_refused_resumes_leave_the_session_to_its_owner(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    listener = Listener()
    created = await drop_mid_turn(http, gateway, listener, after_ms=500)
    refusals = {
        "invalid_resume_token": {"resume_token": "not-the-token"},
        "forbidden": {"key": OTHER_KEY},
        "session_not_found": {"session_id": "no-such-session"},
        "invalid_input": {"last_seq": (listener.last_seq or 0) + 10_000},
    }
    for code, overrides in refusals.items():
        ws, answer = await resume(http, gateway, Listener(), created, **overrides)
        assert (answer["type"], answer["code"], answer["fatal"]) == ("error", code, False)
        # The socket keeps the fresh session it was given.
        await ws.send_json({"type": "ping", "event_id": code})
        pong = await read_until(ws, Listener(), lambda e: e is not None)
        assert pong == {"type": "pong", "event_id": code}
        await ws.close()
    ws, resumed = await resume(http, gateway, listener, created)
    assert resumed["type"] == "session.resumed"
    done = await read_until(ws, listener, lambda e: e is not None and e["type"] == "context.done")
    assert done is not None
    assert_contiguous(listener.frames)
    await ws.close()


async def test_a_session_still_on_its_socket_cannot_be_taken_over(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    owner, created = await connect(http, gateway)
    await start_turn(owner)
    listener = Listener()
    await read_until(owner, listener, lambda _: listener.audio_ms() >= 200)
    ws, answer = await resume(http, gateway, Listener(), created)
    assert (answer["type"], answer["code"]) == ("error", "session_attached")
    await ws.close()
    # The owner's audio goes on as if nothing had been asked.
    had_ms = listener.audio_ms()
    await read_until(owner, listener, lambda _: listener.audio_ms() >= had_ms + 500)
    assert_contiguous(listener.frames)
    await owner.close()


async def test_a_client_that_closes_its_socket_ends_its_session(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    listener = Listener()
    owner, created = await connect(http, gateway)
    await start_turn(owner)
    await read_until(owner, listener, lambda _: listener.audio_ms() >= 500)
    await owner.close()  # a close frame: the client is done
    ws, answer = await resume(http, gateway, listener, created)
    assert (answer["type"], answer["code"]) == ("error", "session_not_found")
    await ws.close()
    await wait_until_no_session(gateway)
    account = await account_of(gateway.services, gateway.api_key)
    balance = await gateway.services.ledger.balance(account)
    await assert_ledger_exact(gateway.services, {account: balance.committed})


async def test_a_session_not_resumed_within_the_grace_ends_at_what_its_socket_took(
    http: aiohttp.ClientSession, target: Target, redis_url: str
) -> None:
    async with running_gateway(target, redis_url=redis_url, resume_grace_s=1.0) as gateway:
        listener = Listener()
        created = await drop_mid_turn(http, gateway, listener, after_ms=1000)
        await asyncio.sleep(0.5)
        assert created["session_id"] in gateway.services.live_sessions  # kept, detached
        await wait_until_no_session(gateway, timeout=5)
        ws, answer = await resume(http, gateway, listener, created)
        assert (answer["type"], answer["code"]) == ("error", "session_not_found")
        await ws.close()
        await wait_until_no_session(gateway)
        account = await account_of(gateway.services, gateway.api_key)
        balance = await gateway.services.ledger.balance(account)
        await assert_ledger_exact(gateway.services, {account: balance.committed})
        # Charged what the old socket took: at least what the client got, not the turn.
        assert 0 < balance.committed < len(TEXT.replace(". ", "."))
        scraped = gateway.services.metrics.render()[0].decode()
        assert metric(scraped, "voxgate_session_resume_expiries_total") == 1


async def test_a_last_seq_older_than_the_replay_ring_is_a_gap_and_ends_the_session(
    http: aiohttp.ClientSession, target: Target, redis_url: str
) -> None:
    # Two frames' worth of replay: a client that lost more cannot continue exactly.
    async with running_gateway(target, redis_url=redis_url, resume_replay_bytes=2 * 960) as gateway:
        listener = Listener()
        created = await drop_mid_turn(http, gateway, listener, after_ms=1000)
        stale = Listener(frames=listener.frames[:1])  # says it got only the first frame
        ws, answer = await resume(http, gateway, stale, created)
        assert (answer["type"], answer["code"], answer["fatal"]) == ("error", "resume_gap", False)
        await ws.close()
        await wait_until_no_session(gateway)
        ws, answer = await resume(http, gateway, listener, created)
        assert answer["code"] == "session_not_found"
        await ws.close()
        await wait_until_no_session(gateway)
        account = await account_of(gateway.services, gateway.api_key)
        balance = await gateway.services.ledger.balance(account)
        await assert_ledger_exact(gateway.services, {account: balance.committed})


async def test_a_call_leg_stays_on_the_call_while_the_agent_socket_is_away(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, created = await connect(http, gateway)
    minted = await http.post(
        f"{gateway.url}/v1/client_tokens",
        headers={"Authorization": f"Bearer {gateway.api_key}"},
        json={"session_id": created["session_id"]},
    )
    params = {"session_id": created["session_id"], "token": (await minted.json())["data"]["token"]}
    listener = Listener()
    reader = asyncio.create_task(keep_reading(agent, listener))
    async with TwilioCall.connect(
        http, stream_url(gateway, "twilio"), custom_parameters=params, send_caller_audio=False
    ) as call:
        await call.wait_for(lambda: listener.of("telephony.attached"), timeout=10)
        await agent.send_json({"type": "text.append", "text": TEXT})
        await agent.send_json({"type": "context.close"})
        await call.wait_for(lambda: call.played_ms() > 1500, timeout=30)
        drop(agent)
        await reader
        await asyncio.sleep(1.0)  # what the phone had in hand plays out, then it waits
        paused_at = call.received_media_messages
        await asyncio.sleep(1.0)
        assert call.received_media_messages == paused_at  # the audio waits with the socket
        assert call.close_code is None  # the call is not hung up
        assert not call.clears
        ws, resumed = await resume(http, gateway, listener, created)
        assert (resumed["type"], resumed["next_seq"]) == ("session.resumed", 0)
        done = await read_until(
            ws, listener, lambda e: e is not None and e["type"] == "context.done"
        )
        assert done is not None
        spoken_ms = listener.of("chunk.ended")[-1]["end_ms"]
        await call.wait_for(lambda: call.played_ms() >= spoken_ms - 40, timeout=15)
        assert not listener.frames  # the audio went to the call, not the socket
        assert not call.protocol_errors
        chunks = [e["chunk_index"] for e in listener.of("chunk.ended")]
        assert chunks == list(range(len(chunks)))  # each once, though some came again
    await ws.close()
    await wait_until_no_session(gateway)
    charged = done["usage"]["characters"]
    assert charged == sum(len(e["text"].strip()) for e in listener.of("chunk.ended"))
    account = await account_of(gateway.services, gateway.api_key)
    await assert_ledger_exact(gateway.services, {account: charged})


async def mint(http: aiohttp.ClientSession, gateway: Gateway, session_id: str) -> str:
    """What an app's backend does for its browser: a client token for one session."""
    async with http.post(
        f"{gateway.url}/v1/client_tokens",
        headers={"Authorization": f"Bearer {gateway.api_key}"},
        json={"session_id": session_id},
    ) as minted:
        assert minted.status == 200, await minted.text()
        token: str = (await minted.json())["data"]["token"]
        return token


async def token_socket(
    http: aiohttp.ClientSession, gateway: Gateway, token: str
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await http.ws_connect(gateway.ws_url, protocols=("voxgate.v1", f"voxgate.token.{token}"))
    created = json.loads((await ws.receive(timeout=10)).data)
    assert created["type"] == "session.created", created
    return ws, created


async def test_a_browser_resumes_its_session_with_a_fresh_token_scoped_to_it(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    session_id = "browser-session-1"
    ws, created = await token_socket(http, gateway, await mint(http, gateway, session_id))
    assert created["session_id"] == session_id
    listener = Listener()
    await start_turn(ws)
    await read_until(ws, listener, lambda _: listener.audio_ms() >= 1000)
    drop(ws)
    await asyncio.sleep(0.3)

    # Its backend mints a new token for the same session: that socket may resume it...
    ws, fresh = await token_socket(http, gateway, await mint(http, gateway, session_id))
    assert fresh["session_id"] != session_id
    ask = {
        "type": "session.resume",
        "session_id": session_id,
        "resume_token": created["resume_token"],
        "last_seq": listener.last_seq,
    }
    async with asyncio.timeout(10):
        while True:
            await ws.send_json(ask)
            answer = await read_until(ws, listener, lambda e: e is not None)
            assert answer is not None
            if answer.get("code") != "session_attached":  # the drop not yet seen
                break
            listener.events.pop()
            await asyncio.sleep(0.1)
    assert answer["type"] == "session.resumed", answer
    done = await read_until(ws, listener, lambda e: e is not None and e["type"] == "context.done")
    assert done is not None
    assert_contiguous(listener.frames)
    assert "".join(e["text"] for e in listener.of("chunk.ended")) == TEXT

    # ... and nothing else: a socket whose token names a live session cannot start its own.
    other, _ = await token_socket(http, gateway, await mint(http, gateway, session_id))
    await other.send_json({"type": "text.append", "text": "Hello"})
    refused = json.loads((await other.receive(timeout=10)).data)
    assert (refused["type"], refused["code"], refused["fatal"]) == ("error", "session_exists", True)
    closed = await other.receive(timeout=10)
    assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 1008)
    await ws.close()
    await wait_until_no_session(gateway)
    account = await account_of(gateway.services, gateway.api_key)
    await assert_ledger_exact(gateway.services, {account: done["usage"]["characters"]})


async def test_a_webrtc_peer_stays_connected_across_a_socket_drop_and_plays_on(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, created = await connect(http, gateway)
    peer = WebrtcListener()
    answer = await offer_to_session(http, gateway, created["session_id"], peer)
    assert answer.status == 201, await answer.text()
    await peer.answer(await answer.text())
    await wait_for(lambda: peer.pc.connectionState == "connected")
    listener = Listener()
    await agent.send_json({"type": "text.append", "text": TEXT})
    await agent.send_json({"type": "context.close"})
    await read_until(agent, listener, lambda e: e is not None and e["type"] == "chunk.started")
    await asyncio.sleep(1.5)
    drop(agent)
    await asyncio.sleep(1.5)  # the track plays out what it held, then goes quiet
    quiet_from = asyncio.get_running_loop().time()
    await asyncio.sleep(1.0)
    assert peer.pc.connectionState == "connected", "the peer is not hung up"
    assert max(peer.energy_since(quiet_from), default=0.0) < 0.01, "audio waits for the socket"

    ws, resumed = await resume(http, gateway, listener, created)
    assert resumed["type"] == "session.resumed"
    back_at = asyncio.get_running_loop().time()
    done = await read_until(ws, listener, lambda e: e is not None and e["type"] == "context.done")
    assert done is not None
    await asyncio.sleep(1.0)
    assert sum(e > 0.01 for e in peer.energy_since(back_at)) > 25, "the speech goes on"
    assert not listener.frames  # the audio went to the peer, not the sockets
    chunks = [e["chunk_index"] for e in listener.of("chunk.ended")]
    assert chunks == list(range(len(chunks)))
    assert "".join(e["text"] for e in listener.of("chunk.ended")) == TEXT
    await peer.close()
    await ws.close()
    await wait_until_no_session(gateway)
    account = await account_of(gateway.services, gateway.api_key)
    await assert_ledger_exact(gateway.services, {account: done["usage"]["characters"]})


async def drop_at_the_limit(
    http: aiohttp.ClientSession, gateway: Gateway, after_ms: float
) -> tuple[str, dict[str, Any], Listener]:
    """A key of one session whose socket dropped mid-turn: (key, its session.created, what
    the dropped socket received)."""
    key, _ = await gateway.services.keys.create(
        None, "one at a time", credits=10_000, max_sessions=1
    )
    listener = Listener()
    ws, created = await connect(http, gateway, key)
    await start_turn(ws)
    await read_until(ws, listener, lambda _: listener.audio_ms() >= after_ms)
    drop(ws)
    await asyncio.sleep(0.3)
    return key, created, listener


async def test_a_key_at_its_session_limit_resumes_the_session_its_socket_dropped(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    key, created, listener = await drop_at_the_limit(http, gateway, after_ms=1000)
    # The dropped session holds the key's one slot; a new socket comes in to resume it.
    again, resumed = await resume(http, gateway, listener, created, key=key)
    assert resumed["type"] == "session.resumed"
    done = await read_until(
        again, listener, lambda e: e is not None and e["type"] == "context.done"
    )
    assert done is not None
    assert_contiguous(listener.frames)
    # Still one session for the key: a socket that does not resume is refused as before,
    # whether it is told so at once (nothing waits) or at its first other message.
    headers = {"Authorization": f"Bearer {key}"}
    extra = await http.ws_connect(gateway.ws_url, headers=headers)
    refused = json.loads((await extra.receive(timeout=10)).data)
    assert (refused["type"], refused["code"]) == ("error", "too_many_sessions")
    assert (await extra.receive(timeout=10)).data == 1008
    await again.close()


async def test_at_the_limit_a_socket_that_came_in_to_resume_may_do_nothing_else(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    key, _, _ = await drop_at_the_limit(http, gateway, after_ms=500)
    other, _ = await connect(http, gateway, key)  # a session of the key waits: let in
    await other.send_json({"type": "text.append", "text": "A session of its own."})
    refused = json.loads((await other.receive(timeout=10)).data)
    assert (refused["type"], refused["code"], refused["fatal"]) == (
        "error",
        "too_many_sessions",
        True,
    )
    assert (await other.receive(timeout=10)).data == 1008
