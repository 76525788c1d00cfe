"""Run the embedded engine on a loopback port in a thread of its own.

For benchmarks, tests and tools that need a real Voxtral-compatible server beside them
without sharing their event loop (so their own timing is not disturbed by its work).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from voxgate.upstream.engine.accounts import DEFAULT_CREDITS, Account, Accounts
from voxgate.upstream.engine.app import API_PREFIX, EngineConfig, create_engine_app

T = TypeVar("T")


class BackgroundEngine:
    """``with BackgroundEngine() as engine: engine.base_url, engine.api_key``."""

    def __init__(self, host: str = "127.0.0.1", config: EngineConfig | None = None) -> None:
        self._host = host
        self._config = config
        self.accounts = Accounts()
        self.api_key = Accounts.generate_key()
        self.accounts.add_key(self.api_key, DEFAULT_CREDITS * 100)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="voxgate-engine", daemon=True
        )
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}{API_PREFIX}"

    def __enter__(self) -> BackgroundEngine:
        self._thread.start()
        self._call(self._start()).result(timeout=30)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._call(self._stop()).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def add_key(self, credits: int) -> tuple[str, Account]:
        """A new key with ``credits``; added on the engine's own loop, where accounts live."""
        key = Accounts.generate_key()

        async def add() -> Account:
            return self.accounts.add_key(key, credits)

        return key, self._call(add()).result(timeout=10)

    def _call(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _start(self) -> None:
        self._runner = web.AppRunner(
            create_engine_app(self.accounts, config=self._config), access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
