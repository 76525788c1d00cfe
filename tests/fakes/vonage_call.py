"""Vonage's side of one Voice API WebSocket (NCCO ``connect`` to a ``websocket`` endpoint), as
documented (https://developer.vonage.com/en/voice/voice-api/concepts/websockets).

The first message is text: ``{"event": "websocket:connected", "content-type":
"audio/l16;rate=16000", ...}`` with the endpoint's ``headers`` at the top level. Then the
caller's audio, binary 16-bit linear PCM, 20 ms (640 bytes at 16 kHz) a message, and
``{"event": "websocket:dtmf", "digit": "5", "duration": 260}`` for each key. Vonage plays
binary messages of that format, "each message is 320 or 640 bytes", buffered in the order
received, 3,072 of them at most; it takes ``{"action": "clear"}`` (the buffer is emptied,
answered ``{"event": "websocket:cleared"}``) and ``{"action": "notify", "payload": {...}}``
(answered ``{"event": "websocket:notify", "payload": {...}}`` once all audio buffered before
it has played). The call's end closes the socket; no message says so.

Undocumented, so decided here: caller frame ``n`` leaves ``n × 20`` ms after
``websocket:connected``; playback starts when audio arrives, with no jitter delay; a notify
with nothing buffered is answered at once; a clear drops the pending notifies unanswered
(Vonage says nothing of them); anything Vonage would not take (a binary message of another
size, audio past the 3,072 buffered, text that is not a known action) is recorded in
``protocol_errors`` and ignored; hanging up closes with 1000.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
from aiohttp import WSMsgType

CONTENT_TYPE = "audio/l16;rate=16000"
BYTES_PER_S = 32_000  # 16-bit mono at 16 kHz
FRAME_BYTES = 640
FRAME_S = 0.020
BUFFER_FRAMES = 3072
DTMF_KEYS = frozenset("0123456789*#")

# 400 Hz at -21 dBFS: eight whole periods a frame, so every caller frame is this one.
CALLER_FRAME = (3000 * np.sin(np.arange(320) * 2 * np.pi * 400 / 16000)).astype("<i2").tobytes()

Payload = dict[str, Any]


class OutboundBuffer:
    """Vonage's buffer of the server's audio, played in real time; pure: feed the loop time in,
    get the payloads of the notifies now reached out."""

    def __init__(self) -> None:
        self.played = bytearray()
        self._queued = bytearray()
        self._run_start, self._run_played = 0.0, 0  # the current stretch of playing without a gap
        self._notifies: deque[tuple[int, Payload]] = deque()  # (bytes queued before it, payload)

    @property
    def queued_frames(self) -> int:
        return len(self._queued) // FRAME_BYTES

    def catch_up(self, now: float) -> None:
        n = min(len(self._queued), int((now - self._run_start) * BYTES_PER_S) - self._run_played)
        n -= n % 2  # whole samples
        if n > 0:
            self.played += self._queued[:n]
            del self._queued[:n]
            self._run_played += n

    def due(self, now: float) -> list[Payload]:
        self.catch_up(now)
        payloads = []
        while self._notifies and self._notifies[0][0] <= len(self.played):
            payloads.append(self._notifies.popleft()[1])
        return payloads

    def append(self, now: float, audio: bytes) -> list[Payload]:
        payloads = self.due(now)
        if not self._queued:  # idle, or ran dry: playing starts again now
            self._run_start, self._run_played = now, 0
        self._queued += audio
        return payloads

    def notify(self, now: float, payload: Payload) -> list[Payload]:
        self._notifies.append((len(self.played) + len(self._queued), payload))
        return self.due(now)

    def clear(self, now: float) -> list[Payload]:
        payloads = self.due(now)
        self._queued.clear()
        self._notifies.clear()
        return payloads


class VonageCall:
    """One WebSocket call leg, Vonage's side, over an aiohttp WebSocket client."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.messages: list[Payload] = []
        self.received_media_messages = 0
        self.notifies_received: list[Payload] = []
        self.notifies_echoed: list[tuple[Payload, float]] = []
        self.clears: list[float] = []
        self.protocol_errors: list[str] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._ws, self._loop = ws, asyncio.get_running_loop()
        self._buffer = OutboundBuffer()
        self._sending = asyncio.Lock()
        self._hung_up = False
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        *,
        headers: Mapping[str, object],
        content_type: str = CONTENT_TYPE,
        send_caller_audio: bool = True,
        greet: bool = True,
    ) -> AsyncIterator[VonageCall]:
        """Open the socket as Vonage does; hang up (close) on leaving the block.

        ``headers``: the NCCO endpoint's, sent in ``websocket:connected``; ``greet=False``
        opens the socket and sends nothing (for a test to misbehave first).
        """
        async with http.ws_connect(url) as ws:
            call = cls(ws)
            call._tasks = [asyncio.create_task(call._read()), asyncio.create_task(call._play())]
            if greet:
                await call._send_text(
                    {"event": "websocket:connected", "content-type": content_type, **headers}
                )
                if send_caller_audio:
                    call._tasks.append(asyncio.create_task(call._speak(call._loop.time())))
            try:
                yield call
            finally:
                await call.hang_up()
                for task in call._tasks:
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task

    @property
    def played(self) -> bytearray:
        """The PCM that has played to the caller by now."""
        self._buffer.catch_up(self._loop.time())
        return self._buffer.played

    def played_ms(self) -> float:
        return len(self.played) * 1000 / BYTES_PER_S

    def played_pcm(self) -> npt.NDArray[np.int16]:
        return np.frombuffer(bytes(self.played), dtype="<i2").astype(np.int16)

    async def dtmf(self, digit: str) -> None:
        if digit not in DTMF_KEYS:
            raise ValueError(f"{digit!r} is not a key of a phone")
        await self._send_text({"event": "websocket:dtmf", "digit": digit, "duration": 260})

    async def hang_up(self) -> None:
        """The call is over: nothing more plays, the socket closes."""
        self._buffer.clear(self._loop.time())
        self._hung_up = True
        async with self._sending:
            await self._ws.close()

    async def send_raw(self, message: Payload | str | bytes) -> None:
        """Send anything as is (a dict as JSON, bytes as a binary message)."""
        async with self._sending:
            if isinstance(message, bytes):
                await self._ws.send_bytes(message)
            else:
                await self._ws.send_str(
                    message if isinstance(message, str) else json.dumps(message)
                )

    async def wait_for(self, predicate: Callable[[], object], timeout: float) -> None:
        deadline = self._loop.time() + timeout
        while not predicate():
            if self._loop.time() > deadline:
                raise TimeoutError(f"not within {timeout} s: {self._summary()}")
            await asyncio.sleep(0.005)

    async def _send_text(self, message: Payload) -> None:
        await self._send(json.dumps(message))

    async def _send(self, data: str | bytes) -> None:
        async with self._sending:
            if self._ws.closed or self._hung_up:
                return
            with suppress(ConnectionError):
                if isinstance(data, bytes):
                    await self._ws.send_bytes(data)
                else:
                    await self._ws.send_str(data)

    async def _speak(self, start: float) -> None:
        frame = 0
        while not self._ws.closed:
            frame += 1
            await asyncio.sleep(max(0.0, start + frame * FRAME_S - self._loop.time()))
            await self._send(CALLER_FRAME)

    async def _play(self) -> None:
        while not self._ws.closed:
            await self._echo(self._buffer.due(self._loop.time()))
            await asyncio.sleep(0.005)

    async def _echo(self, payloads: list[Payload]) -> None:
        for payload in payloads:
            self.notifies_echoed.append((payload, self._loop.time()))
            await self._send_text({"event": "websocket:notify", "payload": payload})

    async def _read(self) -> None:
        while True:
            msg = await self._ws.receive()
            if msg.type is WSMsgType.TEXT:
                await self._receive_text(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await self._echo(self._receive_audio(msg.data))
            elif msg.type is WSMsgType.ERROR:
                self.protocol_errors.append(f"a WebSocket error: {msg.data!r}")
            elif msg.type is WSMsgType.CLOSE:
                self.close_code, self.close_reason = msg.data, msg.extra or ""
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                self._buffer.clear(self._loop.time())
                return

    def _receive_audio(self, data: bytes) -> list[Payload]:
        if len(data) != FRAME_BYTES:
            return self._refuse(f"a binary message of {len(data)} bytes, not {FRAME_BYTES}")
        if self._buffer.queued_frames >= BUFFER_FRAMES:
            return self._refuse(f"audio past the {BUFFER_FRAMES} messages Vonage buffers")
        self.received_media_messages += 1
        return self._buffer.append(self._loop.time(), data)

    async def _receive_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            self._refuse(f"not JSON: {text[:80]!r}")
            return
        if not isinstance(message, dict):
            self._refuse(f"not a JSON object: {text[:80]!r}")
            return
        self.messages.append(message)
        action, now = message.get("action"), self._loop.time()
        if action == "clear":
            self.clears.append(now)
            await self._echo(self._buffer.clear(now))
            await self._send_text({"event": "websocket:cleared"})
        elif action == "notify" and isinstance(message.get("payload"), dict):
            self.notifies_received.append(message["payload"])
            await self._echo(self._buffer.notify(now, message["payload"]))
        else:
            self._refuse(f"a message Vonage does not take: {text[:80]!r}")

    def _refuse(self, problem: str) -> list[Payload]:
        self.protocol_errors.append(problem)
        return []

    def _summary(self) -> str:
        names = [payload.get("name") for payload, _ in self.notifies_echoed]
        return (
            f"{len(self.messages)} messages, {self.played_ms():.0f} ms played, notifies "
            f"echoed {names}, closed {self.close_code} {self.close_reason!r}, "
            f"{self.protocol_errors}"
        )
