"""``voxgate serve --workers N``: several processes on one port, each owning its sessions.

The kernel spreads new connections over the workers (``SO_REUSEPORT``). A realtime session
lives in the worker that accepted its socket, and its id says which one (``w3-…``); a
WHEP request for that session may land on any worker, which then forwards it, unchanged,
to the owner's internal loopback port. Only the small SDP exchange is forwarded: media then
flows between the browser and the owner directly. Keys, credits, tokens and the session
registry are shared through Redis, which is why more than one worker needs
``VOXGATE_REDIS_URL``.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import signal
import socket
from dataclasses import dataclass
from types import FrameType
from typing import Any

import aiohttp
from aiohttp import web

from voxgate.config import Settings
from voxgate.errors import ConfigError

log = logging.getLogger(__name__)

_OWNER = re.compile(r"^w(\d{1,3})-")
_FORWARDED_REQUEST_HEADERS = ("Authorization", "Content-Type", "Origin", "If-Match")
_FORWARDED_RESPONSE_HEADERS = ("Location", "ETag", "Content-Type", "Allow", "Accept-Post")


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    index: int
    internal_ports: tuple[int, ...]

    @property
    def internal_port(self) -> int:
        return self.internal_ports[self.index]

    def tag(self, identifier: str) -> str:
        """``identifier`` marked as owned by this worker."""
        return f"w{self.index}-{identifier}"

    def owner_of(self, identifier: str) -> int | None:
        """The worker that owns a tagged session or resource id, if it is another one."""
        match = _OWNER.match(identifier)
        if match is None:
            return None
        owner = int(match.group(1))
        if owner == self.index or owner >= len(self.internal_ports):
            return None
        return owner


async def forward(
    request: web.Request, worker: WorkerInfo, owner: int, client: aiohttp.ClientSession
) -> web.Response:
    """Replay ``request`` on the owner's internal port and hand back its answer."""
    url = f"http://127.0.0.1:{worker.internal_ports[owner]}{request.rel_url}"
    headers = {h: request.headers[h] for h in _FORWARDED_REQUEST_HEADERS if h in request.headers}
    async with client.request(
        request.method, url, headers=headers, data=await request.read()
    ) as upstream:
        body = await upstream.read()
        response = web.Response(status=upstream.status, body=body)
        for name in _FORWARDED_RESPONSE_HEADERS:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        for link in upstream.headers.getall("Link", []):
            response.headers.add("Link", link)
        return response


def run_workers(settings: Settings, count: int, serve: Any) -> int:
    """Start ``count`` worker processes running ``serve(settings, worker)``; wait for them.

    SIGTERM and SIGINT are passed on, so each worker drains its own sessions.
    """
    if not settings.redis_url:
        raise ConfigError(
            "--workers above 1 needs VOXGATE_REDIS_URL: the workers share keys, "
            "credits, client tokens and sessions through Redis"
        )
    ports = tuple(_free_port() for _ in range(count))
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_worker_main,
            args=(serve, settings, WorkerInfo(i, ports)),
            name=f"voxgate-worker-{i}",
        )
        for i in range(count)
    ]
    for process in processes:
        process.start()

    def pass_on(signum: int, frame: FrameType | None) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                process.terminate()  # SIGTERM: the worker drains, then exits

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    for process in processes:
        process.join()
    return max((p.exitcode or 0) for p in processes)


def _worker_main(serve: Any, settings: Settings, worker: WorkerInfo) -> None:
    import asyncio

    from voxgate.logs import configure_logging

    configure_logging(settings.log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    asyncio.run(serve(settings, worker))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
