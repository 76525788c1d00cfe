"""Nodes of a cluster behind haproxy: one that stalls past its lease, tokens across nodes.

A node stopped (SIGSTOP) past its lease is reaped by a survivor, which refunds its holds and
marks its sessions lost; on waking, the node learns from its first lease renewal that it
was taken for dead, ends those sessions with ``session_lost`` (they are no longer its to
charge), and joins the cluster again. A client token is spent once, whichever node
redeems it.
"""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import pytest

from tests import cluster_harness
from tests.cluster_harness import ClusterUnderTest
from tests.gateway_harness import Received, receive_until
from tests.telephony_agent import LONG

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(180)]

running_cluster = cluster_harness.running_cluster
cluster = cluster_harness.cluster
http = cluster_harness.http


async def test_a_stalled_node_reaped_by_a_peer_ends_its_sessions_as_lost_when_it_wakes(
    cluster: ClusterUnderTest, http: aiohttp.ClientSession
) -> None:
    key = await cluster.new_key(max_sessions=1)
    socket = await cluster.open_socket(http, key)
    await socket.ws.send_json(
        {
            "type": "session.update",
            "pacing": "realtime",
            "output_format": {"encoding": "pcm_s16le", "sample_rate": 24000},
        }
    )
    await socket.ws.send_json({"type": "text.append", "text": LONG})
    await socket.ws.send_json({"type": "context.close"})
    await receive_until(socket.ws, "chunk.started", socket.received, timeout=30)
    node = cluster.local.node(socket.node)
    assert node.process is not None
    os.kill(node.process.pid, signal.SIGSTOP)
    try:
        # A survivor takes the stalled node for dead and gives back what it held.
        async with asyncio.timeout(20):
            while (await cluster.balance(key.account_id)).held:
                await asyncio.sleep(0.2)
        # The key's slot is free across the cluster while the node sleeps (once the
        # balancer, too, has stopped sending sockets to it).
        balancer = cluster.local.balancer
        assert balancer is not None
        assert await asyncio.to_thread(balancer.wait_states, {socket.node: "DOWN"}, 15)
        async with http.ws_connect(cluster.ws_url, headers=key.headers) as other:
            created = await receive_until(other, "session.created", Received(), timeout=10)
            assert created.of("session.created")
    finally:
        os.kill(node.process.pid, signal.SIGCONT)

    # Awake, the node ends the session it no longer owns: lost, not charged here.
    await receive_until(socket.ws, "error", socket.received, timeout=15)
    errors = [e for e in socket.received.of("error") if e["code"] == "session_lost"]
    assert errors, socket.received.messages
    assert errors[0]["fatal"] is True
    message = await socket.ws.receive(timeout=10)
    assert message.type is aiohttp.WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.INTERNAL_ERROR

    # Nothing it did after waking was charged or left held; and it serves again.
    await asyncio.sleep(1.0)
    balance = await cluster.balance(key.account_id)
    assert balance.held == 0, balance
    assert balance.committed == 0, "the reaped session's audio is not charged"
    assert balance.credited - balance.available == balance.committed
    again = await cluster.open_socket(http, key)
    await again.ws.close()
    # The reaping shows on the survivor that did it.
    reaped = await cluster.metric(http, "voxgate_nodes_reaped_total")
    assert reaped[socket.node] == 0
    assert sum(reaped.values()) >= 1, reaped
    lost = await cluster.metric(http, "voxgate_sessions_reaped_total")
    assert sum(lost.values()) >= 1, lost


async def test_a_client_token_is_redeemed_once_whichever_node_each_try_lands_on(
    cluster: ClusterUnderTest, http: aiohttp.ClientSession
) -> None:
    key = await cluster.new_key()
    async with http.post(
        f"{cluster.url}/v1/client_tokens", headers=key.headers, json={"ttl_s": 60}
    ) as minted:
        assert minted.status == 200, await minted.text()
        token = (await minted.json())["data"]["token"]
    outcomes = []
    nodes = []
    for _ in range(len(cluster.node_names)):  # round robin: one try on every node
        async with http.ws_connect(cluster.ws_url) as ws:
            nodes.append(cluster.entries.last)
            await ws.send_json({"type": "auth", "token": token})
            message = await ws.receive(timeout=10)
            assert message.type is aiohttp.WSMsgType.TEXT, message
            body = message.json()
            outcomes.append(body["type"] if body["type"] != "error" else body["code"])
    assert sorted(nodes) == sorted(cluster.node_names)
    assert outcomes == ["session.created", "token_used", "token_used"]
