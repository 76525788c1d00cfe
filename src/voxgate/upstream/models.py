"""Typed requests and responses of the Voxtral TTS API, and the limits it documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from voxgate.errors import InvalidInput, UpstreamError

AudioFormat = Literal["mp3", "wav", "flac", "opus", "pcm"]
Gender = Literal["male", "female"]

AUDIO_FORMATS: tuple[AudioFormat, ...] = ("mp3", "wav", "flac", "opus", "pcm")
LANGUAGES: tuple[str, ...] = ("en", "fr", "es", "pt", "it", "nl", "de", "hi", "ar")
GENDERS: tuple[Gender, ...] = ("male", "female")
MAX_INPUT_CHARS = 5000
MAX_SAVED_VOICES = 20
MIN_SPEED = 0.25
MAX_SPEED = 4.0


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    """One request to ``/generate`` or ``/stream``; exactly one of voice_id and ref_audio."""

    input: str
    voice_id: str | None = None
    ref_audio: str | None = None
    response_format: AudioFormat | None = None
    speed: float = 1.0

    def __post_init__(self) -> None:
        if not self.input or not self.input.strip():
            raise InvalidInput("input must be a non-empty string")
        if len(self.input) > MAX_INPUT_CHARS:
            raise InvalidInput(
                f"input is {len(self.input)} characters; the limit is {MAX_INPUT_CHARS}",
                code="text_too_long",
            )
        if (self.voice_id is None) == (self.ref_audio is None):
            raise InvalidInput("give exactly one of voice_id and ref_audio")
        if self.response_format is not None and self.response_format not in AUDIO_FORMATS:
            raise InvalidInput(f"response_format must be one of {', '.join(AUDIO_FORMATS)}")
        if not MIN_SPEED <= self.speed <= MAX_SPEED:
            raise InvalidInput(f"speed must be between {MIN_SPEED} and {MAX_SPEED}")

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"input": self.input, "speed": self.speed}
        if self.voice_id is not None:
            body["voice_id"] = self.voice_id
        if self.ref_audio is not None:
            body["ref_audio"] = self.ref_audio
        if self.response_format is not None:
            body["response_format"] = self.response_format
        return body


@dataclass(frozen=True, slots=True)
class GeneratedSpeech:
    audio: bytes
    format: str
    generation_id: str
    audio_url: str | None
    chunks: int
    credits_used: int


@dataclass(frozen=True, slots=True)
class Voice:
    id: str
    name: str
    language: str | None
    gender: str | None
    mistral_voice_id: str | None = None
    ref_audio_url: str | None = None
    tags: tuple[str, ...] = ()
    created_at: str | None = None


@dataclass(frozen=True, slots=True)
class VoicePage:
    voices: tuple[Voice, ...]
    total: int
    page: int
    limit: int


@dataclass(frozen=True, slots=True)
class VoiceUpdate:
    """Fields to change on a saved voice; ``None`` leaves a field as it is."""

    name: str | None = None
    language: str | None = None
    gender: Gender | None = None
    tags: tuple[str, ...] | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for key in ("name", "language", "gender"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.tags is not None:
            body["tags"] = list(self.tags)
        return body


def voice_from_json(data: Any) -> Voice:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise UpstreamError("voice object without an id in the upstream response", status=200)
    tags = data.get("tags") or ()
    return Voice(
        id=data["id"],
        name=str(data.get("name", "")),
        language=data.get("language"),
        gender=data.get("gender"),
        mistral_voice_id=data.get("mistral_voice_id"),
        ref_audio_url=data.get("ref_audio_url"),
        tags=tuple(str(t) for t in tags),
        created_at=data.get("created_at"),
    )
