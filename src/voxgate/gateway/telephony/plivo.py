"""Plivo Audio Streams, bidirectional (``<Stream bidirectional="true">``), as Plivo documents them.

Plivo sends ``start`` first (``start.streamId``, ``start.callId``, ``start.mediaFormat`` and,
beside ``start``, the ``extra_headers`` string), then ``media`` (caller audio, base64, about
20 ms a message), ``dtmf``, ``playedStream`` (a checkpoint reached) and ``clearedAudio``, each
with the stream's ``streamId``; it accepts ``playAudio`` (``media`` with ``contentType``,
``sampleRate`` and ``payload``, which "must match" the stream's ``contentType``),
``checkpoint`` and ``clearAudio``, the last two with the ``streamId``
(https://plivo.com/docs/voice-agents/audio-streaming/concepts/audio-streaming-reference,
https://plivo.com/docs/voice/audio-streaming/audio-streaming). A ``playedStream`` "will only
be emitted if the preceding events were played successfully"
(https://plivo.com/docs/voice/xml/the-stream-element/checkpoint-event): a ``clearAudio``
drops the checkpoints still pending, and Plivo answers it with ``clearedAudio`` alone.

The call attaches with the XML's ``extraHeaders``, which Plivo hands over in ``start`` as
``extra_headers``; ``contentType`` must be set, since the XML reference gives
``audio/x-l16;rate=8000`` as its default (https://docs.plivo.com/docs/voice/xml/audiostream)::

    <Response>
      <Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000"
              extraHeaders="sessionId=0bba31b5fa1540c2898a5a8a07f9ae6f;token=vgct_…">
        wss://voice.example.com/v1/telephony/plivo
      </Stream>
    </Response>

Undocumented or contradictory, so decided here:

* ``extraHeaders`` pairs are separated by ``;`` in the guide and in ``start``'s example, by
  ``,`` in the XML reference: both separate pairs here, each ``key=value``, the value
  percent-decoded (as the guide's own parser does); a piece without ``=`` is ignored. The
  XML reference allows only letters and digits in keys, so ``sessionId`` stands for
  ``session_id`` (which is taken as well).
* No WebSocket message ends a stream in the protocol reference: the socket closes. Plivo's
  Java stream SDK knows a ``stop`` event (``streamId``, ``reason``), so ``stop`` ends the call
  too; its ``streamId``, when it has one, must be this stream's.
* Caller audio other than 8 kHz μ-law (``start.mediaFormat``) is refused at ``start``; media
  of another track than ``inbound`` is not the agent's business and is passed over.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import unquote

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

CONTENT_TYPE = "audio/x-mulaw"
SAMPLE_RATE = 8000
# Caller audio comes in about 20 ms (160 bytes) a message; anything far longer is not Plivo's.
PAIR_SEPARATOR = re.compile(r"[;,]")
PARAMETER_ALIASES = {"sessionId": "session_id"}
EVENTS = frozenset({"media", "dtmf", "playedStream", "clearedAudio", "stop"})


class PlivoDialect:
    name = "plivo"
    encoding: Encoding = "mulaw"
    sample_rate = SAMPLE_RATE
    marks = True  # checkpoint / playedStream

    def __init__(self) -> None:
        self.stream_id: str | None = None

    def parse(self, data: str | bytes) -> CallEvent:
        message = json_object(data, "Plivo")
        event = message.get("event")
        if event == "start":
            return self._start(message)
        if self.stream_id is None:
            raise invalid(f"{event!r} before the stream's start message")
        if event not in EVENTS:
            raise invalid(f"unknown event {event!r}")
        stream_id = message.get("streamId", self.stream_id if event == "stop" else None)
        if stream_id != self.stream_id:
            raise invalid(f"streamId {stream_id!r} is not this stream's")
        if event == "media":
            return _media(field(message, "media"))
        if event == "dtmf":
            return Digit(key(field(message, "dtmf").get("digit")))
        if event == "playedStream":
            return MarkPlayed(text(message, "name"))
        if event == "clearedAudio":
            return Nothing()  # the pending checkpoints are gone with the audio: no echoes
        return CallStopped()

    def media(self, payload: bytes) -> str:
        media = {
            "contentType": CONTENT_TYPE,
            "sampleRate": SAMPLE_RATE,
            "payload": base64.b64encode(payload).decode(),
        }
        return self._message({"event": "playAudio", "media": media})

    def mark(self, name: str) -> str:
        return self._message({"event": "checkpoint", "streamId": self.stream_id, "name": name})

    def clear(self) -> str:
        return self._message({"event": "clearAudio", "streamId": self.stream_id})

    def _start(self, message: dict[str, Any]) -> CallStarted:
        if self.stream_id is not None:
            raise invalid("a second start message on one stream")
        start = field(message, "start")
        stream_id = text(start, "streamId")
        fmt = start.get("mediaFormat")
        if not isinstance(fmt, dict) or (fmt.get("encoding"), fmt.get("sampleRate")) != (
            CONTENT_TYPE,
            SAMPLE_RATE,
        ):
            raise invalid(
                f"media format {fmt!r}: only audio/x-mulaw at 8000 Hz is spoken "
                '(contentType="audio/x-mulaw;rate=8000" on the Stream)'
            )
        extra_headers = message.get("extra_headers") or ""
        if not isinstance(extra_headers, str):
            raise invalid("extra_headers must be a string")
        self.stream_id = stream_id
        return CallStarted(stream_id, str(start.get("callId") or ""), parameters(extra_headers))

    def _message(self, body: dict[str, Any]) -> str:
        if self.stream_id is None:
            raise RuntimeError("no stream yet: nothing may be sent before start")
        return orjson.dumps(body).decode()


def parameters(extra_headers: str) -> dict[str, str]:
    """The ``key=value`` pairs of a ``<Stream extraHeaders>`` as Plivo passes them on."""
    found: dict[str, str] = {}
    for piece in PAIR_SEPARATOR.split(extra_headers):
        key, equals, value = piece.partition("=")
        key = key.strip()
        if equals and key:
            found[key] = unquote(value.strip())
    for alias, key in PARAMETER_ALIASES.items():
        if alias in found:
            found.setdefault(key, found[alias])
    return found


def _media(media: dict[str, Any]) -> CallerAudio:
    if media.get("track", "inbound") != "inbound":
        return CallerAudio(b"")  # only the caller's side is the agent's business
    samples = audio(media.get("payload"))
    timestamp = media.get("timestamp")
    stamp = int(timestamp) if isinstance(timestamp, str) and timestamp.isdigit() else None
    return CallerAudio(samples, stamp)
