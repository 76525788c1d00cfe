"""The ``/v1/realtime`` WebSocket protocol: declared message schemas, no I/O.

Every client message is a JSON object with a ``type``; each type is a msgspec Struct whose
annotations are its schema (types, bounds, patterns, defaults), so decoding *is*
validation, and the same declarations produce the JSON Schema in docs/protocol.md.
Server messages are Structs too, encoded here; audio goes out as binary frames with a
small header (``pack_audio_frame``) or, on request, as base64 inside an ``audio`` message.
"""

from __future__ import annotations

import struct
from typing import Annotated, Any, Literal

import msgspec

from voxgate.errors import ProtocolViolation

PROTOCOL_VERSION = 1
MAX_TEXT_CHARS = 10_000  # one text.append; the segmenter caps chunk size separately
MAX_REF_AUDIO_B64 = 1_000_000  # larger reference audio: clone it over REST, use its voice_id
MAX_SEQ = 2**53 - 1  # the largest integer every JSON client (JavaScript's Number) holds exactly
MAX_FRAME_SEQ = 2**32 - 1  # an audio frame's seq is a u32

ContextId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
EventId = Annotated[str, msgspec.Meta(max_length=64)]
Milliseconds = Annotated[float, msgspec.Meta(ge=0, le=86_400_000)]


class _Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    event_id: EventId | None = None  # echoed on the ack or error this message causes


# -- client -> server ---------------------------------------------------------------------


class OutputFormatSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    encoding: Literal["pcm_s16le", "mulaw", "opus", "ogg_opus", "mp3"] = "pcm_s16le"
    sample_rate: Literal[8000, 16000, 24000, 48000] | None = None  # None: the encoding's default
    bitrate: Annotated[int, msgspec.Meta(ge=6000, le=320_000)] | None = None
    complexity: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None


class SegmenterSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    first_min_chars: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    first_clause_boundaries: bool | None = None
    first_time_bound: Annotated[float, msgspec.Meta(gt=0, le=10)] | None = None
    min_chars: Annotated[int, msgspec.Meta(ge=1, le=2000)] | None = None
    max_chars: Annotated[int, msgspec.Meta(ge=20, le=2000)] | None = None
    time_bound: Annotated[float, msgspec.Meta(gt=0, le=30)] | None = None
    runway_ms: Annotated[float, msgspec.Meta(ge=0, le=10_000)] | None = None


class SessionUpdate(_Message, tag="session.update"):
    """Configure the session; allowed until the first text.append."""

    voice_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    ref_audio: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REF_AUDIO_B64)] | None = (
        None
    )
    speed: Annotated[float, msgspec.Meta(ge=0.25, le=4.0)] | None = None
    output_format: OutputFormatSpec | None = None
    audio_transport: Literal["binary", "base64"] | None = None
    pacing: Literal["fast", "realtime"] | None = None
    segmenter: SegmenterSpec | None = None
    # Whose abbreviations and list markers decide sentence ends; None: the voice's language.
    language: Annotated[str, msgspec.Meta(pattern="^[a-z]{2,3}$")] | None = None
    caller_audio: bool | None = None  # forward a call leg's caller audio to this socket


class Auth(_Message, tag="auth"):
    """A client token, for browsers that cannot set headers; must be the first message."""

    token: Annotated[str, msgspec.Meta(min_length=8, max_length=200)]


class TextAppend(_Message, tag="text.append"):
    text: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
    context_id: ContextId = "default"
    # Acknowledged with text.ack; a repeat is ignored.
    seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] | None = None


class TextFlush(_Message, tag="text.flush"):
    context_id: ContextId = "default"


class ContextClose(_Message, tag="context.close"):
    context_id: ContextId = "default"


class Interrupt(_Message, tag="interrupt"):
    context_id: ContextId | None = None  # None: every active context
    played_ms: Milliseconds | None = None  # how far the listener got; default: all delivered


class SessionResume(_Message, tag="session.resume"):
    """Continue a session whose socket dropped; the first message of the new socket."""

    session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    resume_token: Annotated[str, msgspec.Meta(min_length=8, max_length=200)]
    # The seq of the last audio frame the client received; None: it received none.
    last_seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_FRAME_SEQ)] | None = None


class UsageGet(_Message, tag="usage.get"):
    pass


class Ping(_Message, tag="ping"):
    pass


ClientMessage = (
    SessionUpdate
    | Auth
    | SessionResume
    | TextAppend
    | TextFlush
    | ContextClose
    | Interrupt
    | UsageGet
    | Ping
)
CLIENT_MESSAGES: tuple[type[_Message], ...] = (
    SessionUpdate,
    Auth,
    SessionResume,
    TextAppend,
    TextFlush,
    ContextClose,
    Interrupt,
    UsageGet,
    Ping,
)

_decoder = msgspec.json.Decoder(ClientMessage)


def decode_client_message(data: str | bytes) -> ClientMessage:
    """Parse and validate one client message, or raise ``ProtocolViolation`` with a code."""
    try:
        message: ClientMessage = _decoder.decode(data)
        return message
    except msgspec.ValidationError as exc:
        text = str(exc)
        code = (
            "unknown_type" if "Invalid value" in text and "`$.type`" in text else "invalid_message"
        )
        if "Object missing required field `type`" in text:
            code = "unknown_type"
        raise ProtocolViolation(text, code=code) from None
    except msgspec.DecodeError as exc:
        raise ProtocolViolation(f"malformed JSON: {exc}", code="invalid_json") from None


