"""Vonage Voice API WebSockets (NCCO ``connect`` to a ``websocket`` endpoint), as Vonage
documents them (https://developer.vonage.com/en/voice/voice-api/concepts/websockets; the
NCCO: https://developer.vonage.com/en/voice/voice-api/ncco-reference#connect).

Vonage opens the socket and sends one text message first, ``websocket:connected``, with the
``content-type`` of the audio and, at the top level of the JSON, every key of the endpoint's
``headers``. Then the caller's audio comes in binary messages, 16-bit linear PCM (little
endian) at the NCCO's rate, 20 ms each (640 bytes at 16 kHz), and ``websocket:dtmf``
(``digit``, ``duration``) text messages between them. Vonage plays binary messages of the
same format, 640 bytes each, buffered in order (up to 3,072 of them); it takes two text
commands: ``{"action": "clear"}`` empties that buffer and is answered ``websocket:cleared``,
and ``{"action": "notify", "payload": {...}}`` is answered ``{"event": "websocket:notify",
"payload": {...}}`` once all the audio sent before it has played: the gateway's marks, named
in ``payload.name``. The call ends with the socket's close; there is no stop message.
The buffer's size is the tutorial's
(https://developer.vonage.com/en/tutorials/play-audio-into-a-websocket/create-the-websocket/node);
the earlier guide (https://github.com/Nexmo/nexmo-developer, ``voice/voice-api/guides/
websockets.md``) has the DTMF message's fields and caps ``headers`` at 512 bytes.

The attach data rides in the endpoint's ``headers`` (the customer's NCCO):

```json
[{"action": "connect",
  "endpoint": [{"type": "websocket",
                "uri": "wss://voice.example.com/v1/telephony/vonage",
                "content-type": "audio/l16;rate=16000",
                "headers": {"session_id": "0bba31b5fa1540c2898a5a8a07f9ae6f",
                            "token": "vgt_…", "call_uuid": "<uuid of the answer webhook>"}}]}]
```

Not documented, so decided here: the socket names no stream, so each one gets an id of its
own (``stream_id``); ``call_id`` is the ``call_uuid`` header when the NCCO sets it (Vonage
puts no call id in ``websocket:connected``), else empty. Only ``audio/l16;rate=16000`` is
spoken. A caller message of 2 to 6,400 bytes (200 ms), whole samples, is taken as audio.
A last frame shorter than 20 ms is padded with silence to 640 bytes, as Vonage asks.
Whether a clear answers the pending notifies or drops them is not said; the leg copes with
both (answers after a clear are stale, unanswered ones age out), and ``websocket:cleared``
needs no action. Header values that are not strings (the guide's example has numbers,
objects and lists) are kept as their JSON.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from voxgate.codecs.output_format import Encoding
from voxgate.gateway.telephony.dialect import (
    CallerAudio,
    CallEvent,
    CallStarted,
    Digit,
    MarkPlayed,
    Nothing,
)
from voxgate.gateway.telephony.messages import invalid, json_object, key

CONTENT_TYPE = "audio/l16;rate=16000"
FRAME_BYTES = 640  # 20 ms of 16-bit mono at 16 kHz
MAX_AUDIO_BYTES = 10 * FRAME_BYTES  # 200 ms: anything far longer is not Vonage's
_OWN_KEYS = ("event", "content-type")  # of websocket:connected; the rest are the headers


class VonageDialect:
    name = "vonage"
    encoding: Encoding = "pcm_s16le"
    sample_rate = 16000
    marks = True  # notify, echoed as websocket:notify once the audio before it has played

    def __init__(self, stream_id: str | None = None) -> None:
        self.stream_id = stream_id or uuid.uuid4().hex
        self.connected = False

    def parse(self, data: str | bytes) -> CallEvent:
        if isinstance(data, bytes):
            if not self.connected:
                raise invalid("audio before the websocket:connected message")
            return _audio(data)
        message = json_object(data, "Vonage")
        event = message.get("event")
        if event == "websocket:connected":
            return self._connected(message)
        if not self.connected:
            raise invalid(f"{event!r} before the websocket:connected message")
        if event == "websocket:dtmf":
            return Digit(key(message.get("digit")))
        if event == "websocket:notify":
            return MarkPlayed(_name(message))
        if event == "websocket:cleared":
            return Nothing()  # the answer to our clear: the leg has moved on already
        raise invalid(f"unknown event {event!r}")

    def media(self, payload: bytes) -> bytes:
        self._check_connected()
        if len(payload) > FRAME_BYTES:
            raise ValueError(f"a frame of {len(payload)} bytes; Vonage takes {FRAME_BYTES}")
        return payload.ljust(FRAME_BYTES, b"\0")

    def mark(self, name: str) -> str:
        return self._command({"action": "notify", "payload": {"name": name}})

    def clear(self) -> str:
        return self._command({"action": "clear"})

    def _connected(self, message: dict[str, Any]) -> CallStarted:
        if self.connected:
            raise invalid("a second websocket:connected message on one socket")
        content_type = message.get("content-type")
        if _media_type(content_type) != CONTENT_TYPE:
            raise invalid(f"content-type {content_type!r}: only {CONTENT_TYPE} is spoken")
        self.connected = True
        parameters = {k: _header(v) for k, v in message.items() if k not in _OWN_KEYS}
        return CallStarted(self.stream_id, parameters.get("call_uuid", ""), parameters)

    def _command(self, body: dict[str, Any]) -> str:
        self._check_connected()
        return orjson.dumps(body).decode()

    def _check_connected(self) -> None:
        if not self.connected:
            raise RuntimeError("no stream yet: nothing may be sent before websocket:connected")


def _media_type(value: object) -> str | None:
    # A media type's case and the spaces around its parameters carry no meaning.
    return value.replace(" ", "").lower() if isinstance(value, str) else None


def _header(value: object) -> str:
    # Headers may hold any JSON (the guide's example has numbers, objects, lists).
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _audio(data: bytes) -> CallerAudio:
    if not 2 <= len(data) <= MAX_AUDIO_BYTES or len(data) % 2:
        raise invalid(
            f"audio of {len(data)} bytes: 16-bit samples, at most {MAX_AUDIO_BYTES} bytes"
        )
    return CallerAudio(data)


def _name(message: dict[str, Any]) -> str:
    payload = message.get("payload")
    name = payload.get("name") if isinstance(payload, dict) else None
    if not isinstance(name, str) or not name or len(name) > 256:
        raise invalid("websocket:notify without the payload name of a mark of ours")
    return name
