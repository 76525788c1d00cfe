"""The real parts every test talks to: the upstream, and the Redis topologies.

The upstream is the embedded engine on loopback, or the real API: with ``VOXTRAL_API_KEY``
(and optionally ``VOXTRAL_BASE_URL``) set, the contract suite runs unchanged against the real
Voxtral API; tests that need the engine's own controls are marked ``engine_only`` and skipped
there.

Redis beyond one server (that one is in ``tests/integration/conftest.py``): a three-master
Redis Cluster shared by the test run, and a Sentinel setup (master, replica, three sentinels)
of one test, which it may fail over or kill the master of.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from voxgate.upstream import Upstream, UpstreamConfig
from voxgate.upstream.engine.background import BackgroundEngine

REAL_API_KEY = os.environ.get("VOXTRAL_API_KEY")


@dataclass
class Target:
    base_url: str
    api_key: str
    engine: BackgroundEngine | None  # None against the real API

    def config(self, **overrides: object) -> UpstreamConfig:
        fields: dict[str, object] = {"base_url": self.base_url, "api_key": self.api_key}
        fields.update(overrides)
        return UpstreamConfig(**fields)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "engine_only: needs the embedded engine's own controls")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not REAL_API_KEY:
        return
    skip = pytest.mark.skip(reason="needs the embedded engine (VOXTRAL_API_KEY is set)")
    for item in items:
        if "engine_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    if REAL_API_KEY:
        base = os.environ.get("VOXTRAL_BASE_URL", "https://voxtral.com/api/tts")
        yield Target(base, REAL_API_KEY, None)
        return
    with BackgroundEngine() as engine:
        yield Target(engine.base_url, engine.api_key, engine)


@pytest.fixture
def engine(target: Target) -> BackgroundEngine:
    assert target.engine is not None, "engine_only tests are skipped against the real API"
    return target.engine


@pytest.fixture
async def upstream(target: Target) -> AsyncIterator[Upstream]:
    async with Upstream(target.config()) as client:
        yield client


# ---- Redis topologies: a real Redis Cluster and a real Sentinel setup, started by the tests

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
TOPOLOGY_TIMEOUT_S = 20.0


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (released before returning, as for one server)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free too, and below 65536."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20_000, 40_000)
        with socket.socket() as node, socket.socket() as bus:
            try:
                node.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


def _until(check: Callable[[], bool], what: str, timeout_s: float = TOPOLOGY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout_s} s")


def _info(port: int, section: str) -> dict[str, Any]:
    with redis.Redis(port=port, socket_timeout=1.0, decode_responses=True) as client:
        info: dict[str, Any] = client.info(section)
        return info


class RedisProcess:
    """One redis-server (or sentinel) on a port of its own, in a directory of its own."""

    def __init__(self, directory: Path, port: int, *options: str, sentinel: bool = False) -> None:
        self.directory = directory
        self.port = port
        self.options = options
        self.sentinel = sentinel
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        command = [REDIS_SERVER]
        if self.sentinel:  # a sentinel rewrites its config file: it must be its own
            config = self.directory / "sentinel.conf"
            config.write_text("\n".join(self.options) + "\n")
            command += [str(config), "--sentinel"]
        else:
            command += list(self.options)
        command += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        if not self.sentinel:
            command += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _until(self.answers, f"redis-server on port {self.port} did not answer PING")

    def answers(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            error = (
                self.process.stderr.read().decode() if self.process and self.process.stderr else ""
            )
            raise RuntimeError(f"redis-server on port {self.port} exited: {error}")
        with redis.Redis(port=self.port, socket_timeout=1.0) as client:
            return bool(client.ping())

    def kill(self) -> None:
        """SIGKILL: the process is gone at once, without a word to its clients or peers."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


