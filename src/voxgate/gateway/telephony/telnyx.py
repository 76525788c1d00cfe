"""Telnyx Media Streaming over WebSockets, bidirectional RTP, as Telnyx documents it.

Telnyx opens the socket and sends ``connected``, then ``start`` (top-level ``stream_id``;
``start.call_control_id``, ``start.custom_parameters``, ``start.media_format``), then
``media`` (``media.track``, ``chunk``, ``timestamp``, ``payload``: base64 RTP payload, no
RTP header), ``dtmf`` (``dtmf.digit``), ``mark`` (echoes), ``error`` and finally ``stop``;
in bidirectional mode it takes ``media`` (``media.payload``, 20 ms to 30 s of audio),
``mark`` (``mark.name``, sent back once the audio before it has played, at once if none is
queued) and ``clear`` (drops queued audio and sends queued marks back)
(https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket).
Errors in what the application sends come back as an ``error`` frame, ``error.code``
``100002`` unknown_error, ``100003`` malformed_frame, ``100004`` invalid_media, ``100005``
rate_limit_reached (the ``streaming_start`` description,
https://developers.telnyx.com/api/call-control/start-call-streaming).

The customer passes ``session_id`` and ``token`` as custom parameters, which Telnyx
delivers as the ``start`` frame's ``custom_parameters`` object. Of the Call Control
commands that start a stream only ``streaming_start`` takes them (``[{name, value}]``,
https://developers.telnyx.com/api-reference/call-commands/streaming-start); ``stream_codec``
PCMU makes Telnyx transcode a PCMA call's inbound side::

    POST https://api.telnyx.com/v2/calls/{call_control_id}/actions/streaming_start
    {"stream_url": "wss://voice.example.com/v1/telephony/telnyx",
     "stream_track": "inbound_track", "stream_codec": "PCMU",
     "stream_bidirectional_mode": "rtp", "stream_bidirectional_codec": "PCMU",
     "custom_parameters": [{"name": "session_id", "value": "0bba31b5…"},
                           {"name": "token", "value": "vgt_…"}]}

or TeXML, whose ``<Parameter>`` children land in the same place
(https://developers.telnyx.com/docs/voice/programmable-voice/texml-verbs/stream)::

    <Response><Connect>
      <Stream url="wss://voice.example.com/v1/telephony/telnyx" codec="PCMU"
              bidirectionalMode="rtp" bidirectionalCodec="PCMU">
        <Parameter name="session_id" value="0bba31b5…"/>
        <Parameter name="token" value="vgt_…"/>
      </Stream>
    </Connect></Response>

The token may instead be the stream's ``stream_auth_token``, which Telnyx repeats in the
``connected`` frame as ``connected.x-telnyx-streaming-auth-token``; a ``token`` custom
parameter wins over it.

Undocumented, so decided here: frames the gateway sends carry no ``stream_id`` (the socket
carries one stream, and Telnyx's media frame needs only ``media.payload``); a message
without ``stream_id`` is taken as this stream's, one with another is refused; ``track``
``outbound`` (a ``both_tracks`` stream echoing our own audio) is ignored; caller frames are
passed on in the order they arrive (Telnyx says order is not guaranteed, but reordering
would hold audio back) with no timestamp (its unit is not given); a caller frame over
200 ms is not Telnyx's; ``error`` frames are logged and change nothing.
"""

from __future__ import annotations

import base64
import logging
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

log = logging.getLogger(__name__)

MEDIA_FORMATS = frozenset({("PCMU", 8000), ("AUDIO/X-MULAW", 8000)})  # new docs, older docs
AUTH_TOKEN_FIELD = "x-telnyx-streaming-auth-token"
EVENTS = frozenset({"media", "mark", "dtmf", "error", "stop"})  # after start


class TelnyxDialect:
    name = "telnyx"
    encoding: Encoding = "mulaw"
    sample_rate = 8000
    marks = True

    def __init__(self) -> None:
        self.stream_id: str | None = None
        self._auth_token: str | None = None

    def parse(self, data: str | bytes) -> CallEvent:
        message = json_object(data, "Telnyx")
        event = message.get("event")
        if event == "connected":
            return self._connected(message)
        if event == "start":
            return self._start(message)
        if event not in EVENTS:
            raise invalid(f"unknown event {event!r}")
        if self.stream_id is None and event != "error":
            raise invalid(f"{event!r} before the stream's start message")
        if self.stream_id is not None and message.get("stream_id", self.stream_id) != (
            self.stream_id
        ):
            raise invalid(f"stream_id {message.get('stream_id')!r} is not this stream's")
        if event == "media":
            return _media(field(message, "media"))
        if event == "mark":
            return MarkPlayed(text(field(message, "mark"), "name"))
        if event == "dtmf":
            return Digit(key(field(message, "dtmf").get("digit")))
        if event == "error":
            return self._error(message)
        return CallStopped()

    def media(self, payload: bytes) -> str:
        media = {"payload": base64.b64encode(payload).decode()}
        return self._message({"event": "media", "media": media})

    def mark(self, name: str) -> str:
        return self._message({"event": "mark", "mark": {"name": name}})

    def clear(self) -> str:
        return self._message({"event": "clear"})

    def _connected(self, message: dict[str, Any]) -> Nothing:
        if self.stream_id is not None:
            raise invalid("a connected message after the stream's start")
        body = message.get("connected")
        token = body.get(AUTH_TOKEN_FIELD) if isinstance(body, dict) else None
        if isinstance(token, str) and token:
            self._auth_token = token
        return Nothing()

    def _start(self, message: dict[str, Any]) -> CallStarted:
        if self.stream_id is not None:
            raise invalid("a second start message on one stream")
        start = field(message, "start")
        stream_id = text(message, "stream_id")
        fmt = start.get("media_format")
        if isinstance(fmt, dict) and (
            (str(fmt.get("encoding")).upper(), fmt.get("sample_rate")) not in MEDIA_FORMATS
            or fmt.get("channels", 1) != 1
        ):
            raise invalid(f"media format {fmt!r}: only PCMU at 8000 Hz, mono, is spoken")
        params = start.get("custom_parameters") or {}
        if not isinstance(params, dict):
            raise invalid("custom_parameters must be an object")
        parameters = {str(k): str(v) for k, v in params.items()}
        if "token" not in parameters and self._auth_token is not None:
            parameters["token"] = self._auth_token
        self.stream_id = stream_id
        return CallStarted(stream_id, str(start.get("call_control_id") or ""), parameters)

    def _error(self, message: dict[str, Any]) -> Nothing:
        # Telnyx's word on something we sent: worth an operator's eye, not the call's end.
        body = message.get("error")
        error = body if isinstance(body, dict) else {}
        log.warning(
            "telnyx stream %s reports error %s %s: %s",
            self.stream_id,
            error.get("code"),
            error.get("title"),
            error.get("detail"),
        )
        return Nothing()

    def _message(self, body: dict[str, Any]) -> str:
        if self.stream_id is None:
            raise RuntimeError("no stream yet: nothing may be sent before start")
        return orjson.dumps(body).decode()


def _media(media: dict[str, Any]) -> CallerAudio | Nothing:
    track = media.get("track", "inbound")
    if track == "outbound":
        return Nothing()  # our own audio, on a both_tracks stream
    if track != "inbound":
        raise invalid(f"media track {track!r} is neither inbound nor outbound")
    samples = audio(media.get("payload"))
    return CallerAudio(samples)
