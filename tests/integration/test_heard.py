"""`heard` on barge-in, exact to the word on every sink, judged by what the listener got.

The rule (docs/protocol.md, "Interrupt"): a word counts as heard once its middle, by the
word marks of `chunk.ended`, lies within the position; a chunk whose whole audio lies
within it is heard whole, with the whitespace after it. The position is the client's
`played_ms` clamped to what the sink delivered, or what the sink delivered: the audio the
socket sent, the frames the WebRTC track sent, what the phone played by its echoed marks.
The charge is the same split at the delivered position, without the whitespace around each
chunk. A chunk interrupted part way never gets its `chunk.ended`: its marks are taken from
the same text spoken whole on another socket (the embedded engine is deterministic; the
chunks both turns share are compared to make sure of it).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import aioice.ice
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from tests.delay_proxy import DelayProxy
from tests.fakes.plivo_call import PlivoCall
from tests.fakes.telnyx_call import TelnyxCall
from tests.fakes.twilio_call import TwilioCall
from tests.fakes.vonage_call import VonageCall
from tests.gateway_harness import Gateway, Received, receive_until
from tests.ledger_checks import account_of, assert_ledger_exact
from tests.telephony_agent import LONG, open_agent, stream_url
from voxgate.gateway.protocol import unpack_audio_frame
from voxgate.gateway.webrtc.track import OPUS_SILENCE

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(120)]

FIRST = "Sure, your order shipped on Monday morning. "
# No clause boundary inside: a later chunk that starts while nothing plays could end at one.
SECOND = "It should reach you on Thursday before noon at the front desk."
TEXT = FIRST + SECOND
# The embedded engine's audio of one text varies by a few milliseconds from run to run (4.4
# ms at most, measured over a chunk of 2.6 s); marks scale with it.
ENGINE_SPREAD_MS = 10.0
PCM_24K = {"encoding": "pcm_s16le", "sample_rate": 24000}
ONE_WAY_S = 0.060  # between the gateway and a provider, in the round-trip test

Chunk = dict[str, Any]  # a `chunk.ended` message


# -- the rule, from the client's side ---------------------------------------------------


def _cut(chunk: Chunk, position_ms: float) -> int:
    """Offset in the chunk's text up to which it was heard at ``position_ms``."""
    if position_ms >= chunk["end_ms"]:
        return len(chunk["text"])
    for word in chunk["words"]:
        if (word["start_ms"] + word["end_ms"]) / 2 > position_ms:
            return int(word["char_start"])
    return len(chunk["text"])


def heard_at(chunks: list[Chunk], position_ms: float) -> str:
    return "".join(c["text"][: _cut(c, position_ms)] for c in chunks)


def charged_at(chunks: list[Chunk], delivered_ms: float) -> int:
    return sum(len(c["text"][: _cut(c, delivered_ms)].strip()) for c in chunks)


async def spoken_whole(
    http: aiohttp.ClientSession, gateway: Gateway, *texts: str, **update: Any
) -> list[Chunk]:
    """The `chunk.ended` of ``texts``, each flushed once the one before it was spoken."""
    ws = await connect(http, gateway, pacing="fast", **update)
    received = Received()
    spoken = ""
    for text in texts:
        spoken += text
        await ws.send_json({"type": "text.append", "text": text})
        await ws.send_json({"type": "text.flush"})
        letters = "".join(spoken.split())
        await read_until(ws, received, lambda: spoken_letters(received) == letters)  # noqa: B023
    await ws.close()
    return received.of("chunk.ended")


def spoken_letters(received: Received) -> str:
    return "".join("".join(c["text"] for c in received.of("chunk.ended")).split())


async def connect(
    http: aiohttp.ClientSession, gateway: Gateway, **update: Any
) -> aiohttp.ClientWebSocketResponse:
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    ws = await http.ws_connect(gateway.ws_url, headers=headers)
    await receive_until(ws, "session.created", Received())
    await ws.send_json({"type": "session.update", "output_format": PCM_24K, **update})
    await receive_until(ws, "session.updated", Received())
    return ws


async def read_until(
    ws: aiohttp.ClientWebSocketResponse, received: Received, done: Callable[[], bool]
) -> None:
    """Read messages and audio frames until ``done()``."""
    async with asyncio.timeout(30):
        while not done():
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                received.messages.append(msg.json())
            elif msg.type is aiohttp.WSMsgType.BINARY:
                received.frames.append(unpack_audio_frame(msg.data))
            else:
                raise AssertionError(f"socket ended: {msg.type}")


