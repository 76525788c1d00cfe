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
import hashlib
import hmac
from typing import Any

import orjson

from voxgate.codecs.output_format import Encoding
from voxgate.gateway.telephony.dialect import (
    CallerAudio,
    CallEvent,
    CallStarted,
    CallStopped,
    Digit,
    MarkPlayed,
    Nothing,
)
from voxgate.gateway.telephony.messages import audio, field, invalid, json_object, key, text


class TwilioDialect:
    name = "twilio"
    encoding: Encoding = "mulaw"
    sample_rate = 8000
    marks = True

    def __init__(self) -> None:
        self.stream_sid: str | None = None

    def parse(self, data: str | bytes) -> CallEvent:
        message = json_object(data, "Twilio")
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
            return _media(field(message, "media"))
        if event == "mark":
            return MarkPlayed(text(field(message, "mark"), "name"))
        if event == "dtmf":
            return Digit(key(field(message, "dtmf").get("digit")))
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
        start = field(message, "start")
        stream_sid = text(start, "streamSid")
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


def _media(media: dict[str, Any]) -> CallerAudio:
    if media.get("track", "inbound") != "inbound":
        return CallerAudio(b"")  # only the caller's side is the agent's business
    samples = audio(media.get("payload"))
    timestamp = media.get("timestamp")
    stamp = int(timestamp) if isinstance(timestamp, str) and timestamp.isdigit() else None
    return CallerAudio(samples, stamp)
