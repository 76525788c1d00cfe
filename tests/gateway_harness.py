"""A real gateway on a loopback port, in the test's event loop, for integration tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import Target
from voxgate.config import Settings
from voxgate.gateway.app import create_gateway_app
from voxgate.gateway.protocol import unpack_audio_frame
from voxgate.gateway.services import Services
from voxgate.upstream import UpstreamConfig


@dataclass
class Gateway:
    url: str
    services: Services
    api_key: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/v1/realtime"


@asynccontextmanager
async def running_gateway(target: Target, **overrides: Any) -> AsyncIterator[Gateway]:
    """The gateway, its upstream the test run's engine (or the real API), on a free port."""
    api_keys = overrides.pop("api_keys", ("vg_test_key_0123456789abcdef:1000000",))
    settings = Settings(
        upstream=UpstreamConfig(base_url=target.base_url, api_key=target.api_key),
        api_keys=api_keys,
        **overrides,
    )
    services = await Services.start(settings)
    runner = web.AppRunner(create_gateway_app(services), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        key = api_keys[0].rsplit(":", 1)[0] if api_keys else services.dev_api_key or ""
        yield Gateway(f"http://127.0.0.1:{port}", services, key)
    finally:
        await runner.cleanup()
        await services.aclose()


@dataclass
class Received:
    messages: list[dict[str, Any]] = field(default_factory=list)
    frames: list[tuple[str, str, int, int, bytes]] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def audio(self, context_id: str = "default") -> bytes:
        return b"".join(f[4] for f in self.frames if f[1] == context_id)


async def receive_until(
    ws: aiohttp.ClientWebSocketResponse,
    kind: str,
    received: Received,
    *,
    count: int = 1,
    timeout: float = 30,
) -> Received:
    """Read messages and binary frames until ``count`` messages of ``kind`` arrived."""
    async with asyncio.timeout(timeout):
        while len(received.of(kind)) < count:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                received.messages.append(json.loads(msg.data))
            elif msg.type is aiohttp.WSMsgType.BINARY:
                received.frames.append(unpack_audio_frame(msg.data))
            else:
                raise AssertionError(f"socket ended: {msg.type} {msg.data!r} {msg.extra!r}")
    return received
