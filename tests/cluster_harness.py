"""Several real gateway nodes on one real Redis, behind a real haproxy, for the cluster tests.

``cluster`` (per test, over a module's ``running_cluster``): three ``voxgate serve``
processes with a 2 s node lease, each on its own loopback port, and haproxy in front
(round robin, WebSocket tunnels, health checks on ``/healthz``; see
``bench/local_cluster.py``, which starts them). Tests talk to the balancer only, as a
client would; a node's own port is used to read its ``/metrics``, which is how a test
knows which node holds a socket's session; the ``X-Voxgate-Node`` header haproxy adds to
every answer says which node the balancer sent a request to (``EntryNodes``). Each test
gets keys of its own, so the accounts of one test never mix with another's. The node and
balancer logs of a test are printed at its teardown, so pytest shows them with a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from bench.local_cluster import LocalCluster

from tests.gateway_harness import Received, receive_until
from tests.integration.conftest import start_redis_server, stop_redis_server
from voxgate.gateway.access.keys import RedisKeyStore
from voxgate.sessions.ledger import Balance, audit
from voxgate.sessions.ledger_redis import RedisLedger

NODE_LEASE_S = 2.0
NODE_HEADER = "X-Voxgate-Node"


@dataclass(frozen=True)
class Key:
    plain: str
    account_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.plain}"}


@dataclass
class Socket:
    """A realtime socket opened through the balancer, and the node it landed on."""

    ws: aiohttp.ClientWebSocketResponse
    received: Received
    session_id: str
    node: str
    created: dict[str, object] = field(default_factory=dict)


class EntryNodes:
    """The node the balancer sent each request to, WebSocket handshakes included: a client
    session given ``trace`` records the ``X-Voxgate-Node`` of every answer it gets."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []  # (path, node), in the order answered
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_end.append(self._answered)

    async def _answered(
        self, _: aiohttp.ClientSession, __: object, params: aiohttp.TraceRequestEndParams
    ) -> None:
        self.seen.append((params.url.path, params.response.headers.get(NODE_HEADER, "")))

    @property
    def last(self) -> str:
        return self.seen[-1][1]