def marks_of_turn(
    turn: list[dict[str, Any]], whole: list[Chunk], spread_ms: float = ENGINE_SPREAD_MS
) -> list[Chunk]:
    """The marks of a turn's chunks: their `chunk.ended` where it came, else the same
    chunk's spoken whole, moved to where the turn's `chunk.started` put it."""
    ended = {m["chunk_index"]: m for m in turn if m["type"] == "chunk.ended"}
    started = [m for m in turn if m["type"] == "chunk.started"]
    assert [m["text"] for m in started] == [c["text"] for c in whole]
    chunks = []
    for start, reference in zip(started, whole, strict=True):
        chunk = ended.get(start["chunk_index"])
        if chunk is None:
            shift = start["start_ms"] - reference["start_ms"]
            words = [
                {**w, "start_ms": w["start_ms"] + shift, "end_ms": w["end_ms"] + shift}
                for w in reference["words"]
            ]
            chunk = {**reference, "start_ms": start["start_ms"], "words": words}
            chunk["from_reference"] = True
            chunk["end_ms"] = reference["end_ms"] + shift
        else:  # the same speech: the engine may differ by a sample, never by a word
            assert [w["text"] for w in chunk["words"]] == [w["text"] for w in reference["words"]]
            assert chunk["end_ms"] - chunk["start_ms"] == pytest.approx(
                reference["end_ms"] - reference["start_ms"], abs=spread_ms
            )
        chunks.append(chunk)
    return chunks


def barge_point(whole: list[Chunk]) -> float:
    """Just into the second chunk's longest word: what is still on its way when the
    interrupt lands keeps the cut short of its middle, clear of the engine's spread."""
    word = max(whole[1]["words"][:-1], key=lambda w: w["end_ms"] - w["start_ms"])
    return float(word["start_ms"]) + 10


def received_ms(received: Received) -> float:
    return len(received.audio()) / 48  # s16 at 24 kHz: 48 bytes a millisecond


def assert_split(
    interrupted: dict[str, Any], chunks: list[Chunk], position_ms: float, delivered_ms: float
) -> None:
    """Heard and the charge by the rule; where marks come from the text spoken whole, a cut
    within the engine's run-to-run spread of a word's middle may fall either side of it."""
    spread = ENGINE_SPREAD_MS if any(c.get("from_reference") for c in chunks) else 0.0
    heard = {heard_at(chunks, position_ms + d) for d in (-spread, spread)}
    charged = {charged_at(chunks, delivered_ms + d) for d in (-spread, spread)}
    assert interrupted["heard"] in heard
    assert interrupted["usage"]["characters"] in charged
    assert interrupted["heard"] + interrupted["unheard"] == "".join(c["text"] for c in chunks)


async def assert_charged(
    gateway: Gateway, interrupted: dict[str, Any], whole: list[Chunk] | None = None
) -> None:
    """The ledger holds nothing and committed the turn's charge (and the text spoken whole)."""
    charged = interrupted["usage"]["characters"]
    charged += sum(len(c["text"].strip()) for c in whole or [])
    account = await account_of(gateway.services, gateway.api_key)
    await assert_ledger_exact(gateway.services, {account: charged})


# -- the socket -------------------------------------------------------------------------


@pytest.mark.parametrize("played_ms", [None, 10_000_000.0], ids=["delivered", "clamped"])
async def test_socket_heard_is_what_the_client_received(
    http: aiohttp.ClientSession, gateway: Gateway, played_ms: float | None
) -> None:
    """Realtime pacing: what the client received before `interrupted` is what it played.
    A `played_ms` beyond it is clamped to it."""
    whole = await spoken_whole(http, gateway, TEXT)
    assert len(whole) == 2
    ws = await connect(http, gateway, pacing="realtime")
    await ws.send_json({"type": "text.append", "text": TEXT})
    await ws.send_json({"type": "context.close"})
    received = Received()
    barge_at = barge_point(whole)
    await read_until(ws, received, lambda: received_ms(received) >= barge_at)
    await ws.send_json({"type": "interrupt", "played_ms": played_ms})
    await read_until(ws, received, lambda: bool(received.of("interrupted")))
    [interrupted] = received.of("interrupted")
    got_ms = received_ms(received)
    assert whole[1]["start_ms"] < got_ms < whole[1]["end_ms"]
    assert interrupted["played_ms"] == pytest.approx(got_ms, abs=0.05)
    assert interrupted["usage"]["audio_ms"] == pytest.approx(got_ms, abs=0.05)
    marks = marks_of_turn(received.messages, whole, ENGINE_SPREAD_MS + 20)
    assert_split(interrupted, marks, got_ms, got_ms)
    await ws.close()
    await assert_charged(gateway, interrupted, whole)


