"""Request bodies of the engine's API, checked field by field into typed values.

Each failure is an ``InvalidInput`` whose ``code`` names the rule that was broken, so the
HTTP answer says exactly what to fix.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from voxgate.errors import InvalidInput, LimitExceeded
from voxgate.upstream.models import (
    AUDIO_FORMATS,
    GENDERS,
    LANGUAGES,
    MAX_INPUT_CHARS,
    MAX_SPEED,
    MIN_SPEED,
)

# 30 s of 48 kHz stereo 16-bit WAV is 5.8 MB, 7.7 MB as base64: this leaves room for
# less efficient containers while bounding what a request can make us decode.
MAX_REF_AUDIO_B64 = 12_000_000
MAX_NAME_CHARS = 100
MAX_TAGS = 20
MAX_TAG_CHARS = 50
MAX_PAGE_LIMIT = 100


@dataclass(frozen=True, slots=True)
class SpeechParams:
    text: str
    voice_id: str | None
    ref_audio: bytes | None
    response_format: str
    speed: float
    language: str | None  # an engine extension: speak a voice in another language


@dataclass(frozen=True, slots=True)
class CloneParams:
    name: str
    ref_audio: bytes
    language: str
    gender: str | None


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(value, dict):
        raise InvalidInput("request body must be a JSON object", code="invalid_json")
    return value


def speech_params(body: dict[str, Any], *, default_format: str) -> SpeechParams:
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("input is required and must be a non-empty string", code="missing_input")
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidInput(
            f"input has {len(text)} characters; the limit is {MAX_INPUT_CHARS}",
            code="text_too_long",
        )
    voice_id, ref_audio = body.get("voice_id"), body.get("ref_audio")
    if (voice_id is None) == (ref_audio is None):
        raise InvalidInput("give exactly one of voice_id and ref_audio", code="voice_selection")
    if voice_id is not None and (not isinstance(voice_id, str) or not voice_id):
        raise InvalidInput("voice_id must be a non-empty string", code="invalid_voice_id")
    return SpeechParams(
        text=text,
        voice_id=voice_id,
        ref_audio=None if ref_audio is None else decode_audio_field(ref_audio),
        response_format=_format(body.get("response_format", default_format)),
        speed=_speed(body.get("speed", 1.0)),
        language=None if body.get("language") is None else language(body["language"]),
    )


def clone_params(body: dict[str, Any]) -> CloneParams:
    if "ref_audio" not in body:
        raise InvalidInput("ref_audio is required", code="missing_ref_audio")
    gender = body.get("gender")
    return CloneParams(
        name=name(body.get("name")),
        ref_audio=decode_audio_field(body["ref_audio"]),
        language=language(body.get("language", "en")),
        gender=None if gender is None else _gender(gender),
    )


def update_params(body: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = name(body["name"])
    if "language" in body:
        changes["language"] = language(body["language"])
    if "gender" in body:
        changes["gender"] = _gender(body["gender"])
    if "tags" in body:
        changes["tags"] = _tags(body["tags"])
    if not changes:
        raise InvalidInput(
            "nothing to update: give name, language, gender or tags", code="empty_update"
        )
    return changes


def paging(query: dict[str, str]) -> tuple[int, int]:
    page = _positive_int(query.get("page", "1"), "page")
    limit = _positive_int(query.get("limit", "50"), "limit")
    if limit > MAX_PAGE_LIMIT:
        raise InvalidInput(f"limit must be at most {MAX_PAGE_LIMIT}", code="invalid_paging")
    return page, limit


def decode_audio_field(value: Any) -> bytes:
    """Base64 audio, its size checked before decoding; a data: URL prefix is accepted."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("ref_audio must be a base64 string", code="invalid_base64")
    if len(value) > MAX_REF_AUDIO_B64:
        raise LimitExceeded(
            f"ref_audio is {len(value)} base64 characters; the limit is {MAX_REF_AUDIO_B64}",
            code="ref_audio_too_large",
        )
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        audio = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("ref_audio is not valid base64", code="invalid_base64") from exc
    if not audio:
        raise InvalidInput("ref_audio is empty", code="invalid_base64")
    return audio


def language(value: Any) -> str:
    if value not in LANGUAGES:
        raise InvalidInput(
            f"unsupported language {value!r}; use one of {', '.join(LANGUAGES)}",
            code="unsupported_language",
        )
    return str(value)


def name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("name is required and must be a non-empty string", code="invalid_name")
    if len(value) > MAX_NAME_CHARS:
        raise InvalidInput(f"name must be at most {MAX_NAME_CHARS} characters", code="invalid_name")
    return value.strip()


def _gender(value: Any) -> str:
    if value not in GENDERS:
        raise InvalidInput("gender must be 'male' or 'female'", code="invalid_gender")
    return str(value)


def _tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise InvalidInput("tags must be an array of strings", code="invalid_tags")
    if len(value) > MAX_TAGS or any(len(t) > MAX_TAG_CHARS for t in value):
        raise InvalidInput(
            f"at most {MAX_TAGS} tags of at most {MAX_TAG_CHARS} characters", code="invalid_tags"
        )
    return tuple(value)


def _format(value: Any) -> str:
    if value not in AUDIO_FORMATS:
        raise InvalidInput(
            f"response_format must be one of {', '.join(AUDIO_FORMATS)}", code="invalid_format"
        )
    return str(value)


def _speed(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("speed must be a number", code="invalid_speed")
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise InvalidInput(
            f"speed must be between {MIN_SPEED} and {MAX_SPEED}", code="invalid_speed"
        )
    return float(value)


def _positive_int(value: str, field: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise InvalidInput(f"{field} must be a positive integer", code="invalid_paging")
    return int(value)
