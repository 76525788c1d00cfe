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
    encoding: Encoding  # the codec of audio both ways
    sample_rate: int

    def parse(self, text: str) -> CallEvent:
        """One text message; ``ProtocolViolation`` (``invalid_message``) if it is not valid."""
        ...

    def media(self, payload: bytes) -> str:
        """One 20 ms frame of audio for the call."""
        ...

    def mark(self, name: str) -> str:
        """A mark the provider echoes once the audio sent before it has played."""
        ...

    def clear(self) -> str:
        """Drop the audio the provider still holds; it echoes every pending mark."""
        ...
