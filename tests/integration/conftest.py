"""A real ``redis-server`` for the integration tests: one per test run, emptied between tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from tests.conftest import Target
from tests.gateway_harness import Gateway, running_gateway

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_ping(url: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    client = redis.Redis.from_url(url, socket_timeout=1.0)
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if client.ping():
                    return True
            except redis.ConnectionError:
                time.sleep(0.02)
        return False
    finally:
        client.close()


def start_redis_server(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``redis-server`` on a free loopback port with no persistence; (process, URL).

    The port is chosen, released, then bound by the server, so another process can take it in
    between: a server that does not answer is stopped and started again on another port.
    """
    for _ in range(3):
        port = _free_port()
        command = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(directory)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"redis://127.0.0.1:{port}/0"
        if _wait_for_ping(url, process):
            return process, url
        stop_redis_server(process)
    raise RuntimeError(f"{REDIS_SERVER} did not answer PING within {START_TIMEOUT_S} s")


def stop_redis_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a redis-server started for this test run, stopped at its end."""
    process, url = start_redis_server(tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
        stop_redis_server(process)


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """The test run's redis-server, with an empty database before and after the test."""
    client = redis.Redis.from_url(redis_server_url)
    try:
        client.flushdb()
        yield redis_server_url
        client.flushdb()
    finally:
        client.close()


class RedisServer:
    """A redis-server of one test, which the test may kill -9 and start again.

    It keeps its port and its data directory across restarts, and writes every change to
    its append-only file before answering (``appendfsync always``), as a deployment that
    must not lose a charge to a crash runs it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not _wait_for_ping(self.url, self.process):
            raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save; what survives is what the AOF holds."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            stop_redis_server(self.process)
            self.process = None


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with AOF for this test alone, started; stopped at its end."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stopped_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server not started yet: nothing listens on its port until the test starts it."""
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def gateway(target: Target) -> AsyncIterator[Gateway]:
    """A gateway on the test run's upstream with default settings; a module that needs
    other settings defines its own ``gateway``."""
    async with running_gateway(target) as gw:
        yield gw


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
