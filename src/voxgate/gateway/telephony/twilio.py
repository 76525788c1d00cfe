"""Twilio Media Streams, bidirectional (TwiML ``<Connect><Stream>``), as Twilio documents them.

Twilio sends ``connected``, then ``start`` (``streamSid``, ``callSid``, ``tracks``,
``mediaFormat``, ``customParameters``), then ``media`` (caller audio, base64 μ-law 8 kHz),
``dtmf``, ``mark`` (echoes) and finally ``stop``; it accepts ``media``, ``mark`` and
``clear``, each carrying the stream's ``streamSid``
(https://www.twilio.com/docs/voice/media-streams/websocket-messages).

``X-Twilio-Signature`` is the base64 HMAC-SHA1, keyed with the account's auth token, of the
URL Twilio requested (a WebSocket request has no body parameters to append)
(https://www.twilio.com/docs/usage/webhooks/webhooks-security).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson

from voxgate.codecs.output_format import Encoding
from voxgate.errors import ProtocolViolation
from voxgate.gateway.telephony.dialect import (
    CallerAudio,
    CallEvent,
    CallStarted,
    CallStopped,
    Digit,
    MarkPlayed,
    Nothing,
)

# Caller audio comes in 20 ms frames (160 bytes); anything far longer is not Twilio's.
MAX_PAYLOAD_B64 = 4 * 1600 // 3 + 4  # 200 ms of μ-law
MAX_MESSAGE_CHARS = 16_384


def invalid(message: str) -> ProtocolViolation:
    return ProtocolViolation(message, code="invalid_message")


class TwilioDialect:
    name = "twilio"
    encoding: Encoding = "mulaw"
    sample_rate = 8000
    marks = True

    def __init__(self) -> None:
        self.stream_sid: str | None = None

    def parse(self, data: str | bytes) -> CallEvent:
        if isinstance(data, bytes):
            raise invalid("Twilio sends text messages only")
        message = _object(data)
        event = message.get("event")
        if event == "connected":
            return Nothing()
        if event == "start":
            return self._start(message)
        if self.stream_sid is None:
            raise invalid(f"{event!r} before the stream's start message")
        if event not in ("media", "mark", "dtmf", "stop"):
            raise invalid(f"unknown event {event!r}")
        if message.get("streamSid") != self.stream_sid:
            raise invalid(f"streamSid {message.get('streamSid')!r} is not this stream's")
        if event == "media":
            return _media(_field(message, "media"))
        if event == "mark":
            return MarkPlayed(_text(_field(message, "mark"), "name"))
        if event == "dtmf":
            return Digit(_text(_field(message, "dtmf"), "digit"))
        return CallStopped()

    def media(self, payload: bytes) -> str:
        media = {"payload": base64.b64encode(payload).decode()}
        return self._message({"event": "media", "media": media})

    def mark(self, name: str) -> str:
        return self._message({"event": "mark", "mark": {"name": name}})

    def clear(self) -> str:
        return self._message({"event": "clear"})

    def _start(self, message: dict[str, Any]) -> CallStarted:
        if self.stream_sid is not None:
            raise invalid("a second start message on one stream")
        start = _field(message, "start")
        stream_sid = _text(start, "streamSid")
        fmt = start.get("mediaFormat")
        if isinstance(fmt, dict) and (fmt.get("encoding"), fmt.get("sampleRate")) != (
            "audio/x-mulaw",
            8000,
        ):
            raise invalid(f"media format {fmt!r}: only audio/x-mulaw at 8000 Hz is spoken")
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            raise invalid("customParameters must be an object")
        self.stream_sid = stream_sid
        parameters = {str(k): str(v) for k, v in params.items()}
        return CallStarted(stream_sid, str(start.get("callSid") or ""), parameters)

    def _message(self, body: dict[str, Any]) -> str:
        if self.stream_sid is None:
            raise RuntimeError("no stream yet: nothing may be sent before start")
        message = {"event": body.pop("event"), "streamSid": self.stream_sid, **body}
        return orjson.dumps(message).decode()


def signature(auth_token: str, url: str) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a request to ``url`` without parameters."""
    digest = hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_matches(auth_token: str, urls: list[str], given: str | None) -> bool:
    """Whether ``given`` signs one of ``urls`` (the request as Twilio may have addressed it)."""
    if not given:
        return False
    return any(hmac.compare_digest(signature(auth_token, url), given) for url in urls)


def _object(text: str) -> dict[str, Any]:
    if len(text) > MAX_MESSAGE_CHARS:
        raise invalid(f"message of {len(text)} characters; at most {MAX_MESSAGE_CHARS}")
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise invalid("not JSON") from None
    if not isinstance(message, dict):
        raise invalid("a message must be a JSON object")
    return message


def _field(message: dict[str, Any], name: str) -> dict[str, Any]:
    value = message.get(name)
    if not isinstance(value, dict):
        raise invalid(f"{message.get('event')!r} without its {name!r} object")
    return value


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise invalid(f"{name!r} must be a string of 1 to 256 characters")
    return value


def _media(media: dict[str, Any]) -> CallerAudio:
    if media.get("track", "inbound") != "inbound":
        return CallerAudio(b"")  # only the caller's side is the agent's business
    payload = media.get("payload")
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_B64:
        raise invalid(f"media payload must be base64 of at most {MAX_PAYLOAD_B64} characters")
    try:
        audio = base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise invalid("media payload is not base64") from None
    timestamp = media.get("timestamp")
    stamp = int(timestamp) if isinstance(timestamp, str) and timestamp.isdigit() else None
    return CallerAudio(audio, stamp)
