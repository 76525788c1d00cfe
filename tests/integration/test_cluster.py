"""Several nodes behind haproxy on one Redis, as a client sees them through the balancer.

Three real ``voxgate serve`` processes and a real haproxy (``tests/cluster_harness.py``).
Sockets land on whichever node the balancer picks; what belongs to a session owned by
another node (a WHEP attach, a call leg, a resume) must reach its owner; the per-key
session limit holds across the nodes; a node killed -9 leaves nothing held. After each
test the ledger is exact: what was committed is what the sessions reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from socket import SHUT_RDWR

import aiohttp
import numpy as np
import pytest

from tests import cluster_harness
from tests.cluster_harness import ClusterUnderTest, Key, Socket
from tests.fakes.twilio_call import TwilioCall
from tests.gateway_harness import Received, receive_until
from tests.integration.test_whep import Listener, post_offer, wait_for
from tests.telephony_agent import LONG, SHORT, Agent
from voxgate.gateway.protocol import unpack_audio_frame

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(180)]

TURNS = [
    "Your order shipped on Monday and arrives on Thursday.",
    "The table by the window is free at seven tonight.",
    "Your appointment moved to half past ten tomorrow.",
    "The refund reached your card this morning.",
    "Platform four, the train leaves in six minutes.",
    "Your parcel is waiting at the shop on the corner.",
]
# About 9 s of speech.
ANSWER = (
    "I can help you with that booking right away. "
    "We have a table by the window at seven, or one on the terrace at half past eight."
)
PCM = {"encoding": "pcm_s16le", "sample_rate": 24000}

# The harness's fixtures, for the tests of this module.
running_cluster = cluster_harness.running_cluster
cluster = cluster_harness.cluster
http = cluster_harness.http


async def speak(socket: Socket, text: str, *, pacing: str = "fast") -> None:
    await socket.ws.send_json({"type": "session.update", "pacing": pacing, "output_format": PCM})
    await socket.ws.send_json({"type": "text.append", "text": text})
    await socket.ws.send_json({"type": "context.close"})


def heard_characters(socket: Socket) -> int:
    """What the session charged, checked against the text of the chunks it played."""
    done = socket.received.of("context.done")[-1]
    ended = socket.received.of("chunk.ended")
    assert done["usage"]["characters"] == sum(len(e["text"].strip()) for e in ended)
    characters: int = done["usage"]["characters"]
    return characters


async def test_turns_spread_over_the_nodes_are_metered_exactly(
    cluster: ClusterUnderTest, http: aiohttp.ClientSession
) -> None:
    key = await cluster.new_key()
    sockets = [await cluster.open_socket(http, key) for _ in TURNS]
    # Round robin: each node took two of the six sockets.
    assert sorted(s.node for s in sockets) == sorted(cluster.node_names * 2)
    for socket, text in zip(sockets, TURNS, strict=True):
        await speak(socket, text)
    charged = 0
    for socket, text in zip(sockets, TURNS, strict=True):
        await receive_until(socket.ws, "context.done", socket.received, timeout=30)
        assert "".join(e["text"] for e in socket.received.of("chunk.ended")).strip() == text
        spoken_ms = socket.received.of("chunk.ended")[-1]["end_ms"]
        # All of the turn's audio came back on the socket that asked for it.
        assert abs(len(socket.received.audio()) / 48 - spoken_ms) < 25
        charged += heard_characters(socket)
    assert charged == sum(len(t) for t in TURNS)
    for socket in sockets:
        await socket.ws.close()
    await cluster.assert_ledger_exact({key.account_id: charged})


async def test_whep_through_the_balancer_reaches_the_owner_and_plays(
    cluster: ClusterUnderTest, http: aiohttp.ClientSession
) -> None:
    key = await cluster.new_key()
    socket = await cluster.open_socket(http, key)
    whep = f"{cluster.url}/v1/sessions/{socket.session_id}/whep"
    listener = Listener()
    answer = await post_offer(http, whep, await listener.offer(), key.plain)
    entered = cluster.entries.last
    assert entered != socket.node  # round robin: the offer went to another node
    assert answer.status == 201, await answer.text()
    assert answer.headers["Content-Type"] == "application/sdp"
    location = answer.headers["Location"]
    await listener.answer(await answer.text())
    await wait_for(lambda: listener.pc.connectionState == "connected")
    # The peer is the owner's: media flows from the node that holds the session.
    peers = await cluster.metric(http, "voxgate_webrtc_peers")
    assert peers == {**dict.fromkeys(cluster.node_names, 0.0), socket.node: 1.0}

    await socket.ws.send_json({"type": "text.append", "text": TURNS[0]})
    await socket.ws.send_json({"type": "context.close"})
    await receive_until(socket.ws, "context.done", socket.received, timeout=30)
    assert not socket.received.frames  # the audio went over WebRTC, not the socket
    spoken_ms = socket.received.of("chunk.ended")[-1]["end_ms"]
    await wait_for(lambda: sum(e > 0.01 for e in listener.energy_since(0)) * 20 > 0.5 * spoken_ms)
    charged = heard_characters(socket)
    assert charged == len(TURNS[0])

    # The resource's PATCH and DELETE reach the owner too, from whichever node takes them.
    patch = await http.patch(f"{cluster.url}{location}", headers=key.headers)
    assert cluster.entries.last not in (socket.node, entered)
    assert patch.status == 405
    await http.get(f"{cluster.url}/healthz")  # round robin: the DELETE goes to another node
    deleted = await http.delete(f"{cluster.url}{location}", headers=key.headers)
    assert cluster.entries.last != socket.node
    assert deleted.status == 200
    await wait_for(lambda: listener.pc.connectionState in ("closed", "failed"), timeout=15)
    await listener.close()
    # The audio is the socket's again.
    await socket.ws.send_json({"type": "text.append", "text": TURNS[1], "context_id": "t2"})
    await socket.ws.send_json({"type": "context.close", "context_id": "t2"})
    await receive_until(socket.ws, "context.done", socket.received, count=2, timeout=30)
    assert socket.received.audio("t2")
    charged += socket.received.of("context.done")[-1]["usage"]["characters"]
    await socket.ws.close()
    await cluster.assert_ledger_exact({key.account_id: charged})


async def test_the_session_limit_holds_across_the_nodes(
    cluster: ClusterUnderTest, http: aiohttp.ClientSession
) -> None:
    key = await cluster.new_key(max_sessions=2)
    first = await cluster.open_socket(http, key)
    second = await cluster.open_socket(http, key)
    assert first.node != second.node
    # One socket more is refused on every node, including the one holding neither.
    refused_on = set()
    for _ in cluster.node_names:
        ws = await http.ws_connect(cluster.ws_url, headers=key.headers)
        refused_on.add(cluster.entries.last)
        message = await ws.receive_json(timeout=10)
        assert message["type"] == "error", message
        assert (message["code"], message["fatal"]) == ("too_many_sessions", True)
        close = await ws.receive(timeout=10)
        assert close.type is aiohttp.WSMsgType.CLOSE
        assert close.data == 1008
    assert refused_on == set(cluster.node_names)
    # A session that ends gives its slot back to the whole cluster.
    await first.ws.close()
    async with asyncio.timeout(10):
        while True:
            ws = await http.ws_connect(cluster.ws_url, headers=key.headers)
            message = await ws.receive_json(timeout=10)
            if message["type"] == "session.created":
                break
            assert message["code"] == "too_many_sessions", message
            await ws.close()
            await asyncio.sleep(0.1)
    await ws.close()
    await second.ws.close()


async def receive_frames(socket: Socket, count: int) -> None:
    """Read the socket until ``count`` audio frames have come."""
    async with asyncio.timeout(30):
        while len(socket.received.frames) < count:
            msg = await socket.ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                socket.received.messages.append(msg.json())
            else:
                assert msg.type is aiohttp.WSMsgType.BINARY, msg
                socket.received.frames.append(unpack_audio_frame(msg.data))


def drop(socket: Socket) -> None:
    """End the client's TCP connection without a WebSocket close: a network drop."""
    raw = socket.ws.get_extra_info("socket")
    assert raw is not None
    raw.shutdown(SHUT_RDWR)