class ClusterUnderTest:
    """The balancer's address, the nodes behind it, and what a test asks of them."""

    def __init__(self, local: LocalCluster) -> None:
        self.local = local
        self.redis_url = local.redis_url
        self.entries = EntryNodes()

    @property
    def url(self) -> str:
        return self.local.url

    @property
    def ws_url(self) -> str:
        return self.local.ws_url

    @property
    def node_names(self) -> list[str]:
        return [node.name for node in self.local.nodes]

    async def new_key(self, *, credits: int = 100_000, max_sessions: int = 10) -> Key:
        """A key of this test alone, on an account of its own, stored where every node
        reads keys."""
        plain = f"vg_cluster_{secrets.token_hex(12)}"
        ledger = RedisLedger.from_url(self.redis_url)
        keys = RedisKeyStore.from_url(self.redis_url, ledger)
        try:
            record = await keys.add(
                plain, name="cluster test", credits=credits, max_sessions=max_sessions
            )
        finally:
            await keys.aclose()
            await ledger.aclose()
        return Key(plain, record.account_id)

    async def metric(self, http: aiohttp.ClientSession, name: str) -> dict[str, float]:
        """A metric without labels, from each live node's own ``/metrics``."""
        line = re.compile(rf"^{re.escape(name)} (\S+)$", re.M)
        values = {}
        for node in self.local.nodes:
            if not node.alive:
                continue
            async with http.get(f"{node.url}/metrics") as answer:
                found = line.search(await answer.text())
            values[node.name] = float(found.group(1)) if found else 0.0
        return values

    async def active_sessions(self, http: aiohttp.ClientSession) -> dict[str, int]:
        """Each live node's ``voxgate_sessions_active``."""
        active = await self.metric(http, "voxgate_sessions_active")
        return {name: int(value) for name, value in active.items()}

    async def open_socket(self, http: aiohttp.ClientSession, key: Key) -> Socket:
        """A socket through the balancer, its ``session.created``, and the node holding it:
        the one the balancer sent it to, whose live sessions went up by one.

        Sockets must be opened one after another for the node to be known.
        """
        before = await self.active_sessions(http)
        ws = await http.ws_connect(self.ws_url, headers=key.headers)
        entered = self.entries.last
        received = await receive_until(ws, "session.created", Received())
        created = received.of("session.created")[0]
        after = await self.active_sessions(http)
        grown = [name for name in after if after[name] == before.get(name, 0) + 1]
        assert grown == [entered], f"socket sent to {entered}; sessions {before} -> {after}"
        return Socket(ws, received, created["session_id"], entered, created)

    async def wait_idle(self, http: aiohttp.ClientSession, timeout_s: float = 15.0) -> None:
        """Until no live node holds a session (the sockets of a test are all gone)."""
        async with asyncio.timeout(timeout_s):
            while any((await self.active_sessions(http)).values()):
                await asyncio.sleep(0.1)

    async def balance(self, account_id: str) -> Balance:
        ledger = RedisLedger.from_url(self.redis_url)
        try:
            return await ledger.balance(account_id)
        finally:
            await ledger.aclose()

    async def assert_ledger_exact(
        self, charged: dict[str, int], *, within_s: float = 5.0
    ) -> dict[str, Balance]:
        """Within ``within_s``, per account: nothing held and what was committed is what
        the sessions reported (``charged``: account -> the sum of their usage); and
        credited − available = committed + held for every account the store knows."""
        deadline = time.monotonic() + within_s
        ledger = RedisLedger.from_url(self.redis_url)
        try:
            while True:
                balances = {a: await ledger.balance(a) for a in charged}
                settled = all(
                    b.held == 0 and b.committed == charged[a] for a, b in balances.items()
                )
                if settled or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert await audit(ledger) == []
        finally:
            await ledger.aclose()
        for account_id, balance in balances.items():
            assert balance.credited - balance.available == balance.committed + balance.held
            assert balance.held == 0, f"{balance.held} credits left held: {balance}"
            assert balance.committed == charged[account_id], balance
        return balances


@pytest.fixture(scope="module")
def running_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Redis, three nodes and haproxy, for every test of a module."""
    directory = tmp_path_factory.mktemp("cluster")
    redis_process, redis_url = start_redis_server(directory)
    try:
        with LocalCluster(redis_url, directory / "nodes", lease_s=NODE_LEASE_S) as local:
            yield local
    finally:
        stop_redis_server(redis_process)


@pytest.fixture
async def cluster(running_cluster: LocalCluster) -> AsyncIterator[ClusterUnderTest]:
    """The module's cluster, every node up; its logs of this test printed at teardown."""
    for node in running_cluster.nodes:
        if not node.alive:
            running_cluster.restart(node.name)
    marks = {path: _size(path) for path in _log_paths(running_cluster)}
    under_test = ClusterUnderTest(running_cluster)
    try:
        yield under_test
    finally:
        for path, mark in marks.items():
            print(f"===== {path.name} (this test) =====")
            print(path.read_bytes()[mark:].decode(errors="replace")[-20_000:])
        # Best effort: a socket that a failed test left open ends with its client session,
        # and a session whose socket dropped waits out its resume grace.
        async with aiohttp.ClientSession() as http:
            with contextlib.suppress(TimeoutError):
                await under_test.wait_idle(http, timeout_s=5.0)


@pytest.fixture
async def http(cluster: ClusterUnderTest) -> AsyncIterator[aiohttp.ClientSession]:
    """A client whose answers tell ``cluster.entries`` which node took each request."""
    async with aiohttp.ClientSession(trace_configs=[cluster.entries.trace]) as session:
        yield session


def _log_paths(local: LocalCluster) -> list[Path]:
    paths = [node.log_path for node in local.nodes]
    return [*paths, local.directory / "haproxy.log"]


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
