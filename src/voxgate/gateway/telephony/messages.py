"""Reading a provider's JSON messages: the checks every dialect makes the same way.

Each failure is ``ProtocolViolation`` ``invalid_message``; sizes are checked before
anything is decoded.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from voxgate.errors import ProtocolViolation

MAX_MESSAGE_CHARS = 16_384
# Caller audio comes in 20 ms frames; anything far longer is not a provider's.
MAX_PAYLOAD_B64 = 4 * 1600 // 3 + 4  # 200 ms of μ-law 8 kHz
PHONE_KEYS = frozenset("0123456789*#ABCD")


def invalid(message: str) -> ProtocolViolation:
    return ProtocolViolation(message, code="invalid_message")


def json_object(data: str | bytes, provider: str) -> dict[str, Any]:
    if isinstance(data, bytes):
        raise invalid(f"{provider} sends text messages only")
    if len(data) > MAX_MESSAGE_CHARS:
        raise invalid(f"message of {len(data)} characters; at most {MAX_MESSAGE_CHARS}")
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise invalid("not JSON") from None
    if not isinstance(message, dict):
        raise invalid("a message must be a JSON object")
    return message


def field(message: dict[str, Any], name: str, event_key: str = "event") -> dict[str, Any]:
    value = message.get(name)
    if not isinstance(value, dict):
        raise invalid(f"{message.get(event_key)!r} without its {name!r} object")
    return value


def text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise invalid(f"{name!r} must be a string of 1 to 256 characters")
    return value


def audio(payload: object, max_b64: int = MAX_PAYLOAD_B64) -> bytes:
    """The bytes of a base64 media payload, at most ``max_b64`` characters of it."""
    if not isinstance(payload, str) or not payload or len(payload) > max_b64:
        raise invalid(f"media payload must be base64 of 1 to {max_b64} characters")
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise invalid("media payload is not base64") from None


def key(value: object) -> str:
    if not isinstance(value, str) or value not in PHONE_KEYS:
        raise invalid(f"dtmf digit {value!r} is not a key of a phone (0-9, *, #, A-D)")
    return value


def dumps(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()