async def resume(
    http: aiohttp.ClientSession,
    cluster: ClusterUnderTest,
    key: Key,
    socket: Socket,
    last_seq: int,
) -> tuple[aiohttp.ClientWebSocketResponse, Received]:
    """A new socket through the balancer asking for ``socket``'s session after ``last_seq``;
    the answer (``session.resumed`` or an ``error``) is the last of its messages.

    Asked again while the owner has not yet seen the old socket drop (``session_attached``).
    """
    ws = await http.ws_connect(cluster.ws_url, headers=key.headers)
    received = await receive_until(ws, "session.created", Received())
    ask = {
        "type": "session.resume",
        "session_id": socket.session_id,
        "resume_token": socket.created["resume_token"],
        "last_seq": last_seq,
    }
    async with asyncio.timeout(10):
        while True:
            await ws.send_json(ask)
            while received.messages[-1]["type"] not in ("session.resumed", "error"):
                msg = await ws.receive()
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
                received.messages.append(msg.json())
            if received.messages[-1].get("code") != "session_attached":
                return ws, received
            received.messages.append({"type": "asked again"})
            await asyncio.sleep(0.1)


async def test_a_node_killed_mid_turn_leaves_nothing_held_and_its_session_lost(
    cluster: ClusterUnderTest, http: aiohttp.ClientSession
) -> None:
    key = await cluster.new_key(max_sessions=1)
    socket = await cluster.open_socket(http, key)
    await speak(socket, LONG, pacing="realtime")
    await receive_until(socket.ws, "chunk.ended", socket.received, timeout=30)
    last_seq = socket.received.frames[-1][2]
    killed_at = time.monotonic()
    cluster.local.kill(socket.node)
    with contextlib.suppress(AssertionError, TimeoutError):
        await receive_until(socket.ws, "never", socket.received, timeout=10)
    assert socket.ws.closed  # the client saw its socket end

    # Within the lease and a reaper's round, a survivor gave back what the dead node held.
    async with asyncio.timeout(20):
        while (await cluster.balance(key.account_id)).held:
            await asyncio.sleep(0.2)
    assert time.monotonic() - killed_at <= 10, "held credits outlived the node by over 10 s"
    await asyncio.sleep(max(0.0, 20 - (time.monotonic() - killed_at)))
    balance = await cluster.balance(key.account_id)
    assert balance.held == 0, balance
    # Charged: whole chunks, in order, of those the client saw start; what the dead node
    # had not settled is not charged.
    costs = [len(s["text"].strip()) for s in socket.received.of("chunk.started")]
    assert balance.committed in list(itertools.accumulate(costs, initial=0)), balance
    await cluster.assert_ledger_exact({key.account_id: balance.committed}, within_s=0)

    # Its session is gone for good, on whichever node the resume lands.
    ws, received = await resume(http, cluster, key, socket, last_seq)
    await receive_until(ws, "error", received, timeout=10)
    assert received.of("error")[0]["code"] == "session_lost", received.messages
    await ws.close()
    # And the key's slot is free again across the cluster.
    fresh = await cluster.open_socket(http, key)
    await fresh.ws.close()


