"""A WebSocket client on a plain TCP socket, for readers that really stop reading.

aiohttp's client keeps reading into its own buffer; this one reads the kernel socket only
when told to, with a small receive buffer, so the gateway sees the stall at once.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8


@dataclass
class Frames:
    texts: list[dict[str, Any]] = field(default_factory=list)
    binaries: list[bytes] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    order: list[str] = field(default_factory=list)  # "audio" or a message's type


class RawWebSocket:
    def __init__(self, host: str, port: int, *, receive_buffer: int = 4096) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect((host, port))
        self._buffer = b""

    def handshake(self, path: str, headers: dict[str, str]) -> str:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.sock.getpeername()[0]}"]
        lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}"]
        lines += ["Sec-WebSocket-Version: 13", *(f"{k}: {v}" for k, v in headers.items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._recv()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        return head.decode().split("\r\n", 1)[0]  # the status line

    def send_json(self, message: dict[str, Any]) -> None:
        self._send(TEXT, json.dumps(message).encode())

    def send_close(self, code: int = 1000) -> None:
        self._send(CLOSE, struct.pack(">H", code))

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)  # a client's frames are masked (RFC 6455, 5.3)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if len(payload) < 126:
            head = struct.pack(">BB", 0x80 | opcode, 0x80 | len(payload))
        else:
            head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, len(payload))
        self.sock.sendall(head + mask + masked)

    def read_until_close(self, frames: Frames, timeout_s: float) -> Frames:
        """Read every frame until the server's close frame (or EOF, or the timeout).

        The receive buffer grows back to a usual size first, so what piled up in the
        gateway's socket comes through at loopback speed.
        """
        self.grow_buffer()
        self.sock.settimeout(timeout_s)
        while frames.close_code is None and self._read_one(frames):
            pass
        return frames

    def grow_buffer(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    def read_until(self, message_type: str, frames: Frames, timeout_s: float) -> Frames:
        """Read every frame up to and with the first message of ``message_type``."""
        self.sock.settimeout(timeout_s)
        while message_type not in frames.order:
            if not self._read_one(frames):
                raise AssertionError(f"the socket ended before {message_type!r}: {frames.order}")
        return frames

    def close(self) -> None:
        self.sock.close()

    def _read_one(self, frames: Frames) -> bool:
        """One frame into ``frames``; False at EOF or the timeout."""
        frame = self._next_frame()
        if frame is None:
            return False
        opcode, payload = frame
        if opcode == TEXT:
            message = json.loads(payload)
            frames.texts.append(message)
            frames.order.append(message["type"])
        elif opcode == BINARY:
            frames.binaries.append(payload)
            frames.order.append("audio")
        elif opcode == CLOSE:
            frames.close_code = struct.unpack(">H", payload[:2])[0] if payload else 1005
            frames.close_reason = payload[2:].decode()
        return True

    def _next_frame(self) -> tuple[int, bytes] | None:
        if not self._fill(2):
            return None
        opcode, length = self._buffer[0] & 0x0F, self._buffer[1] & 0x7F
        start = 2
        if length == 126:
            if not self._fill(4):
                return None
            length, start = struct.unpack(">H", self._buffer[2:4])[0], 4
        elif length == 127:
            if not self._fill(10):
                return None
            length, start = struct.unpack(">Q", self._buffer[2:10])[0], 10
        if not self._fill(start + length):
            return None
        payload = self._buffer[start : start + length]
        self._buffer = self._buffer[start + length :]
        return opcode, payload

    def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            data = self._recv()
            if not data:
                return False
            self._buffer += data
        return True

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return b""
