"""``voxgate serve --workers N``: several processes on one port, each a node of the cluster.

The kernel spreads new connections over the workers (``SO_REUSEPORT``). Each worker is a
cluster node (``gateway.cluster``) like a gateway on another host, reached by its peers on
an internal port of its own: a session lives in the worker that accepted its socket, and a
WHEP, RTP or telephony request for it that lands on another worker is forwarded there.
Keys, credits, tokens and the cluster's records are shared through Redis, which is why
more than one worker needs ``VOXGATE_REDIS_URL``.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
from dataclasses import dataclass
from types import FrameType
from typing import Any

from voxgate.config import Settings
from voxgate.errors import ConfigError
from voxgate.gateway.cluster.cluster import node_url

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    index: int
    internal_ports: tuple[int, ...]

    @property
    def internal_port(self) -> int:
        return self.internal_ports[self.index]

    def node_url(self, settings: Settings) -> str:
        """Where the other workers (and nodes) reach this one: its internal port."""
        return node_url(settings.host, self.internal_port)


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
