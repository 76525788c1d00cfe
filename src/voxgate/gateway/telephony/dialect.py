"""What a provider's media socket says, whatever its dialect, and what a dialect must do.

A dialect is pure: it parses the provider's messages into the events below and formats the
gateway's (audio, a mark, a clear) in the provider's words. It keeps only the state its
protocol needs (the stream id it must check and echo).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from voxgate.codecs.output_format import Encoding


@dataclass(frozen=True, slots=True)
class CallStarted:
    stream_id: str
    call_id: str
    parameters: dict[str, str] = field(default_factory=dict)  # the caller-set attach data


@dataclass(frozen=True, slots=True)
class CallerAudio:
    payload: bytes  # in the dialect's codec (``Dialect.encoding``), one provider frame
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    name: str


@dataclass(frozen=True, slots=True)
class Digit:
    digit: str


@dataclass(frozen=True, slots=True)
class CallStopped:
    pass


@dataclass(frozen=True, slots=True)
class Nothing:
    """A message that needs no action (Twilio's ``connected``)."""


CallEvent = CallStarted | CallerAudio | MarkPlayed | Digit | CallStopped | Nothing


class Dialect(Protocol):
    name: str  # the provider, as in the endpoint's path
    encoding: Encoding  # the codec of audio both ways (``mulaw`` or ``pcm_s16le``)
    sample_rate: int
    marks: bool  # whether the provider echoes marks once their audio played

    def parse(self, data: str | bytes) -> CallEvent:
        """One WebSocket message (text, or binary where the dialect carries audio so);
        ``ProtocolViolation`` (``invalid_message``) if it is not the provider's."""
        ...

    def media(self, payload: bytes) -> str | bytes:
        """One 20 ms frame of audio for the call (a binary message where bytes)."""
        ...

    def mark(self, name: str) -> str:
        """A mark the provider echoes once the audio sent before it has played (only
        called when ``marks``)."""
        ...

    def clear(self) -> str | None:
        """Drop the audio the provider still holds (Twilio then echoes every pending mark,
        Plivo drops them); None when the provider has no such message and unsent audio is
        simply not sent."""
        ...