async def test_a_resume_through_the_balancer_lands_on_another_node_and_goes_on(
    cluster: ClusterUnderTest, http: aiohttp.ClientSession
) -> None:
    # One session at a time: the dropped session holds the slot, and the node the new
    # socket reaches learns from Redis that it waits for a resume.
    key = await cluster.new_key(max_sessions=1)
    socket = await cluster.open_socket(http, key)
    await speak(socket, ANSWER, pacing="realtime")
    await receive_frames(socket, 25)
    before = list(socket.received.frames)
    last_seq = before[-1][2]
    drop(socket)
    ws, received = await resume(http, cluster, key, socket, last_seq)
    assert cluster.entries.last != socket.node  # another node took the new socket
    await receive_until(ws, "session.resumed", received, timeout=10)
    await receive_until(ws, "context.done", received, timeout=60)
    after = received.frames
    assert after, "no audio after the resume"
    frames = before + after
    # Seq by seq: from 0 on, the first frame after the resume is last_seq + 1, none missing,
    # none twice, and the timestamps run on without a gap.
    assert [f[2] for f in frames] == list(range(len(frames)))
    for previous, frame in itertools.pairwise(frames):
        assert frame[3] == previous[3] + len(previous[4]) // 2
    spoken_ms = received.of("chunk.ended")[-1]["end_ms"]
    assert abs(sum(len(f[4]) for f in frames) / 48 - spoken_ms) < 25
    charged: int = received.of("context.done")[0]["usage"]["characters"]
    # Charged: the text of every chunk, whichever socket its events went to.
    ended = {e["chunk_index"]: e["text"] for e in socket.received.of("chunk.ended")}
    ended.update({e["chunk_index"]: e["text"] for e in received.of("chunk.ended")})
    assert "".join(ended[i] for i in sorted(ended)).strip() == ANSWER
    assert charged == sum(len(text.strip()) for text in ended.values())
    await ws.close()
    await cluster.assert_ledger_exact({key.account_id: charged})


async def test_a_call_through_the_balancer_reaches_the_session_on_another_node(
    cluster: ClusterUnderTest, http: aiohttp.ClientSession
) -> None:
    key = await cluster.new_key()
    socket = await cluster.open_socket(http, key)
    minted = await http.post(
        f"{cluster.url}/v1/client_tokens",
        headers=key.headers,
        json={"session_id": socket.session_id},
    )
    assert minted.status == 200, await minted.text()
    token = (await minted.json())["data"]["token"]
    agent = Agent(socket.ws, socket.session_id)
    params = {"session_id": socket.session_id, "token": token}
    stream = cluster.url.replace("http", "ws", 1) + "/v1/telephony/twilio"
    async with TwilioCall.connect(http, stream, custom_parameters=params) as call:
        assert cluster.entries.last != socket.node  # the stream landed on another node
        attached = await agent.wait("telephony.attached")
        assert (attached["provider"], attached["stream_id"]) == (
            "twilio",
            call.stream_sid,
        )
        await agent.say(SHORT)
        done = await agent.wait("context.done")
        spoken_ms = agent.spoken_ms()
        await call.wait_for(lambda: call.played_ms() >= spoken_ms - 40, timeout=10)
        assert not call.protocol_errors
        assert not agent.audio_frames  # the audio went to the call, not the socket
        pcm = call.played_pcm().astype(np.float32) / 32768
        assert float(np.sqrt(np.mean(pcm**2))) > 0.01
        assert call.marks_echoed
    await agent.wait("telephony.detached")
    charged: int = done["usage"]["characters"]
    assert charged == sum(len(e["text"].strip()) for e in agent.of("chunk.ended"))
    assert "".join(e["text"] for e in agent.of("chunk.ended")).strip() == SHORT
    await agent.close()
    await cluster.assert_ledger_exact({key.account_id: charged})
