"""`voxgate serve` as an operator runs it: a real process, its defaults, and SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest

from tests.gateway_harness import Received, receive_until

pytestmark = pytest.mark.engine_only

KEY = "vg_serve_key_0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voxgate",
            "serve",
            "--port",
            str(port),
            "--api-key",
            f"{KEY}:100000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"VOXGATE_DRAIN_TIMEOUT": "20", "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


async def wait_ready(url: str) -> None:
    async with asyncio.timeout(30), aiohttp.ClientSession() as http:
        while True:
            try:
                if (await http.get(f"{url}/readyz")).status == 200:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def test_sigterm_lets_the_live_turn_finish_then_closes_with_1001(
    served: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = served
    await wait_ready(url)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            url.replace("http", "ws") + "/v1/realtime", headers={"Authorization": f"Bearer {KEY}"}
        )
        received = await receive_until(ws, "session.created", Received())
        await ws.send_json({"type": "session.update", "pacing": "realtime"})
        await ws.send_json(
            {
                "type": "text.append",
                "text": "This turn is still playing while "
                "the operator stops the server, and it must finish.",
            }
        )
        await ws.send_json({"type": "context.close"})
        await receive_until(ws, "chunk.started", received)
        process.send_signal(signal.SIGTERM)
        # Draining: no new sessions.
        refused = await http.get(f"{url}/readyz")
        assert refused.status == 503
        await receive_until(ws, "context.done", received, timeout=20)
        close = await ws.receive()
        assert close.type is aiohttp.WSMsgType.CLOSE
        assert close.data == 1001
    assert process.wait(timeout=20) == 0
    output = process.stdout.read() if process.stdout else ""
    assert KEY not in output  # a configured key is never printed
    ended = received.of("chunk.ended")
    assert ended[-1]["text"].endswith("must finish.")


async def test_defaults_print_a_dev_key_and_the_demo_url() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "voxgate", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert f"http://localhost:{port}/" in output
    assert "vg_dev_" in output
    assert "embedded engine" in output
    assert process.returncode == 0


def test_help_config_lists_every_setting() -> None:
    from voxgate.config import SETTINGS

    done = subprocess.run(
        [sys.executable, "-m", "voxgate", "serve", "--help-config"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    for setting in SETTINGS:
        assert setting.env in done.stdout
