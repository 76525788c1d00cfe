"""The agent's side of a telephony test: its realtime socket, a session and a token for it.

Shared by the tests of every provider's dialect; each test module brings the provider's fake.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.gateway_harness import Gateway, Received, receive_until

SHORT = "Thanks for calling. Your table for four is booked for eight tonight."
LONG = " ".join(
    [
        "I can help you with that booking right away.",
        "We have a table by the window at seven, or one on the terrace at half past eight.",
        "The terrace is heated, and dogs are welcome there.",
        "Let me know which one you would like, and I will hold it for you.",
    ]
    * 3
)


@dataclass(frozen=True)
class CallerFrame:
    encoding_code: int
    stream_id: str
    seq: int
    timestamp: int
    payload: bytes


class Agent:
    """The agent's own realtime socket, collecting its events, its audio and the caller's."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session_id: str) -> None:
        self.ws, self.session_id = ws, session_id
        self.messages: list[dict[str, Any]] = []
        self.audio_frames = 0
        self.caller_frames: list[CallerFrame] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.messages.append({**msg.json(), "_at": time.monotonic()})
            elif msg.type is aiohttp.WSMsgType.BINARY:
                self._frame(msg.data)

    def _frame(self, frame: bytes) -> None:
        code, end = frame[1], 3 + frame[2]
        if code not in (6, 7):
            self.audio_frames += 1
            return
        seq, timestamp = struct.unpack_from(">II", frame, end)
        stream_id = frame[3:end].decode()
        self.caller_frames.append(CallerFrame(code, stream_id, seq, timestamp, frame[end + 8 :]))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    async def wait(self, kind: str, count: int = 1, timeout: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while len(self.of(kind)) < count:
                await asyncio.sleep(0.01)
        return self.of(kind)[count - 1]

    async def say(self, text: str, context_id: str = "default", *, close: bool = True) -> None:
        await self.ws.send_json({"type": "text.append", "text": text, "context_id": context_id})
        end = "context.close" if close else "text.flush"
        await self.ws.send_json({"type": end, "context_id": context_id})

    def spoken_ms(self, context_id: str = "default") -> float:
        ended = [e for e in self.of("chunk.ended") if e["context_id"] == context_id]
        return float(ended[-1]["end_ms"])

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def open_agent(
    http: aiohttp.ClientSession, gateway: Gateway, **update: Any
) -> tuple[Agent, str]:
    """An agent socket with a session, and a client token minted for that session."""
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    ws = await http.ws_connect(gateway.ws_url, headers=headers)
    created = await receive_until(ws, "session.created", Received())
    session_id = created.of("session.created")[0]["session_id"]
    if update:
        await ws.send_json({"type": "session.update", **update})
        await receive_until(ws, "session.updated", Received())
    minted = await http.post(
        f"{gateway.url}/v1/client_tokens", headers=headers, json={"session_id": session_id}
    )
    token = (await minted.json())["data"]["token"]
    return Agent(ws, session_id), token


def stream_url(gateway: Gateway, provider: str) -> str:
    return gateway.url.replace("http", "ws", 1) + f"/v1/telephony/{provider}"


async def invalid_messages(http: aiohttp.ClientSession, gateway: Gateway) -> float:
    scraped = await (await http.get(f"{gateway.url}/metrics")).text()
    counted = re.search(r'^voxgate_errors_total\{code="invalid_message"\} (\S+)$', scraped, re.M)
    return float(counted.group(1)) if counted else 0.0
