"""`voxgate serve --workers 2`: one port, two processes, WHEP reaching the session's owner."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest
import redis.asyncio

from tests.gateway_harness import Received, receive_until
from tests.integration.test_serve import free_port, wait_ready
from tests.integration.test_whep import Listener, post_offer, wait_for

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(180)]

KEY = "vg_workers_key_0123456789"


@pytest.fixture
def two_workers(redis_url: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voxgate",
            "serve",
            "--workers",
            "2",
            "--port",
            str(port),
            "--redis-url",
            redis_url,
            "--api-key",
            f"{KEY}:1000000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "VOXGATE_MAX_SESSIONS_PER_KEY": "100"},
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.returncode == 0


async def test_whep_reaches_the_worker_that_owns_the_session(
    two_workers: str, redis_url: str
) -> None:
    url = two_workers
    await wait_ready(url)
    headers = {"Authorization": f"Bearer {KEY}"}
    store = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)

    async def owner_of(session_id: str) -> str:
        # The cluster's record of the session: which node (worker) holds it.
        node = await store.hget(f"voxgate:cluster:session:{{{session_id}}}", "node")
        assert node, f"session {session_id} has no owner on record"
        return str(node)

    async with aiohttp.ClientSession() as http, store:
        sockets: dict[str, tuple[aiohttp.ClientWebSocketResponse, Received]] = {}
        # The kernel spreads connections over the workers that listen; on a busy machine
        # the second may still be starting, so keep trying for a while.
        for _ in range(200):
            ws = await http.ws_connect(url.replace("http", "ws") + "/v1/realtime", headers=headers)
            received = await receive_until(ws, "session.created", Received())
            session_id = received.of("session.created")[0]["session_id"]
            owner = await owner_of(session_id)
            if owner in sockets:
                await ws.close()
                await asyncio.sleep(0.1)
                continue
            sockets[owner] = (ws, received)
            if len(sockets) == 2:
                break
        assert len(sockets) == 2

        for owner, (ws, received) in sockets.items():
            session_id = received.of("session.created")[0]["session_id"]
            # Several offers: each lands on either worker, and must reach the owner.
            for _ in range(4):
                probe = Listener()
                answer = await post_offer(
                    http, f"{url}/v1/sessions/{session_id}/whep", await probe.offer(), KEY
                )
                assert answer.status == 201, await answer.text()
                location = answer.headers["Location"]
                assert location.split("/")[-1].startswith(owner + ".")
                deleted = await http.delete(f"{url}{location}", headers=headers)
                assert deleted.status == 200
                await probe.close()
            listener = Listener()
            answer = await post_offer(
                http, f"{url}/v1/sessions/{session_id}/whep", await listener.offer(), KEY
            )
            await listener.answer(await answer.text())
            pc = listener.pc
            await wait_for(lambda pc=pc: pc.connectionState == "connected")
            await ws.send_json({"type": "text.append", "text": "Served by my own worker."})
            await ws.send_json({"type": "context.close"})
            await receive_until(ws, "context.done", received, timeout=30)
            await asyncio.sleep(1.0)
            assert sum(e > 0.01 for e in listener.energy_since(0)) > 10
            await listener.close()
            await ws.close()