# -- server -> client ---------------------------------------------------------------------


class Limits(msgspec.Struct, kw_only=True):
    max_message_bytes: int
    max_text_chars: int
    max_contexts: int
    text_chars_per_second: int
    text_burst_chars: int
    idle_timeout_s: float
    max_queued_audio_ms: int


class SessionCreated(_Message, tag="session.created"):
    session_id: str
    protocol_version: int
    limits: Limits
    config: dict[str, Any]
    resume_token: str | None  # the secret for session.resume; None: this session cannot resume


class SessionResumed(_Message, tag="session.resumed"):
    """The answer to session.resume: the session goes on here, from ``next_seq``."""

    session_id: str
    last_seq: int | None  # as the client sent it
    next_seq: int  # the seq of the next audio frame this socket receives
    replayed: int  # messages (audio and events) that follow and had been sent before
    config: dict[str, Any]


class SessionUpdated(_Message, tag="session.updated"):
    config: dict[str, Any]


class TextAck(_Message, tag="text.ack"):
    context_id: str
    seq: int
    duplicate: bool = False


class AudioMessage(_Message, tag="audio"):
    context_id: str
    chunk_index: int
    seq: int
    timestamp: int
    offset_ms: float
    duration_ms: float
    encoding: str
    audio: str  # base64


class WordOut(msgspec.Struct):
    text: str
    start_ms: float
    end_ms: float
    char_start: int
    char_end: int


class ChunkStartedOut(_Message, tag="chunk.started"):
    context_id: str
    chunk_index: int
    text: str
    start_ms: float


class ChunkEndedOut(_Message, tag="chunk.ended"):
    context_id: str
    chunk_index: int
    text: str
    start_ms: float
    end_ms: float
    words: list[WordOut]


class ChunkFailedOut(_Message, tag="chunk.failed"):
    context_id: str
    chunk_index: int
    text: str
    code: str
    message: str
    partial: bool


class UsageOut(msgspec.Struct):
    characters: int
    audio_ms: float
    chunks: int


class ContextDoneOut(_Message, tag="context.done"):
    context_id: str
    usage: UsageOut


class InterruptedOut(_Message, tag="interrupted"):
    context_id: str
    heard: str
    unheard: str
    played_ms: float
    usage: UsageOut


class UsageReport(_Message, tag="usage"):
    session_characters: int
    session_held: int
    session_pending: int
    balance_available: int | None  # None: the store cannot be reached right now


class ErrorOut(_Message, tag="error"):
    code: str
    message: str
    fatal: bool
    context_id: str | None = None


class Pong(_Message, tag="pong"):
    pass


class TelephonyAttached(_Message, tag="telephony.attached"):
    """A call leg took the session's audio; events stay on this socket."""

    provider: str
    stream_id: str
    call_id: str


class TelephonyDetached(_Message, tag="telephony.detached"):
    """The call leg is gone (``stop``, hang-up, dropped); audio comes back to this socket."""

    provider: str
    stream_id: str
    reason: str


class TelephonyDtmf(_Message, tag="telephony.dtmf"):
    """The caller pressed a key."""

    stream_id: str
    digit: str


class PlayoutOut(_Message, tag="playout"):
    """While a WebRTC track plays the session: its state, every 250 ms."""

    buffered_ms: float
    level: float  # RMS of the last packet sent, 0..1
    packets_sent: int
    silent_packets: int
    underruns_upstream: int
    underruns_gateway: int


_encoder = msgspec.json.Encoder()


def encode_server_message(message: _Message) -> str:
    return _encoder.encode(message).decode()


# -- binary audio frames ------------------------------------------------------------------

ENCODING_CODES = {"pcm_s16le": 1, "mulaw": 2, "opus": 3, "ogg_opus": 4, "mp3": 5}
# The caller's side of a call leg (the phone's microphone), μ-law 8 kHz as the provider sent
# it; its context id field holds the leg's stream id.
ENCODING_CODES["caller_mulaw"] = 6
ENCODING_CODES["caller_pcm_s16le"] = 7  # the same, linear PCM 16 kHz (Vonage)
_ENCODINGS = {v: k for k, v in ENCODING_CODES.items()}
_TAIL = struct.Struct(">II")  # seq, timestamp


def pack_audio_frame(
    encoding: str, context_id: str, seq: int, timestamp: int, payload: bytes
) -> bytes:
    """``version u8 | encoding u8 | id length u8 | context id | seq u32 | ts u32 | audio``."""
    ctx = context_id.encode()
    head = bytes((PROTOCOL_VERSION, ENCODING_CODES[encoding], len(ctx)))
    return b"".join((head, ctx, _TAIL.pack(seq & 0xFFFFFFFF, timestamp & 0xFFFFFFFF), payload))


def unpack_audio_frame(frame: bytes) -> tuple[str, str, int, int, bytes]:
    """(encoding, context_id, seq, timestamp, payload) of a binary audio frame."""
    if len(frame) < 11 or frame[0] != PROTOCOL_VERSION:
        raise ProtocolViolation("not a voxgate v1 audio frame", code="invalid_frame")
    end = 3 + frame[2]
    seq, timestamp = _TAIL.unpack_from(frame, end)
    return _ENCODINGS[frame[1]], frame[3:end].decode(), seq, timestamp, frame[end + 8 :]


def json_schema() -> dict[str, Any]:
    """JSON Schema of every client message, for the docs and for client generators."""
    schema: dict[str, Any] = msgspec.json.schema(ClientMessage)
    return schema
