"""Plivo's side of one bidirectional Audio Stream (XML ``<Stream bidirectional="true">``).

As documented (https://plivo.com/docs/voice-agents/audio-streaming/concepts/audio-streaming-reference):
``start`` is sent as soon as the socket opens, with ``sequenceNumber`` 1, every later message
counting on (numbers, not strings); ``start`` carries ``callId``, ``streamId``, ``accountId``,
``tracks`` and ``mediaFormat`` and, beside it, ``extra_headers`` (the XML's ``extraHeaders``,
as written), which ``media`` and ``dtmf`` repeat. Then ``media`` ``{track, timestamp (Unix
ms, a string), chunk, payload}`` about every 20 ms (160 bytes of μ-law), ``dtmf`` ``{track,
digit, timestamp}``, ``playedStream`` ``{name}`` and ``clearedAudio``, each with the
``streamId``. Plivo accepts ``playAudio`` (``media.contentType`` and ``media.sampleRate``
matching the stream's, a base64 ``payload``), ``checkpoint`` and ``clearAudio`` with the
``streamId``, and ``sendDTMF``; messages up to 64 KB. A checkpoint is answered once "audio
events buffered before the Checkpoint were successfully played out", and only then
(https://plivo.com/docs/voice/xml/the-stream-element/checkpoint-event): ``clearAudio`` empties
the queue, the checkpoints still pending are never answered, and ``clearedAudio`` confirms it.
When the call ends the WebSocket closes: the reference has no message for it.

Undocumented, so decided here: caller frame ``n`` (``chunk`` ``n``) leaves ``n × 20`` ms after
``start``; playback starts when audio arrives, with no jitter delay, and a checkpoint with no
audio ahead of it is answered at once; a message Plivo would refuse is recorded in
``protocol_errors`` and ignored; hanging up closes with code 1000. Caller audio is μ-law only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from tests.fakes.twilio_call import CALLER_FRAME, FRAME_S, OutboundBuffer, PhonePlayback

MULAW = "audio/x-mulaw;rate=8000"
DTMF_KEYS = frozenset("0123456789*#ABCD")
MAX_MESSAGE_BYTES = 65_536
ACCEPTED = frozenset({"playAudio", "checkpoint", "clearAudio", "sendDTMF"})


class PlivoCall(PhonePlayback):
    """One bidirectional Audio Stream, Plivo's side, over an aiohttp WebSocket client."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, content_type: str, extra_headers: str
    ) -> None:
        self.stream_id, self.call_id = str(uuid.uuid4()), str(uuid.uuid4())
        self.account_id = "MA" + secrets.token_hex(9).upper()
        encoding, _, rate = content_type.partition(";rate=")
        self.media_format = {"encoding": encoding, "sampleRate": int(rate)}
        self.extra_headers = extra_headers
        self.messages: list[dict[str, Any]] = []
        self.received_play_audio = 0
        self.checkpoints_received: list[str] = []
        self.checkpoints_echoed: list[tuple[str, float]] = []
        self.clears: list[float] = []
        self.protocol_errors: list[str] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._ws, self._loop = ws, asyncio.get_running_loop()
        self._buffer = OutboundBuffer()
        self._sequence = 0
        self._sending = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        *,
        extra_headers: str,
        content_type: str = MULAW,
        send_caller_audio: bool = True,
    ) -> AsyncIterator[PlivoCall]:
        """Open the stream as Plivo does; hang up (close) on leaving the block.

        ``extra_headers`` and ``content_type``: the ``<Stream>`` attributes, as written.
        """
        if send_caller_audio and content_type != MULAW:
            raise ValueError("this fake speaks as a caller in μ-law 8 kHz only")
        if len(extra_headers.encode()) > 512:
            raise ValueError("Plivo takes at most 512 bytes of extraHeaders")
        async with http.ws_connect(url) as ws:
            call = cls(ws, content_type, extra_headers)
            await call._open(send_caller_audio)
            try:
                yield call
            finally:
                await call.hang_up()
                for task in call._tasks:
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task

    async def dtmf(self, digit: str) -> None:
        if digit not in DTMF_KEYS:
            raise ValueError(f"{digit!r} is not a key Plivo reports")
        dtmf = {"track": "inbound", "digit": digit, "timestamp": _unix_ms()}
        await self._send("dtmf", dtmf=dtmf, extra_headers=self.extra_headers)

    async def hang_up(self) -> None:
        """The call ends: nothing more plays, no more answers, and the socket closes."""
        self._buffer.clear(self._loop.time())
        await self._ws.close()

    async def send_raw(self, message: dict[str, Any] | str | bytes) -> None:
        """Send anything as is (a dict as JSON), outside the sequence numbers."""
        if isinstance(message, bytes):
            await self._ws.send_bytes(message)
        else:
            await self._ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def _open(self, send_caller_audio: bool) -> None:
        start = {
            "callId": self.call_id,
            "streamId": self.stream_id,
            "accountId": self.account_id,
            "tracks": ["inbound"],
            "mediaFormat": self.media_format,
        }
        await self._send("start", start=start, extra_headers=self.extra_headers)
        jobs = [self._read(), self._play()]
        if send_caller_audio:
            jobs.append(self._speak(self._loop.time()))
        self._tasks = [asyncio.create_task(job) for job in jobs]

    async def _send(self, event: str, **body: Any) -> None:
        async with self._sending:  # numbered in the order they leave
            if self._ws.closed:
                return
            self._sequence += 1
            message: dict[str, Any] = {"event": event, "sequenceNumber": self._sequence}
            if event != "start":
                message["streamId"] = self.stream_id
            with suppress(ConnectionError):
                await self._ws.send_str(json.dumps({**message, **body}))

    async def _speak(self, start: float) -> None:
        payload = base64.b64encode(CALLER_FRAME).decode()
        first_ms = int(time.time() * 1000)
        chunk = 0
        while not self._ws.closed:
            chunk += 1
            await asyncio.sleep(max(0.0, start + chunk * FRAME_S - self._loop.time()))
            stamp = str(first_ms + (chunk - 1) * 20)
            media = {"track": "inbound", "timestamp": stamp, "chunk": chunk, "payload": payload}
            await self._send("media", media=media, extra_headers=self.extra_headers)

    async def _echo(self, names: list[str]) -> None:
        for name in names:
            self.checkpoints_echoed.append((name, self._loop.time()))
            await self._send("playedStream", name=name)

    async def _read(self) -> None:
        while True:
            msg = await self._ws.receive()
            if msg.type is WSMsgType.TEXT:
                await self._receive(msg.data)
            elif msg.type is WSMsgType.BINARY:
                self.protocol_errors.append(f"a binary frame of {len(msg.data)} bytes")
            elif msg.type is WSMsgType.ERROR:
                self.protocol_errors.append(f"a WebSocket error: {msg.data!r}")
            elif msg.type is WSMsgType.CLOSE:
                self.close_code, self.close_reason = msg.data, msg.extra or ""
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                self._buffer.clear(self._loop.time())
                return

    async def _receive(self, text: str) -> None:
        problem = await self._take(text)
        if problem is not None:
            self.protocol_errors.append(problem)

    async def _take(self, text: str) -> str | None:
        """Act on one message from the server; what Plivo would refuse in it, if anything."""
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            return f"a message of {len(text.encode())} bytes, over 64 KB"
        try:
            message = json.loads(text)
        except ValueError:
            return f"not JSON: {text[:80]!r}"
        if not isinstance(message, dict):
            return f"not a JSON object: {text[:80]!r}"
        self.messages.append(message)
        event, now = message.get("event"), self._loop.time()
        if event not in ACCEPTED:
            return f"an event Plivo does not accept: {event!r}"
        # playAudio is documented without a streamId; one it carries must be the stream's.
        stream_id = message.get("streamId", self.stream_id if event == "playAudio" else None)
        if stream_id != self.stream_id:
            return f"{event} for streamId {stream_id!r}"
        if event == "clearAudio":
            self.clears.append(now)
            await self._echo(self._buffer.due(now))
            self._buffer.clear(now)  # what was still pending is never answered
            await self._send("clearedAudio")
        elif event == "checkpoint":
            name = message.get("name")
            if not isinstance(name, str) or not name:
                return f"a checkpoint without a name: {text[:80]!r}"
            self.checkpoints_received.append(name)
            await self._echo(self._buffer.mark(now, name))
        elif event == "playAudio":
            audio = self._audio(message.get("media"))
            if isinstance(audio, str):
                return audio
            self.received_play_audio += 1
            await self._echo(self._buffer.append(now, audio))
        return None

    def _audio(self, media: object) -> bytes | str:
        """The audio of a ``playAudio``'s media, or what is wrong with it."""
        if not isinstance(media, dict):
            return "playAudio without its media object"
        given = {"encoding": media.get("contentType"), "sampleRate": media.get("sampleRate")}
        if given != self.media_format:
            return f"playAudio as {given}, the stream is {self.media_format}"
        payload = media.get("payload")
        if not isinstance(payload, str):
            return "playAudio without a payload"
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error:
            return "playAudio with a payload that is not base64"

    def _summary(self) -> str:
        echoed = [name for name, _ in self.checkpoints_echoed]
        return (
            f"{len(self.messages)} messages, {self.played_ms():.0f} ms played, checkpoints "
            f"answered {echoed}, closed {self.close_code} {self.close_reason!r}, "
            f"{self.protocol_errors}"
        )


def _unix_ms() -> str:
    return str(int(time.time() * 1000))