def _inside(word: dict[str, Any], share: float) -> float:
    return float(word["start_ms"] + share * (word["end_ms"] - word["start_ms"]))


POSITIONS: dict[str, Callable[[list[Chunk]], float]] = {
    "word_before_its_middle": lambda c: _inside(c[0]["words"][2], 0.3),
    "word_past_its_middle": lambda c: _inside(c[0]["words"][2], 0.7),
    "between_words": lambda c: float(c[0]["words"][3]["end_ms"]),
    "first_chunk_trailing_pause": lambda c: (c[0]["words"][-1]["end_ms"] + c[0]["end_ms"]) / 2,
    "second_chunk_leading_pause": lambda c: (c[1]["start_ms"] + c[1]["words"][0]["start_ms"]) / 2,
    "second_chunk_first_word": lambda c: _inside(c[1]["words"][0], 0.8),
    "second_chunk_last_word": lambda c: _inside(c[1]["words"][-1], 0.6),
}


@pytest.mark.parametrize("where", POSITIONS)
async def test_socket_heard_at_the_clients_played_ms(
    http: aiohttp.ClientSession, gateway: Gateway, where: str
) -> None:
    """All the turn delivered (fast pacing, the context left open), the client says how far
    it played: heard is split there by the marks it was given; the charge is all of it."""
    ws = await connect(http, gateway, pacing="fast")
    await ws.send_json({"type": "text.append", "text": TEXT})
    await ws.send_json({"type": "text.flush"})
    received = await receive_until(ws, "chunk.ended", Received(), count=2)
    chunks = received.of("chunk.ended")
    position = POSITIONS[where](chunks)
    await ws.send_json({"type": "interrupt", "played_ms": position})
    await receive_until(ws, "interrupted", received)
    [interrupted] = received.of("interrupted")
    delivered = received_ms(received)
    assert delivered == pytest.approx(chunks[-1]["end_ms"], abs=0.05)
    assert interrupted["played_ms"] == position
    assert_split(interrupted, chunks, position, delivered)
    expected = {
        "word_before_its_middle": "Sure, your ",
        "word_past_its_middle": "Sure, your order ",
        "between_words": "Sure, your order shipped ",
        "first_chunk_trailing_pause": FIRST,
        "second_chunk_leading_pause": FIRST,
        "second_chunk_first_word": FIRST + "It ",
        "second_chunk_last_word": TEXT,
    }[where]
    assert interrupted["heard"] == expected
    await ws.close()
    await assert_charged(gateway, interrupted)


# -- WebRTC -----------------------------------------------------------------------------


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda **_: ["127.0.0.1"])


