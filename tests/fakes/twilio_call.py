"""Twilio's side of one bidirectional Media Stream (TwiML ``<Connect><Stream>``), as documented.

Messages (https://www.twilio.com/docs/voice/media-streams/websocket-messages): ``connected``
(no ``sequenceNumber``), then ``start`` with ``sequenceNumber`` ``"1"``, every later message
counting on; counters and timestamps are strings. Then ``media`` ``{track, chunk, timestamp,
payload}``, ``dtmf`` ``{track: "inbound_track", digit}``, ``mark`` ``{name}`` and ``stop``
``{accountSid, callSid}``. Twilio accepts ``media`` (base64 μ-law 8 kHz, "buffered and played in
the order received"), ``mark`` and ``clear``, each with the ``streamSid``; a mark comes back
"when that media message's playback is complete", at once "if there is no audio buffered", and
``clear`` "empties all buffered audio and causes any mark messages to be sent back". Anything
else is error 31924 (https://www.twilio.com/docs/api/errors/31924); ``<Connect>`` streams the
inbound track only (https://www.twilio.com/docs/api/errors/31941).

``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with the auth token, of the full URL followed
by the POST parameters sorted by name, each as name then value; a WebSocket handshake has none
(https://www.twilio.com/docs/usage/security#validating-requests). Which URL exactly Twilio signs
for a ``wss`` handshake is not spelled out: the same page suggests trying it with a trailing
``/``. This fake signs the URL it is given, as written. ``<Stream url>`` takes no query string
(https://www.twilio.com/docs/api/errors/31920); values come as ``customParameters``.

Undocumented, so decided here: caller frame ``n`` (160 bytes, 20 ms) leaves ``n × 20`` ms after
``start``, stamped ``(n - 1) × 20``; playback starts when audio arrives, with no jitter delay; a
message Twilio would refuse is recorded in ``protocol_errors`` and ignored; ``stop`` is followed
by a close with code 1000.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
from aiohttp import WSMsgType

RATE = 8000  # μ-law bytes a second
FRAME_S = 0.020
DTMF_KEYS = frozenset("0123456789*#")
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """``X-Twilio-Signature`` of a request to ``url`` with these POST parameters."""
    params = params or {}
    signed = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def mulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """G.711 μ-law to linear PCM (±32124)."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def mulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """Linear PCM to G.711 μ-law, on 14 bits as the reference coder does (Sun's g711.c)."""
    x = pcm.astype(np.int32) >> 2
    biased = np.minimum(np.abs(x), 8158) + 0x21
    exponent = np.floor(np.log2(biased)).astype(np.int32) - 5  # the segment: the top bit
    mantissa = (biased >> (exponent + 1)) & 0x0F
    code = ~(np.where(x < 0, 0x80, 0) | exponent << 4 | mantissa) & 0xFF
    return bytes(code.astype(np.uint8).tobytes())


# 400 Hz at -21 dBFS: eight whole periods a frame, so every caller frame is this one.
CALLER_FRAME = mulaw_encode(
    (3000 * np.sin(np.arange(160) * 2 * np.pi * 400 / RATE)).astype(np.int16)
)


class OutboundBuffer:
    """Twilio's buffer of the server's audio, played in real time; pure: feed the loop time in,
    get the names of the marks now reached out."""

    def __init__(self) -> None:
        self.played = bytearray()
        self._queued = bytearray()
        self._run_start, self._run_played = 0.0, 0  # the current stretch of playing without a gap
        self._marks: deque[tuple[int, str]] = deque()  # (bytes queued before it, name)

    def catch_up(self, now: float) -> None:
        n = min(len(self._queued), int((now - self._run_start) * RATE) - self._run_played)
        if n > 0:
            self.played += self._queued[:n]
            del self._queued[:n]
            self._run_played += n

    def due(self, now: float) -> list[str]:
        self.catch_up(now)
        names = []
        while self._marks and self._marks[0][0] <= len(self.played):
            names.append(self._marks.popleft()[1])
        return names

    def append(self, now: float, audio: bytes) -> list[str]:
        names = self.due(now)
        if not self._queued:  # idle, or ran dry: playing starts again now
            self._run_start, self._run_played = now, 0
        self._queued += audio
        return names

    def mark(self, now: float, name: str) -> list[str]:
        self._marks.append((len(self.played) + len(self._queued), name))
        return self.due(now)

    def clear(self, now: float) -> list[str]:
        names = self.due(now) + [name for _, name in self._marks]
        self._queued.clear()
        self._marks.clear()
        return names


class PhonePlayback:
    """What every μ-law fake phone shares: its playback, read as the caller hears it."""

    _ws: aiohttp.ClientWebSocketResponse
    _loop: asyncio.AbstractEventLoop
    _buffer: OutboundBuffer

    @property
    def played(self) -> bytearray:
        """The μ-law that has played to the caller by now."""
        self._buffer.catch_up(self._loop.time())
        return self._buffer.played

    def played_ms(self) -> float:
        return len(self.played) * 1000 / RATE

    def played_pcm(self) -> npt.NDArray[np.int16]:
        return mulaw_decode(bytes(self.played))

    async def wait_for(self, predicate: Callable[[], object], timeout: float) -> None:
        deadline = self._loop.time() + timeout
        while not predicate():
            if self._loop.time() > deadline:
                raise TimeoutError(f"not within {timeout} s: {self._summary()}")
            await asyncio.sleep(0.005)

    async def _play(self) -> None:
        """Answer each mark as playback reaches it."""
        while not self._ws.closed:
            await self._echo(self._buffer.due(self._loop.time()))
            await asyncio.sleep(0.005)

    async def _echo(self, names: list[str]) -> None:
        raise NotImplementedError

    def _summary(self) -> str:
        raise NotImplementedError


class TwilioCall(PhonePlayback):
    """One bidirectional Media Stream, Twilio's side, over an aiohttp WebSocket client."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, stream_sid: str, call_sid: str) -> None:
        self.stream_sid, self.call_sid, self.account_sid = stream_sid, call_sid, _sid("AC")
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
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        *,
        custom_parameters: dict[str, str],
        auth_token: str | None = None,
        stream_sid: str | None = None,
        call_sid: str | None = None,
        send_caller_audio: bool = True,
        signed_url: str | None = None,
    ) -> AsyncIterator[TwilioCall]:
        """Open the stream as Twilio does; hang up (``stop``, close) on leaving the block.

        ``signed_url``: the URL of the TwiML's ``<Stream url>``, which is what Twilio signs,
        when the server is reached at another (through a proxy); ``url`` by default.
        """
        headers: dict[str, str] = {}
        if auth_token is not None:
            headers["X-Twilio-Signature"] = signature(auth_token, signed_url or url)
        async with http.ws_connect(url, headers=headers) as ws:
            call = cls(ws, stream_sid or _sid("MZ"), call_sid or _sid("CA"))
            await call._open(custom_parameters, send_caller_audio)
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
        await self._send("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    async def stop(self) -> None:
        """Hang up: Twilio's ``stop`` message, then the close handshake."""
        self._buffer.clear(self._loop.time())  # the call is over: no more plays, no mark echoes
        await self._send("stop", stop={"accountSid": self.account_sid, "callSid": self.call_sid})
        await self._ws.close()

    async def send_raw(self, message: dict[str, Any] | str) -> None:
        """Send anything as is (a dict as JSON), outside the sequence numbers."""
        await self._ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def _open(self, custom_parameters: dict[str, str], send_caller_audio: bool) -> None:
        await self._ws.send_str(json.dumps(CONNECTED))
        start: dict[str, object] = {
            "accountSid": self.account_sid,
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
            "customParameters": custom_parameters,
        }
        await self._send("start", start=start)
        jobs = [self._read(), self._play()]
        if send_caller_audio:
            jobs.append(self._speak(self._loop.time()))
        self._tasks = [asyncio.create_task(job) for job in jobs]

    async def _send(self, event: str, **body: Any) -> None:
        async with self._sending:  # numbered in the order they leave
            if self._ws.closed or self._hung_up:  # nothing follows stop
                return
            self._sequence += 1
            message = {"event": event, "sequenceNumber": str(self._sequence), **body}
            message["streamSid"] = self.stream_sid
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
                self.protocol_errors.append(f"a binary frame of {len(msg.data)} bytes")
            elif msg.type is WSMsgType.ERROR:
                self.protocol_errors.append(f"a WebSocket error: {msg.data!r}")
            elif msg.type is WSMsgType.CLOSE:
                self.close_code, self.close_reason = msg.data, msg.extra or ""
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                self._buffer.clear(self._loop.time())
                return

    def _receive(self, text: str) -> list[str]:
        try:
            message = json.loads(text)
        except ValueError:
            return self._refuse(f"not JSON: {text[:80]!r}")
        if not isinstance(message, dict):
            return self._refuse(f"not a JSON object: {text[:80]!r}")
        self.messages.append(message)
        event, now = message.get("event"), self._loop.time()
        if event not in ("media", "mark", "clear"):
            return self._refuse(f"an event Twilio does not accept: {event!r}")
        if message.get("streamSid") != self.stream_sid:
            return self._refuse(f"{event} for streamSid {message.get('streamSid')!r}")
        body = message.get(event)
        if event == "clear":
            self.clears.append(now)
            return self._buffer.clear(now)
        if event == "mark":
            name = body.get("name") if isinstance(body, dict) else None
            if not isinstance(name, str):
                return self._refuse(f"a mark without a name: {text[:80]!r}")
            self.marks_received.append(name)
            return self._buffer.mark(now, name)
        audio = _payload(body)
        if audio is None:
            return self._refuse(f"media without a base64 payload: {text[:80]!r}")
        self.received_media_messages += 1
        return self._buffer.append(now, audio)

    def _refuse(self, problem: str) -> list[str]:
        self.protocol_errors.append(problem)
        return []

    def _summary(self) -> str:
        marks = [name for name, _ in self.marks_echoed]
        return (
            f"{len(self.messages)} messages, {self.played_ms():.0f} ms played, marks echoed "
            f"{marks}, closed {self.close_code} {self.close_reason!r}, {self.protocol_errors}"
        )


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _payload(body: object) -> bytes | None:
    """The μ-law of a media body, or None if its payload is not whole, valid base64."""
    payload = body.get("payload") if isinstance(body, dict) else None
    if not isinstance(payload, str):
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        return None
