"""Several nodes behind haproxy on one Redis, as a client sees them through the balancer.

Three real ``voxgate serve`` processes and a real haproxy (``tests/cluster_harness.py``).
Sockets land on whichever node the balancer picks; what belongs to a session owned by
another node (a WHEP attach, a call leg, a resume) must reach its owner; the per-key
session limit holds across the nodes; a node killed -9 leaves nothing held. After each
test the ledger is exact: what was committed is what the sessions reported.
"""

from __future__ import annotations

import aiohttp
import pytest

from tests import cluster_harness
from tests.cluster_harness import ClusterUnderTest, Socket
from tests.gateway_harness import receive_until

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(180)]

TURNS = [
    "Your order shipped on Monday and arrives on Thursday.",
    "The table by the window is free at seven tonight.",
    "Your appointment moved to half past ten tomorrow.",
    "The refund reached your card this morning.",
    "Platform four, the train leaves in six minutes.",
    "Your parcel is waiting at the shop on the corner.",
]
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