class Peer:
    """A receiving aiortc peer that keeps every RTP payload it gets, and decodes them."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.pc.addTransceiver("audio", direction="recvonly")
        self.payloads: list[bytes] = []
        self.decoded_samples = 0
        self._reader: asyncio.Task[None] | None = None
        receiver = self.pc.getReceivers()[0]
        handle = receiver._handle_rtp_packet

        async def recorded(packet: Any, arrival_time_ms: int) -> None:
            self.payloads.append(bytes(packet.payload))
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = recorded  # type: ignore[method-assign]
        self.pc.on("track", self._on_track)

    def _on_track(self, track: Any) -> None:
        self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: Any) -> None:
        while True:
            frame = await track.recv()
            self.decoded_samples += frame.samples

    def speech_packets(self) -> int:
        """Packets that carry audio: neither the constant silence frame nor a DTX frame."""
        return sum(1 for p in self.payloads if p != OPUS_SILENCE and len(p) > 2)

    def quiet_after_speech(self) -> bool:
        last = max((i for i, p in enumerate(self.payloads) if p != OPUS_SILENCE), default=-1)
        return self.speech_packets() > 0 and any(
            p == OPUS_SILENCE for p in self.payloads[last + 1 :]
        )

    async def close(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()


async def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.usefixtures("loopback_only")
async def test_webrtc_heard_is_what_the_peer_received(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    """Without `played_ms`, the track's position decides: every 20 ms packet of speech the
    peer got, and nothing it did not. The track passes the upstream's Opus through, so the
    reference is spoken the same way (a chunk then ends on a whole 20 ms packet, which the
    engine's few ms of spread can move by one)."""
    whole = await spoken_whole(http, gateway, TEXT, output_format={"encoding": "opus"})
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    ws = await http.ws_connect(gateway.ws_url, headers=headers)
    received = await receive_until(ws, "session.created", Received())
    session_id = received.of("session.created")[0]["session_id"]
    peer = Peer()
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    response = await http.post(
        f"{gateway.url}/v1/sessions/{session_id}/whep",
        data=peer.pc.localDescription.sdp,
        headers={**headers, "Content-Type": "application/sdp"},
    )
    assert response.status == 201, await response.text()
    await peer.pc.setRemoteDescription(RTCSessionDescription(await response.text(), "answer"))
    await wait_for(lambda: peer.pc.connectionState == "connected")
    await ws.send_json({"type": "text.append", "text": TEXT})
    await ws.send_json({"type": "context.close"})
    barge_packets = int(barge_point(whole) / 20) + 1
    await wait_for(lambda: peer.speech_packets() >= barge_packets)
    await ws.send_json({"type": "interrupt"})
    await receive_until(ws, "interrupted", received)
    [interrupted] = received.of("interrupted")
    await wait_for(peer.quiet_after_speech)  # the packets on their way are in
    got_ms = 20.0 * peer.speech_packets()
    assert whole[1]["start_ms"] < got_ms < whole[1]["end_ms"]
    assert peer.decoded_samples > 0
    assert not received.frames  # the audio went to the peer
    assert interrupted["played_ms"] == pytest.approx(got_ms, abs=0.05)
    assert_split(interrupted, marks_of_turn(received.messages, whole), got_ms, got_ms)
    await peer.close()
    await ws.close()
    await assert_charged(gateway, interrupted, whole)


# -- telephony --------------------------------------------------------------------------


@asynccontextmanager
async def phone_call(
    provider: str,
    http: aiohttp.ClientSession,
    gateway: Gateway,
    session_id: str,
    token: str,
    *,
    via_port: int | None = None,
) -> AsyncIterator[Any]:
    """A call of ``provider`` attached to the session, as the provider opens its stream
    (through the local port ``via_port``, a relay, if given)."""
    url = stream_url(gateway, provider)
    if via_port is not None:
        url = f"ws://127.0.0.1:{via_port}/v1/telephony/{provider}"
    call: Any
    if provider in ("twilio", "telnyx"):
        kind = TwilioCall if provider == "twilio" else TelnyxCall
        params = {"session_id": session_id, "token": token}
        async with kind.connect(
            http, url, custom_parameters=params, send_caller_audio=False
        ) as call:
            yield call
    elif provider == "plivo":
        headers = f"sessionId={session_id};token={token}"
        async with PlivoCall.connect(
            http, url, extra_headers=headers, send_caller_audio=False
        ) as call:
            yield call
    else:
        endpoint = {"session_id": session_id, "token": token}
        async with VonageCall.connect(http, url, headers=endpoint, send_caller_audio=False) as call:
            yield call


def marks_of(call: Any) -> tuple[list[Any], list[Any]]:
    """The marks the gateway sent on the call, and those the phone echoed: each provider
    names them its own way (mark, checkpoint, notify)."""
    for sent, echoed in (
        ("marks_received", "marks_echoed"),
        ("checkpoints_received", "checkpoints_echoed"),
        ("notifies_received", "notifies_echoed"),
    ):
        if hasattr(call, sent):
            return getattr(call, sent), getattr(call, echoed)
    raise AssertionError(f"{type(call).__name__} keeps no marks")


async def barge_in(agent: Any, call: Any) -> tuple[float, dict[str, Any]]:
    """The agent interrupts: what the phone had played when the clear reached it, and the
    ``interrupted`` the agent got."""
    await agent.ws.send_json({"type": "interrupt"})
    await call.wait_for(lambda: call.clears, timeout=5)
    phone_ms: float = call.played_ms()  # it stopped at the clear
    interrupted: dict[str, Any] = await agent.wait("interrupted")
    assert not call.protocol_errors
    return phone_ms, interrupted


@pytest.mark.parametrize("provider", ["twilio", "telnyx", "plivo", "vonage"])
async def test_call_heard_follows_the_echoed_marks_and_what_the_phone_played(
    http: aiohttp.ClientSession, gateway: Gateway, provider: str
) -> None:
    """The phone echoed the mark at the end of the first chunk, then had nothing to play
    for a while; the second chunk plays, and the caller barges in before its first mark
    comes back. Heard is at least the echoed mark, at most what the phone had played
    when the clear reached it (the time since the echo is not all playing time), and
    split there by the marks."""
    whole = await spoken_whole(http, gateway, FIRST, SECOND)
    agent, token = await open_agent(http, gateway)
    async with phone_call(provider, http, gateway, agent.session_id, token) as call:
        sent, echoed = marks_of(call)
        await agent.wait("telephony.attached")
        await agent.say(FIRST, close=False)
        await agent.wait("chunk.ended")
        first_end = whole[0]["end_ms"]
        await call.wait_for(
            lambda: call.played_ms() >= first_end - 40 and sent and len(echoed) == len(sent),
            timeout=30,
        )
        echoed_ms = call.played_ms()  # the last mark was echoed once all before it played
        await asyncio.sleep(1.0)  # the phone has nothing to play meanwhile
        assert call.played_ms() == echoed_ms
        await agent.say(SECOND, close=False)
        marks_before = len(echoed)
        await call.wait_for(lambda: call.played_ms() >= echoed_ms + 300, timeout=30)
        assert len(echoed) == marks_before  # none echoed in the second chunk yet
        phone_ms, interrupted = await barge_in(agent, call)
    await agent.close()
    position = interrupted["played_ms"]
    # The gateway counts a stretch from when it sent it, the phone from when it got it; the
    # clear comes as late, unless the fake's loop, on a loaded machine, takes it later.
    assert echoed_ms <= position <= phone_ms + 25
    assert_split(interrupted, marks_of_turn(agent.messages, whole), position, position)
    await assert_charged(gateway, interrupted, whole)


@pytest.mark.parametrize("provider", ["twilio", "telnyx", "plivo", "vonage"])
async def test_call_heard_counts_the_round_trip_to_the_provider(
    http: aiohttp.ClientSession, gateway: Gateway, provider: str
) -> None:
    """60 ms each way between the gateway and the provider, over a relay that holds every
    byte that long. The caller barges in while a turn plays, marks echoed all along: what
    the phone played until the clear reached it is what counts as heard, though the last
    echo left the phone a round trip before the clear arrived there."""
    host, port = gateway.url.removeprefix("http://").split(":")
    agent, token = await open_agent(http, gateway)
    async with (
        DelayProxy(host, int(port), ONE_WAY_S) as relay,
        phone_call(provider, http, gateway, agent.session_id, token, via_port=relay.port) as call,
    ):
        _, echoed = marks_of(call)
        await agent.wait("telephony.attached")
        await agent.say(LONG, close=False)
        await call.wait_for(lambda: call.played_ms() > 2300 and len(echoed) >= 3, timeout=30)
        phone_ms, interrupted = await barge_in(agent, call)
    await agent.close()
    # The relay's own pace and the loop's wake-ups blur it by a frame or so, no more.
    assert abs(interrupted["played_ms"] - phone_ms) < 25, (interrupted["played_ms"], phone_ms)
    assert LONG.startswith(interrupted["heard"])
    # The operator sees the round trips the gateway timed: each at least the relay's two ways.
    scraped = await (await http.get(f"{gateway.url}/metrics")).text()
    count = float(re.search(r"^voxgate_call_round_trip_seconds_count (\S+)$", scraped, re.M)[1])
    total = float(re.search(r"^voxgate_call_round_trip_seconds_sum (\S+)$", scraped, re.M)[1])
    assert count >= 1
    assert total / count >= 2 * ONE_WAY_S


async def test_heard_keeps_the_space_the_text_had_across_a_flush(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    ws = await connect(http, gateway, pacing="fast")
    received = Received()
    for text in ("Good morning. ", "It is sunny today, and warm."):
        await ws.send_json({"type": "text.append", "text": text})
        await ws.send_json({"type": "text.flush"})
    letters = "Goodmorning.Itissunnytoday,andwarm."
    await read_until(ws, received, lambda: spoken_letters(received) == letters)
    await ws.send_json({"type": "interrupt", "played_ms": 99999})
    await read_until(ws, received, lambda: bool(received.of("interrupted")))
    interrupted = received.of("interrupted")[0]
    assert (interrupted["heard"], interrupted["unheard"]) == (
        "Good morning. It is sunny today, and warm.",
        "",
    )
    # Charged as ever: each chunk without the whitespace around it.
    spoken = [c["text"] for c in received.of("chunk.ended")]
    assert interrupted["usage"]["characters"] == sum(len(text.strip()) for text in spoken)
    assert "".join(spoken) == "Good morning. It is sunny today, and warm."
    await ws.close()