class RedisClusterServers:
    """A Redis Cluster of three masters and no replicas, every slot covered.

    ``url`` is the store's form of it (``redis+cluster://``), naming every node.
    """

    def __init__(self, directory: Path, masters: int = 3) -> None:
        options = ("--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
        self.nodes = [
            RedisProcess(directory / str(port), port, *options, "--cluster-config-file",
                         f"nodes-{port}.conf")
            for port in cluster_ports(masters)
        ]  # fmt: skip
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30,
        )  # fmt: skip
        _until(self.healthy, "the cluster did not reach cluster_state:ok")

    def healthy(self) -> bool:
        for node in self.nodes:
            with redis.Redis(port=node.port, socket_timeout=1.0, decode_responses=True) as c:
                info = c.execute_command("CLUSTER", "INFO")
                if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                    return False
        return True

    def flush(self) -> None:
        for node in self.nodes:
            with redis.Redis(port=node.port, socket_timeout=1.0) as client:
                client.flushall()
                client.script_flush()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelServers:
    """A master, one replica and three sentinels watching them as service ``SERVICE``.

    ``url`` is the store's form of it (``redis+sentinel://``), naming every sentinel.
    Failover is quick: a master is down after 2 s without an answer. A replica that must
    sync in full (an old master rejoining) does so at once, not after Redis's 5 s delay.
    """

    SERVICE = "voxgate"
    # Short, for quick failovers; not so short that a sentinel starved of CPU for a moment
    # (a loaded test machine) calls a healthy master down and fails over again.
    DOWN_AFTER_MS = 2000

    def __init__(self, directory: Path) -> None:
        master_port, replica_port, *sentinel_ports = free_ports(5)
        sync_now = ("--repl-diskless-sync-delay", "0")
        self.master = RedisProcess(directory / "master", master_port, *sync_now)
        self.replica = RedisProcess(
            directory / "replica", replica_port, *sync_now, "--replicaof", "127.0.0.1",
            str(master_port),
        )  # fmt: skip
        monitor = [
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {master_port} 2",
            f"sentinel down-after-milliseconds {self.SERVICE} {self.DOWN_AFTER_MS}",
            f"sentinel failover-timeout {self.SERVICE} 10000",
            f"sentinel parallel-syncs {self.SERVICE} 1",
        ]
        self.sentinels = [
            RedisProcess(directory / f"sentinel-{port}", port, *monitor, sentinel=True)
            for port in sentinel_ports
        ]
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        self.url = f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        _until(lambda: self._has_replica(self.master.port), "the replica did not sync")
        for sentinel in self.sentinels:
            sentinel.start()
        _until(self._sentinels_agree, "the sentinels did not see each other and the replica")

    def master_port(self) -> int:
        with redis.Redis(port=self.sentinels[0].port, decode_responses=True) as client:
            _, port = client.sentinel_get_master_addr_by_name(self.SERVICE)
            return int(port)

    def failover(self) -> int:
        """SENTINEL FAILOVER: the replica is promoted; waits until every sentinel says so and
        the old master, demoted, has synced with it (Sentinel takes ~10 s to demote it). The
        new master's port."""
        old = self.master_port()
        with redis.Redis(port=self.sentinels[0].port) as client:
            client.execute_command("SENTINEL", "FAILOVER", self.SERVICE)
        new = self._switched_from(old)
        _until(lambda: self._has_replica(new), "the old master did not follow the new", 40.0)
        return new

    def kill_master(self) -> RedisProcess:
        """SIGKILL the master (its data is gone: no persistence) and wait until every
        sentinel names the replica master. The killed server, for :meth:`rejoin`."""
        old = self.master_port()
        killed = self.master if self.master.port == old else self.replica
        killed.kill()
        self._switched_from(old)
        return killed

    def rejoin(self, server: RedisProcess) -> None:
        """Start a killed server again; waits until Sentinel has made it the master's
        replica and it has synced (Sentinel demotes a returning master after ~10 s)."""
        server.start()
        _until(lambda: self._has_replica(self.master_port()), "it did not rejoin", 40.0)

    def _switched_from(self, old: int) -> int:
        """Until every sentinel names one new master, has the failover behind it and pings
        that master: a sentinel that has not reached the new master yet would soon call it
        down and fail over again (to a killed master restarted empty, say)."""

        def switched() -> bool:
            masters = []
            for sentinel in self.sentinels:
                with redis.Redis(port=sentinel.port, decode_responses=True) as client:
                    masters.append(client.sentinel_master(self.SERVICE))
            ports = {int(master["port"]) for master in masters}
            if len(ports) != 1 or old in ports:
                return False
            settled = all(
                master["flags"] == "master" and master["last-ok-ping-reply"] < 500
                for master in masters
            )
            return settled and _info(ports.pop(), "replication")["role"] == "master"

        _until(switched, "the sentinels did not fail over")
        return self.master_port()

    def _has_replica(self, master_port: int) -> bool:
        """The master has a replica that has synced and acknowledges writes."""
        info = _info(master_port, "replication")
        return info["role"] == "master" and any(
            info[f"slave{i}"]["state"] == "online" for i in range(info["connected_slaves"])
        )

    def _sentinels_agree(self) -> bool:
        for sentinel in self.sentinels:
            with redis.Redis(port=sentinel.port, decode_responses=True) as client:
                master = client.sentinel_master(self.SERVICE)
                if master["num-other-sentinels"] < len(self.sentinels) - 1:
                    return False
                if master["num-slaves"] < 1:
                    return False
        return True

    def flush(self) -> None:
        with redis.Redis(port=self.master_port()) as client:
            client.flushall()

    def stop(self) -> None:
        for process in (*self.sentinels, self.replica, self.master):
            process.stop()


@pytest.fixture(scope="session")
def redis_cluster_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisClusterServers]:
    """A three-master Redis Cluster for this test run, stopped at its end."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster_servers: RedisClusterServers) -> Iterator[str]:
    """The test run's Redis Cluster, every master emptied before and after the test."""
    redis_cluster_servers.flush()
    yield redis_cluster_servers.url
    redis_cluster_servers.flush()


@pytest.fixture
def sentinel_servers(tmp_path: Path) -> Iterator[SentinelServers]:
    """A master, a replica and three sentinels of this test alone (a test may fail it over,
    or kill its master)."""
    servers = SentinelServers(tmp_path)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def store_url_for(request: pytest.FixtureRequest, topology: str) -> str:
    """A Redis URL, emptied for the test: the run's cluster for "cluster", else its server."""
    name = "redis_cluster_url" if topology == "cluster" else "redis_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(params=["redis", "cluster"])
def shared_redis_url(request: pytest.FixtureRequest) -> str:
    """One redis-server, then the Redis Cluster: a Redis store's tests run on both."""
    return store_url_for(request, str(request.param))
