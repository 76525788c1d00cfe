"""A voxgate cluster on loopback: N ``voxgate serve`` nodes on one Redis, behind haproxy.

Shared by the multi-node tests (``tests/cluster_harness.py``) and ``bench/cluster.py``.
The caller brings the Redis; this module starts the nodes (real processes, each
``python -m voxgate serve`` on its own port, the embedded engine as upstream) and a real
``haproxy`` with a generated config: round robin, HTTP mode with WebSocket tunnels, health
checks on ``/healthz``, and a ``X-Voxgate-Node`` response header naming the node that took
the request, so a client can tell where the balancer sent it. Nodes can be killed -9 and
started again on their port. Every wait is bounded; logs go to files in ``directory``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
BACKEND = "voxgate_nodes"
NODE_START_TIMEOUT_S = 60.0
BALANCER_START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def haproxy_config(port: int, nodes: Sequence[tuple[str, str]], admin_socket: Path) -> str:
    """The balancer's config: ``nodes`` are (name, host:port) pairs."""
    servers = "\n".join(f"    server {name} {address}" for name, address in nodes)
    return f"""\
global
    log stdout format raw local0 info
    maxconn 4096
    stats socket {admin_socket} mode 600 level admin

defaults
    mode http
    log global
    option httplog
    option dontlognull
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout tunnel 1h
    timeout client-fin 5s
    # A node that refuses the connection (killed, restarting) costs a retry on another.
    option redispatch
    retries 3

frontend voxgate
    bind 127.0.0.1:{port}
    # Node-to-node headers (a forwarded request, a carried socket's ticket) never come
    # from outside.
    http-request del-header X-Voxgate-Forwarded-By
    http-request del-header X-Voxgate-Ticket
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 2
    http-response set-header X-Voxgate-Node %[srv_name]
{servers}
"""


@dataclass
class Node:
    """One ``voxgate serve`` process, reachable on its own port."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        env = {**self.env, "VOXGATE_PORT": str(self.port), "VOXGATE_NODE_URL": self.url}
        log = self.log_path.open("ab")
        log.write(f"--- {self.name} starting on port {self.port}\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "voxgate", "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()  # the child holds its own descriptor

    def wait_ready(self, timeout_s: float = NODE_START_TIMEOUT_S) -> bool:
        """True once ``/readyz`` answers 200; False if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.alive:
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer,
            ):
                if answer.status == 200:
                    return True
            time.sleep(0.1)
        return False

    def kill(self) -> None:
        """SIGKILL: no drain, no settlement flush, no goodbye to Redis."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (the node drains), then SIGKILL if it is still there after ``timeout_s``."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Balancer:
    """``haproxy`` in front of the nodes, in the foreground (``-db``)."""

    port: int
    config_path: Path
    admin_socket: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def admin(self, command: str) -> str:
        """One command of haproxy's runtime API (``show stat``, ``set server ...``)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(self.admin_socket))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_states(self) -> dict[str, str]:
        """Each node's state as the balancer sees it: ``UP``, ``DOWN``, ``DRAIN``, ..."""
        lines = self.admin("show stat").splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        header = lines[0][2:].split(",")
        name, status = header.index("svname"), header.index("status")
        states = {}
        for line in lines[1:]:
            row = line.split(",")
            if len(row) > status and row[0] == BACKEND and row[name] not in ("BACKEND",):
                states[row[name]] = row[status]
        return states

    def wait_states(self, wanted: Mapping[str, str], timeout_s: float) -> bool:
        """True once every node named in ``wanted`` is in its state (``UP``, ``DOWN``):
        settled, not on its way (``UP 1/2`` is a node failing its checks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process and self.process.poll() is None:
            with contextlib.suppress(OSError):
                states = self.server_states()
                if all(states.get(n) == s for n, s in wanted.items()):
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class LocalCluster:
    """Nodes and their balancer, on loopback; start with ``start()`` or as a context."""

    redis_url: str
    directory: Path
    nodes_count: int = 3
    lease_s: float = 2.0
    api_keys: Sequence[str] = ()
    settings: Mapping[str, str] = field(default_factory=dict)  # more VOXGATE_* for every node
    nodes: list[Node] = field(default_factory=list)
    balancer: Balancer | None = None

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.balancer is not None
        return self.balancer.url

    @property
    def ws_url(self) -> str:
        assert self.balancer is not None
        return self.balancer.ws_url

    def node_env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "VOXGATE_HOST": "127.0.0.1",
            "VOXGATE_REDIS_URL": self.redis_url,
            "VOXGATE_NODE_LEASE": str(self.lease_s),
            "VOXGATE_DRAIN_TIMEOUT": "5",
        }
        if self.api_keys:
            env["VOXGATE_API_KEYS"] = ",".join(self.api_keys)
        env.update(self.settings)
        return env

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for index in range(self.nodes_count):
            name = f"node{index}"
            log_path = self.directory / f"{name}.log"
            self.nodes.append(Node(name, free_port(), self.node_env(), log_path))
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            self._until_ready(node)
        self._start_balancer()

    def _until_ready(self, node: Node) -> None:
        # The port was free when chosen; another process may have taken it since.
        for _ in range(3):
            if node.wait_ready():
                return
            if node.alive:
                break
            node.port = free_port()
            node.start()
        raise RuntimeError(f"{node.name} did not become ready:\n{node.log_text()[-4000:]}")

    def _start_balancer(self) -> None:
        servers = [(node.name, f"127.0.0.1:{node.port}") for node in self.nodes]
        up = dict.fromkeys((node.name for node in self.nodes), "UP")
        for _ in range(3):
            port = free_port()
            config = self.directory / "haproxy.cfg"
            admin = self.directory / "haproxy.sock"
            admin.unlink(missing_ok=True)
            config.write_text(haproxy_config(port, servers, admin))
            self.balancer = Balancer(port, config, admin, self.directory / "haproxy.log")
            self.balancer.start()
            if self.balancer.wait_states(up, BALANCER_START_TIMEOUT_S):
                return
            self.balancer.stop()
        log = (self.directory / "haproxy.log").read_text(errors="replace")
        raise RuntimeError(f"haproxy did not see every node up:\n{log[-4000:]}")

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def kill(self, name: str) -> None:
        """Kill the node -9, and wait until the balancer has taken it out."""
        self.node(name).kill()
        assert self.balancer is not None
        self.balancer.wait_states({name: "DOWN"}, timeout_s=10)

    def restart(self, name: str) -> None:
        """Start a stopped node again on its port; return once the balancer sends to it."""
        node = self.node(name)
        node.start()
        self._until_ready(node)
        assert self.balancer is not None
        self.balancer.wait_states({name: "UP"}, timeout_s=10)

    def logs(self) -> str:
        """Every node's log and the balancer's, one section each."""
        parts = [f"===== {node.name} ({node.url}) =====\n{node.log_text()}" for node in self.nodes]
        balancer_log = self.directory / "haproxy.log"
        if balancer_log.exists():
            parts.append(f"===== haproxy =====\n{balancer_log.read_text(errors='replace')}")
        return "\n".join(parts)

    def stop(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
        for node in self.nodes:
            if node.alive:
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop(timeout_s=15)
