"""Telnyx's side of one bidirectional media stream (``stream_bidirectional_mode: "rtp"``, PCMU).

Messages (https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket):
``connected`` ``{event, version}``, carrying ``connected.x-telnyx-streaming-auth-token`` when the
stream has a ``stream_auth_token`` (also sent as the handshake header of that name); then
``start`` with ``sequence_number`` ``"1"``, every later message counting on, counters as strings,
each with the top-level ``stream_id``. ``start`` holds ``user_id``, ``call_control_id``,
``custom_parameters`` (an object) and ``media_format``; then come ``media`` ``{track, chunk,
timestamp, payload}``, ``dtmf`` ``{digit}`` with ``occurred_at``, ``mark`` ``{name}``,
``error`` and ``stop`` ``{user_id, call_control_id}``. Telnyx takes ``media`` (a base64 RTP
payload of "20 milliseconds to 30 seconds of audio"), ``mark``, sent back "when the immediately
preceding media finishes playing, or immediately if no audio is queued", and ``clear``, which
"stops the current media playback and clears queued media. Queued marks are sent back". Errors
in what it is sent come back as an ``error`` frame ``{title, code, detail}``: ``100003``
malformed_frame, ``100004`` invalid_media
(https://developers.telnyx.com/api/call-control/start-call-streaming).

Undocumented, so decided here: caller frame ``n`` (160 bytes, 20 ms) leaves ``n × 20`` ms after
``start``, ``chunk`` ``n``, stamped ``(n - 1) × 20``; playback starts when audio arrives, with
no jitter delay; a frame carrying another stream's ``stream_id`` is refused as malformed; what
Telnyx would refuse is recorded in ``protocol_errors``, answered with an ``error`` frame, and
ignored; ``stop`` is followed by a close with code 1000.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from tests.fakes.twilio_call import CALLER_FRAME, FRAME_S, RATE, OutboundBuffer, PhonePlayback

MIN_MEDIA_BYTES = RATE * 20 // 1000  # 20 ms of PCMU
MAX_MEDIA_BYTES = RATE * 30  # 30 s
DTMF_KEYS = frozenset("0123456789*#ABCD")
PCMU = {"encoding": "PCMU", "sample_rate": RATE, "channels": 1}
AUTH_TOKEN_HEADER = "x-telnyx-streaming-auth-token"


class TelnyxCall(PhonePlayback):
    """One bidirectional media stream, Telnyx's side, over an aiohttp WebSocket client."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, stream_id: str, call_id: str) -> None:
        self.stream_id, self.call_control_id, self.user_id = stream_id, call_id, str(uuid.uuid4())
        self.messages: list[dict[str, Any]] = []
        self.received_media_messages = 0
        self.marks_received: list[str] = []
        self.marks_echoed: list[tuple[str, float]] = []
        self.clears: list[float] = []
        self.protocol_errors: list[str] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._ws, self._loop = ws, asyncio.get_running_loop()
        self._buffer = OutboundBuffer()
        self._sequence = 0
        self._sending = asyncio.Lock()
        self._hung_up = False
        self._refusals: list[tuple[str, str, str]] = []  # error frames owed, in order
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        *,
        custom_parameters: dict[str, str],
        stream_auth_token: str | None = None,
        media_format: dict[str, object] | None = None,
        send_start: bool = True,
        send_caller_audio: bool = True,
    ) -> AsyncIterator[TelnyxCall]:
        """Open the stream as Telnyx does; hang up (``stop``, close) on leaving the block.

        ``send_start=False`` stops after ``connected``: the test says what comes next.
        """
        headers = {AUTH_TOKEN_HEADER: stream_auth_token} if stream_auth_token else {}
        async with http.ws_connect(url, headers=headers) as ws:
            call = cls(ws, str(uuid.uuid4()), "v3:" + secrets.token_urlsafe(40))
            await call._open(custom_parameters, stream_auth_token, media_format or PCMU, send_start)
            if send_start and send_caller_audio:
                call._tasks.append(asyncio.create_task(call._speak(call._loop.time())))
            try:
                yield call
            finally:
                await call.stop()
                for task in call._tasks:
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task

    async def dtmf(self, digit: str) -> None:
        if digit not in DTMF_KEYS:
            raise ValueError(f"{digit!r} is not a key of a phone")
        occurred_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        await self._send("dtmf", occurred_at=occurred_at, dtmf={"digit": digit})

    async def error(self, code: str, title: str, detail: str) -> None:
        """An error frame, as Telnyx sends one about a frame it could not take."""
        await self._send("error", error={"title": title, "code": code, "detail": detail})

    async def stop(self) -> None:
        """Hang up: Telnyx's ``stop`` frame, then the close handshake."""
        self._buffer.clear(self._loop.time())  # the call is over: no more plays, no mark echoes
        stop = {"user_id": self.user_id, "call_control_id": self.call_control_id}
        await self._send("stop", stop=stop)
        await self._ws.close()

    async def send_raw(self, message: dict[str, Any] | str | bytes) -> None:
        """Send anything as is (a dict as JSON, bytes as a binary frame), unnumbered."""
        if isinstance(message, bytes):
            await self._ws.send_bytes(message)
        else:
            await self._ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def _open(
        self,
        custom_parameters: dict[str, str],
        stream_auth_token: str | None,
        media_format: dict[str, object],
        send_start: bool,
    ) -> None:
        connected: dict[str, object] = {"event": "connected", "version": "1.0.0"}
        if stream_auth_token:
            connected["connected"] = {AUTH_TOKEN_HEADER: stream_auth_token}
        await self._ws.send_str(json.dumps(connected))
        if send_start:
            start = {
                "user_id": self.user_id,
                "call_control_id": self.call_control_id,
                "call_session_id": str(uuid.uuid4()),
                "from": "+13122010094",
                "to": "+13122123456",
                "tags": [],
                "custom_parameters": custom_parameters,
                "media_format": media_format,
            }
            await self._send("start", start=start)
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._play())]

    async def _send(self, event: str, **body: Any) -> None:
        async with self._sending:  # numbered in the order they leave
            if self._ws.closed or self._hung_up:  # nothing follows stop
                return
            self._sequence += 1
            message = {"event": event, "sequence_number": str(self._sequence), **body}
            message["stream_id"] = self.stream_id
            self._hung_up = event == "stop"
            with suppress(ConnectionError):
                await self._ws.send_str(json.dumps(message))

    async def _speak(self, start: float) -> None:
        payload = base64.b64encode(CALLER_FRAME).decode()
        chunk = 0
        while not self._ws.closed:
            chunk += 1
            await asyncio.sleep(max(0.0, start + chunk * FRAME_S - self._loop.time()))
            media = {"track": "inbound", "chunk": str(chunk), "timestamp": str((chunk - 1) * 20)}
            await self._send("media", media={**media, "payload": payload})

    async def _echo(self, names: list[str]) -> None:
        for name in names:
            self.marks_echoed.append((name, self._loop.time()))
            await self._send("mark", mark={"name": name})

    async def _read(self) -> None:
        while True:
            msg = await self._ws.receive()
            if msg.type is WSMsgType.TEXT:
                await self._echo(self._receive(msg.data))
            elif msg.type is WSMsgType.BINARY:
                self._refuse("100003", f"a binary frame of {len(msg.data)} bytes")
            elif msg.type is WSMsgType.ERROR:
                self.protocol_errors.append(f"a WebSocket error: {msg.data!r}")
            elif msg.type is WSMsgType.CLOSE:
                self.close_code, self.close_reason = msg.data, msg.extra or ""
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                self._buffer.clear(self._loop.time())
                return
            while self._refusals:
                await self.error(*self._refusals.pop(0))

    def _receive(self, text: str) -> list[str]:
        try:
            message = json.loads(text)
        except ValueError:
            return self._refuse("100003", f"not JSON: {text[:80]!r}")
        if not isinstance(message, dict):
            return self._refuse("100003", f"not a JSON object: {text[:80]!r}")
        self.messages.append(message)
        event, now = message.get("event"), self._loop.time()
        if event not in ("media", "mark", "clear"):
            return self._refuse("100003", f"an event Telnyx does not take: {event!r}")
        if message.get("stream_id", self.stream_id) != self.stream_id:
            return self._refuse("100003", f"{event} for stream {message['stream_id']!r}")
        body = message.get(event)
        if event == "clear":
            self.clears.append(now)
            return self._buffer.clear(now)
        if event == "mark":
            name = body.get("name") if isinstance(body, dict) else None
            if not isinstance(name, str):
                return self._refuse("100003", f"a mark without a name: {text[:80]!r}")
            self.marks_received.append(name)
            return self._buffer.mark(now, name)
        audio = _payload(body)
        if audio is None or not MIN_MEDIA_BYTES <= len(audio) <= MAX_MEDIA_BYTES:
            return self._refuse("100004", f"media not 20 ms to 30 s of PCMU: {text[:80]!r}")
        self.received_media_messages += 1
        return self._buffer.append(now, audio)

    def _refuse(self, code: str, problem: str) -> list[str]:
        """Recorded, and answered with an error frame once the message is done with."""
        self.protocol_errors.append(problem)
        title = {"100003": "malformed_frame", "100004": "invalid_media"}[code]
        self._refusals.append((code, title, problem[:200]))
        return []

    def _summary(self) -> str:
        marks = [name for name, _ in self.marks_echoed]
        return (
            f"{len(self.messages)} messages, {self.played_ms():.0f} ms played, marks echoed "
            f"{marks}, closed {self.close_code} {self.close_reason!r}, {self.protocol_errors}"
        )


def _payload(body: object) -> bytes | None:
    """The PCMU of a media body, or None if its payload is not whole, valid base64."""
    payload = body.get("payload") if isinstance(body, dict) else None
    if not isinstance(payload, str):
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        return None
